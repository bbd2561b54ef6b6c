"""Runners: run a whole DataFlow in several worker processes or threads and merge their output.

Each worker runs its **own copy** of the upstream flow, forever (a new pass of the copy starts
when the previous one ends). The runner yields whatever the workers produce, in arrival order.
What that means for your data, as in tensorpack:

- With one worker, the output is the upstream's output, in order, pass after pass.
- With ``n > 1`` workers, the output has the **same distribution** as the upstream if its
  datapoints are i.i.d., but it is **not the same set**: each copy produces its own passes, so a
  deterministic source is repeated ``n`` times, and even a shuffled one shows duplicates within a
  pass (the birthday paradox). Use runners for training data; for an exact set per pass use the
  parallel maps of :mod:`dataflow.parallel_map` (``strict=True``) or ``shard=True`` here.
- ``len()`` is ``len(ds)`` and one pass of the runner yields that many datapoints (then stops;
  the workers keep running and the next pass continues their streams). If ``len(ds)`` is
  unknown the pass never ends (unless every worker's stream ends).

What tensorpack lacks, as keyword-only arguments:

- ``seed``: workers get distinct, reproducible streams. Worker ``i``'s random streams (its flows'
  ``self.rng``, and numpy's and Python's global generators) are derived from ``(seed, the flow's
  position below the runner, i, epoch)``. Without ``seed`` the global seed of
  :func:`dataflow.set_seed` applies (with the runner's position in the pipeline), and without
  either, streams are fresh entropy. With a seed (either), the runner also merges the workers'
  outputs in a fixed round-robin order (one datapoint from each worker in turn), so the whole
  output sequence is reproducible; a slow worker then holds back the others.
- ``shard``: ``True`` turns the runner into an exact, parallel reader of the source: one pass of
  the runner is one pass of the source, split between the workers, every datapoint exactly once.
  Each worker runs one pass of its copy per runner pass, and the source(s) at the root of the copy
  (the flows with no upstream) yield only every ``n``-th datapoint of their pass, starting at the
  worker's index. For that, all workers must see their source's pass in the same order: a
  deterministic source, or an :class:`~dataflow.base.RNGDataFlow` such as ``DataFromList(...,
  shuffle=True)``, whose ``self.rng`` the runner makes identical across workers (different each
  pass, reproducible with a seed). A source that shards itself by reading
  :func:`dataflow.get_worker_info` declares it with a class attribute ``shards_itself = True`` and
  is left alone. Flows that group datapoints (BatchData) inside the copy group each worker's share
  separately. With ``shard=False`` (the default) every copy still sees
  :func:`dataflow.get_worker_info`, so a source can shard itself as with torch's DataLoader.
- ``start_method``: ``"fork"``, ``"forkserver"`` or ``"spawn"``; ``None`` is the platform's
  multiprocessing default. Under spawn and forkserver the flow is pickled when the runner is reset,
  and an error names the part of it that cannot be pickled.

Transport: datapoints cross from the workers through shared memory; numpy arrays travel out of
band (copied once into shared memory). Large ones (from 256 KB a message) are then handed to you
in place, without a second copy: they are ordinary, writable numpy arrays that you may keep as
long as you like (the memory is recycled when they are garbage collected; arrays kept for long
are moved out of the way if the workers need their room). Small datapoints are packed several to
a message in transit.

Workers start at ``reset_state()`` (called for you before the first pass). They ignore Ctrl-C,
die with the consumer process, and stop on ``close()``, garbage collection or interpreter exit.
An exception in a worker is raised in the consumer as :class:`~dataflow.errors.WorkerError` (with
the original type name, message and traceback); a worker that dies raises
:class:`~dataflow.errors.WorkerDied` within about a second. A source raising
:class:`~dataflow.base.DataFlowTerminated` ends its worker's stream cleanly. After an error the
next pass starts fresh workers. A runner allows one live iterator at a time.
"""

from __future__ import annotations

import itertools
import logging
import math
import pickle
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from . import _state
from ._engine import seeding
from ._engine.job import DATA, DIED, DONE, END_PASS, Job
from ._engine.map_supervise import check_restarts  # the same restart budget as the maps'
from ._engine.stage import PoolOwner, check_count, check_flag, reposition
from ._engine.workers import ProcessPool, ThreadPool
from .base import DataFlow, ProxyDataFlow, RNGDataFlow, check_dataflow, upstream_flows
from .errors import DataFlowArgumentError, LengthUnknownError, WorkerDied

__all__ = [
    "MultiProcessRunner",
    "MultiProcessRunnerZMQ",
    "MultiThreadRunner",
    "PrefetchData",
    "MultiProcessPrefetchData",
    "PrefetchDataZMQ",
    "MultiThreadPrefetchData",
]


# -- what a runner's worker does -------------------------------------------------------------------

logger = logging.getLogger(__name__)


def _sources(ds: DataFlow) -> list[DataFlow]:
    """The flows at the root of ``ds``'s pipeline (those with no upstream flow)."""
    found, seen, stack = [], set(), [ds]
    while stack:
        flow = stack.pop()
        if id(flow) in seen:
            continue
        seen.add(id(flow))
        ups = upstream_flows(flow) if hasattr(flow, "__dict__") else []
        if ups:
            stack.extend(up for _, up in ups)
        else:
            found.append(flow)
    return found


def _shard_source(flow: DataFlow, root: DataFlow, index: int, count: int, seed: int) -> None:
    """Make ``flow`` yield items ``index::count`` of its pass, with an order shared by all workers.

    The shared random stream is keyed by the source's path below ``root`` (the worker's copy), which
    is the same in every worker even when the copies are distinct objects (threads).
    """
    here = str(getattr(flow, "_df_position", None))
    top = str(getattr(root, "_df_position", None))
    key = "shard:" + (here[len(top) :] if here.startswith(top) else here)
    cls = getattr(type(flow), "_df_unsharded", type(flow))  # a restarted thread pool: redo
    namespace: dict[str, Any] = {
        "__module__": cls.__module__,
        "__qualname__": cls.__qualname__,
        "_df_unsharded": cls,
    }

    def __iter__(self):
        return itertools.islice(super(sharded, self).__iter__(), index, None, count)

    namespace["__iter__"] = __iter__
    if isinstance(flow, RNGDataFlow):

        def _new_rng(self, epoch: int) -> np.random.RandomState:
            rng = seeding.make_shared_rng(key, epoch, seed)
            self.__dict__["_df_auto_rng"] = rng
            self.__dict__["_rng"] = rng
            return rng

        namespace["_new_rng"] = _new_rng
    sharded = type(cls.__name__, (cls,), namespace)
    flow.__class__ = sharded


class _RunnerJob(Job):
    """Run a copy of ``ds`` forever (or pass by pass, marking ends, when sharded)."""

    def __init__(
        self,
        ds: Any,
        shard: bool = False,
        shard_seed: int | None = None,
        own_seed: bool = False,
        resume: list | None = None,
    ) -> None:
        self.ds = ds  # the flow, or its pickle
        self.shard = shard
        self.shard_seed = shard_seed
        self.own_seed = own_seed
        # Sharded resume: per worker, (the copy's state at the start of the pass, or None for the
        # first pass; how many datapoints of the pass the consumer had taken from this worker).
        self.resume = resume

    def run(self, io: Any) -> None:
        ds = pickle.loads(self.ds) if isinstance(self.ds, bytes) else self.ds
        info = io.info
        if self.own_seed:
            reposition(ds, "seeded-stage.ds")
        if self.shard:
            for source in _sources(ds):
                if not getattr(source, "shards_itself", False):
                    _shard_source(source, ds, info.id, info.num_workers, self.shard_seed)  # type: ignore[arg-type]
        ds.reset_state()
        put = io.put
        if self.shard:
            start, taken = self.resume[info.id] if self.resume is not None else (None, 0)
            # A thread's copy is the same object in every pool of its runner: where it stood
            # when first started is kept on it, for a later pool to start it there again.
            initial = ds.__dict__.setdefault("_df_runner_start", ds.state_dict())
            if start is None and self.resume is not None:
                start = initial
            if start is not None:
                ds.load_state_dict(start)
            io.send(END_PASS, ds.state_dict())  # where the copy's first pass begins
            if self.resume is not None:
                it = iter(ds)
                _state.consume(it, taken)  # the part the consumer had (replayed in the worker)
                for dp in it:
                    put(dp)
                io.send(END_PASS, ds.state_dict())
            while True:
                for dp in ds:
                    put(dp)
                # With the end of a pass, where the copy stands for the next one (for resume).
                io.send(END_PASS, ds.state_dict())
        while True:
            produced = False
            for dp in ds:
                produced = True
                put(dp)
            if not produced:
                return  # an empty pass: repeating it would spin forever


# -- the runner flows ------------------------------------------------------------------------------


class _Runner(PoolOwner, DataFlow):
    reentrant = False
    _job: Any = None

    def _init_runner(
        self,
        who: str,
        num_workers: int,
        item_cap: int,
        seed: object,
        shard: object,
        start_method: object,
        kind: str,
        restart_workers: object = False,
    ) -> None:
        self._init_owner(who, seed, start_method, kind)
        self._num_workers = num_workers
        self._item_cap = item_cap
        self._shard = check_flag(shard, who, "shard")
        self._restart, self._restart_limit = check_restarts(restart_workers, who)
        if self._restart and kind == "thread":
            raise DataFlowArgumentError(
                f"{who}: restart_workers applies to worker processes only (a thread does not die)"
            )
        self._deaths: list[str] = []
        self._carry: list[Any] = []
        self._resume: dict | None = None  # a loaded state, applied to the next pool

    # state of the consumer for the current pool
    def _on_new_pool(self) -> None:
        self._carry = []
        self._done: set[int] = set()
        self._queues: list[deque] = [deque() for _ in range(self._num_workers)]
        self._turn = 0
        self._open: set[int] = set()  # sharded: workers still in the pass being read
        # Resume: datapoints of this pass taken from each worker, each copy's state at the start
        # of this pass (None: its first) and at the start of the next (from END_PASS), and the
        # worker whose message is being yielded.
        n = self._num_workers
        self._taken = [0] * n
        self._starts: list[Any] = [None] * n
        self._next_starts: list[Any] = [None] * n
        if self._shard:
            # Each sharded worker first sends where its copy stands (END_PASS with its state);
            # the first pass reads those before any datapoint, as it would an abandoned pass.
            self._open = set(range(n))
        self._cur_w = 0  # the worker of the message being yielded (no reference to it)
        self._stale_ends = [0] * n  # restarted sharded workers: their first END_PASS is stale
        # With a seed (this runner's or the global one), outputs merge in a fixed order.
        self._in_turn = self._stage_seed() is not None

    def _length(self) -> int | None:
        try:
            return len(self)
        except (LengthUnknownError, NotImplementedError):
            return None

    def reset_state(self) -> None:
        self._prepare()
        self._ensure_pool()

    def _prepare(self) -> None:
        """Build the job(s) the workers run (pickled now under spawn/forkserver)."""
        raise NotImplementedError

    def _shard_seed(self) -> int:
        seed = self._stage_seed()
        if self._resume is not None and self._resume.get("shard_seed") is not None:
            seed = int(self._resume["shard_seed"])
        if seed is None:
            seed = int(np.random.SeedSequence().entropy) & ((1 << 63) - 1)  # type: ignore[arg-type]
        self._shard_seed_used = seed
        return seed

    def _job_resume(self) -> list | None:
        """What each worker needs to resume a sharded pass (None: start fresh)."""
        resume = self._resume
        if resume is None or not self._shard:
            return None
        return [list(pair) for pair in zip(resume["starts"], resume["taken"])]

    def _workers_seed(self) -> int | None:
        """The stage seed handed to the workers: an i.i.d. runner resumed at a later epoch draws
        fresh streams derived from it and the epoch (documented: not the same datapoints)."""
        seed = self._stage_seed()
        resume = self._resume
        if seed is None or resume is None or self._shard:
            return seed
        sequence = np.random.SeedSequence(seed, spawn_key=(int(resume["epoch"]),))
        return int(sequence.generate_state(1, np.uint64)[0] >> 1)

    # -- resume --------------------------------------------------------------------------------
    # shard=True: each worker's share of the pass is exact. The state holds, per worker, the
    # copy's state at the start of the pass (sent by the worker with the end of its previous pass)
    # and how many of its datapoints the consumer had; a resumed worker loads the first and skips
    # the second (it replays them: O(k / workers)). The worker count must be the same.
    # shard=False: the copies are i.i.d. streams: the state keeps the pass's length accounting;
    # resumed workers draw fresh streams (seeded from the saved epoch).
    def _df_upstreams(self) -> list[DataFlow]:
        return []  # the upstream runs in the workers: its state travels in this flow's own

    def _df_save(self) -> dict:
        live_ref = self.__dict__.get("_df_live")
        it = live_ref() if live_ref is not None else None
        while getattr(it, "gi_yieldfrom", None) is not None:
            it = it.gi_yieldfrom  # type: ignore[union-attr]
        left = _state.remaining(it) if type(it).__name__ == "list_iterator" else 0
        in_pass = self._df_in_pass()
        taken = list(self._taken) if in_pass else [0] * self._num_workers
        w = self._cur_w
        taken[w] -= left if in_pass else 0
        state: dict[str, Any] = {"shard": self._shard, "workers": self._num_workers}
        # Between passes: every worker at its pass's start. ``turn``: the fixed merge order's place.
        state["pass"] = {"taken": taken, "turn": self._turn if in_pass else 0}
        if self._shard:
            state["shard_seed"] = getattr(self, "_shard_seed_used", None)
            state["pass"]["starts"] = self._starts if in_pass else self._next_starts
        return state

    def _df_carries_over(self) -> bool:
        return True  # the workers' copies go on from pass to pass

    def _resumed(self) -> dict | None:
        """The loaded state's pass part (taken, starts), once, for the pass that uses it."""
        resume, self._resume = self._resume, None
        if resume is None:
            return None
        return {**resume.get("pass", {}), "epoch": resume["epoch"]}

    def _df_load(self, state: dict) -> None:
        self._resume = {**state, **state.get("pass", {}), "epoch": self._df_epoch}
        if self._pool is not None and not self._pool.closed:
            self._teardown()  # reset_state started workers before the state was loaded
        self._job = None

    def _df_check(self, node: dict) -> str | None:
        state = node.get("state") or {}
        if not state:
            return None
        if bool(state.get("shard")) != self._shard:
            return f"the state was saved with shard={state.get('shard')}, this runner has {self._shard}"
        if self._shard and state.get("workers") != self._num_workers:
            return (
                f"the state was saved with {state.get('workers')} workers each reading a shard; "
                f"this runner has {self._num_workers}: resume a sharded runner with the same count"
            )
        return None

    def __iter__(self) -> Iterator:
        pool = self._ensure_pool()
        self._deaths = []  # this pass's worker deaths (the restart budget)
        try:
            if self._shard:
                yield from self._sharded_pass(pool)
            else:
                size = self._length()
                resumed = self._resumed()
                taken = sum(int(t) for t in resumed["taken"]) if resumed is not None else 0
                if resumed is not None:
                    self._turn = int(resumed.get("turn", 0))
                self._taken = [0] * self._num_workers
                self._taken[0] = taken
                yield from self._stream_pass(pool, None if size is None else size - taken)
        except GeneratorExit:
            raise
        except BaseException:
            self._teardown()
            raise

    def _live(self) -> list[int]:
        return [w for w in range(self._num_workers) if w not in self._done]

    def _recv(self, pool: Any, eligible: list[int]) -> tuple[int, int, Any]:
        w, kind, payload = pool.recv(eligible)
        if kind == DIED:
            if not self._restart:
                raise pool.died_error(w, payload)
            self._replace(pool, w, payload)
            return w, _NOTHING, None
        if kind == END_PASS and self._stale_ends[w]:
            self._stale_ends[w] -= 1  # where a restarted copy began: known already
            return w, _NOTHING, None
        if kind == DONE:
            self._done.add(w)
            self._open.discard(w)
        return w, kind, payload

    def _replace(self, pool: Any, w: int, exitcode: int | None) -> None:
        """restart_workers: start worker ``w`` again; a sharded one resumes its shard where the
        consumer stands: at its copy's state at the start of the pass, past what it delivered."""
        err = pool.died_error(w, exitcode)
        self._deaths.append(str(err))
        limit = self._restart_limit
        if limit is not None and len(self._deaths) > limit:
            raise WorkerDied(
                f"{self._who}: {len(self._deaths)} worker deaths in this pass, more than "
                f"restart_workers={limit}: " + "; ".join(self._deaths),
                worker=err.worker,
                exitcode=exitcode,
            )
        logger.warning("%s; restarting it (restart_workers)", err)
        job = None
        if self._shard:
            n = self._num_workers
            resume: list = [[None, 0] for _ in range(n)]
            if w in self._open:  # in the pass: past what was delivered (or is queued here)
                resume[w] = [self._starts[w], self._taken[w] + len(self._queues[w])]
            else:  # its pass is over: the next one from its start
                resume[w] = [self._next_starts[w], 0]
            job = self._restart_job(resume)
            self._stale_ends[w] = 1
        pool.restart(w, job)

    def _restart_job(self, resume: list) -> Any:
        raise NotImplementedError

    def _stream_pass(self, pool: Any, size: int | None) -> Iterator:
        remaining = math.inf if size is None else size
        while remaining > 0:
            if self._in_turn:
                item = self._next_in_turn(pool)
                if item is _END:
                    return
                remaining -= 1  # (_next_in_turn counted it for its worker)
                self._cur_w = 0
                yield item
                continue
            if self._carry:
                items, self._carry = self._carry, []
            else:
                live = self._live()
                if not live:
                    return
                w, kind, items = self._recv(pool, live)
                if kind != DATA:
                    continue
            if len(items) > remaining:
                self._carry = items[int(remaining) :]
                items = items[: int(remaining)]
            remaining -= len(items)
            self._taken[0] += len(items)
            self._cur_w = 0
            yield from items

    def _next_in_turn(self, pool: Any, eligible: set[int] | None = None) -> Any:
        """The next datapoint in the fixed round-robin order (seeded runners)."""
        n = self._num_workers
        while True:
            live = [
                w for w in range(n) if w not in self._done and (eligible is None or w in eligible)
            ]
            if not live:
                return _END
            w = self._turn % n
            while w not in live:
                w = (w + 1) % n
            queue = self._queues[w]
            if queue:
                self._turn = w + 1
                self._taken[w] += 1
                return queue.popleft()
            _, kind, payload = self._recv(pool, [w])
            if kind == DATA:
                queue.extend(payload)
            elif kind == END_PASS:
                self._open.discard(w)
                self._next_starts[w] = payload
                if eligible is not None:
                    eligible.discard(w)

    def _sharded_pass(self, pool: Any) -> Iterator:
        # Finish the pass an earlier iterator abandoned: its rest belongs to no one.
        while self._open:
            w, kind, payload = self._recv(pool, sorted(self._open))
            if kind == END_PASS:
                self._open.discard(w)
                self._next_starts[w] = payload
        for queue in self._queues:
            queue.clear()
        self._open = set(self._live())
        resumed = self._resumed()
        if resumed is None:
            self._taken = [0] * self._num_workers
            self._starts = list(self._next_starts)
        else:
            self._taken = [int(t) for t in resumed["taken"]]
            self._starts = list(resumed["starts"])
            self._turn = int(resumed.get("turn", 0))
        self._cur_w = 0
        if self._in_turn:
            eligible = set(self._open)
            while True:
                item = self._next_in_turn(pool, eligible)
                if item is _END:
                    return
                yield item
        while self._open:
            w, kind, payload = self._recv(pool, sorted(self._open))
            if kind == DATA:
                self._taken[w] += len(payload)
                self._cur_w = w
                yield from payload
            elif kind == END_PASS:
                self._open.discard(w)
                self._next_starts[w] = payload


_END = object()
_NOTHING = -1  # a message kind _recv's callers ignore (a restart, a stale END_PASS)


class MultiProcessRunner(_Runner, ProxyDataFlow):
    """Run ``ds`` in ``num_proc`` worker processes, each on its own copy (see the module doc).

    Datapoints are the upstream's, unchanged. ``len()`` is ``len(ds)``. ``num_prefetch`` bounds
    what waits in transit between the workers and the consumer, in messages (split between the
    workers): a message holds one datapoint, or up to 128 small ones packed together (256 KB at
    most), so the memory held in transit is bounded by about ``num_prefetch`` large datapoints.

    Example::

        ds = MultiProcessRunner(MyAugmentedSource(), num_prefetch=100, num_proc=4)
    """

    def __init__(
        self,
        ds: DataFlow,
        num_prefetch: int,
        num_proc: int,
        *,
        seed: int | None = None,
        shard: bool = False,
        start_method: str | None = None,
        restart_workers: bool | int = False,
    ) -> None:
        """
        Args:
            ds: the flow to run; each worker gets a copy (inherited under fork, pickled under
                spawn/forkserver).
            num_prefetch: how many messages may wait in transit (split between the workers).
            num_proc: number of worker processes.
            seed: derive each worker's random streams from it (see the module doc).
            shard: split one pass of the source between the workers (see the module doc).
            start_method: ``"fork"``, ``"forkserver"``, ``"spawn"`` or ``None`` (the default).
            restart_workers: replace a worker that dies: ``True`` without a limit, or an int:
                the restarts allowed in one pass (past it, WorkerDied names every death). With
                ``shard``, the new worker resumes the dead one's shard from the state its copy
                had at the start of the pass, past the datapoints the consumer had received
                (replayed in the worker, not sent again): the pass stays exactly one pass. The
                upstream must resume (``state_dict``/``load_state_dict``, see docs/resume.md).
                Without ``shard``, the new worker just starts a fresh copy (i.i.d. streams).
        """
        who = type(self).__name__
        self.ds = check_dataflow(ds, who)
        num_prefetch = check_count(num_prefetch, who, "num_prefetch")
        self.num_proc = check_count(num_proc, who, "num_proc")
        self.num_prefetch = num_prefetch
        cap = max(1, -(-num_prefetch // self.num_proc))
        self._init_runner(
            who, self.num_proc, cap, seed, shard, start_method, "process", restart_workers
        )

    def __len__(self) -> int:
        return len(self.ds)

    def _prepare(self) -> None:
        if self._pool is not None and not self._pool.closed:
            return
        payload = self._payload(self.ds, "ds")
        shard_seed = self._shard_seed() if self._shard else None
        self._job_args = (payload, self._shard, shard_seed, self._seed is not None)
        self._job = self._pack(_RunnerJob(*self._job_args, self._job_resume()))

    def _pack(self, job: _RunnerJob) -> Any:
        return job if self._start_method == "fork" else pickle.dumps(job, protocol=5)

    def _restart_job(self, resume: list) -> Any:
        return self._pack(_RunnerJob(*self._job_args, resume))

    def _make_pool(self) -> ProcessPool:
        if getattr(self, "_job", None) is None:
            self._prepare()
        return ProcessPool(
            name=self._who,
            job=self._job,
            num_workers=self.num_proc,
            method=self._start_method,  # type: ignore[arg-type]
            seed=self._workers_seed(),
            position=self._position(),
            item_cap=self._item_cap,
        )


class MultiProcessRunnerZMQ(MultiProcessRunner):
    """Run ``ds`` in ``num_proc`` worker processes, each on its own copy (see the module doc).

    tensorpack's faster runner, kept under its name; the transport is this library's shared-memory
    channel (no ZeroMQ needed), which measures faster. ``hwm`` bounds how many messages each
    worker may have in transit (as ZeroMQ's high-water mark did; see :class:`MultiProcessRunner`
    for what a message holds). ``len()`` is ``len(ds)``.
    """

    def __init__(
        self,
        ds: DataFlow,
        num_proc: int = 1,
        hwm: int = 50,
        *,
        seed: int | None = None,
        shard: bool = False,
        start_method: str | None = None,
        restart_workers: bool | int = False,
    ) -> None:
        """
        Args:
            ds: the flow to run; each worker gets a copy.
            num_proc: number of worker processes.
            hwm: high-water mark: messages in transit per worker.
            seed, shard, start_method, restart_workers: as in :class:`MultiProcessRunner`.
        """
        who = type(self).__name__
        hwm = check_count(hwm, who, "hwm")
        num_proc = check_count(num_proc, who, "num_proc")
        super().__init__(
            ds,
            hwm * num_proc,
            num_proc,
            seed=seed,
            shard=shard,
            start_method=start_method,
            restart_workers=restart_workers,
        )
        self.hwm = hwm


class MultiThreadRunner(_Runner):
    """Run ``num_thread`` flows, each made by ``get_df()``, in threads, and merge their output.

    Each thread gets its own flow: ``get_df`` is called once per thread, at construction, so it
    should return a new flow each call (unless the flow is stateless). The data semantics are the
    runners' (see the module doc): same distribution, not the same set. ``len()`` is the length of
    the first thread's flow. Threads share the GIL: this helps when the flows release it (I/O,
    numpy, OpenCV). With ``seed``, thread ``i``'s flows get streams derived from
    ``(seed, position, i, epoch)`` (numpy's global generator is shared by threads and is not
    reseeded). ``shard`` works as for processes.
    """

    def __init__(
        self,
        get_df: Callable[[], DataFlow],
        num_prefetch: int,
        num_thread: int,
        *,
        seed: int | None = None,
        shard: bool = False,
    ) -> None:
        """
        Args:
            get_df: a callable returning a DataFlow; called ``num_thread`` times.
            num_prefetch: how many datapoints may wait in transit (split between the threads).
            num_thread: number of threads.
            seed, shard: as in :class:`MultiProcessRunner`.
        """
        who = "MultiThreadRunner"
        if not callable(get_df):
            raise DataFlowArgumentError(
                f"{who}: get_df must be a callable returning a DataFlow, got {type(get_df).__name__}"
            )
        self.num_thread = check_count(num_thread, who, "num_thread")
        self.num_prefetch = check_count(num_prefetch, who, "num_prefetch")
        dfs = []
        for _ in range(self.num_thread):
            df = get_df()
            dfs.append(check_dataflow(df, who, "get_df()"))
        self.dfs = dfs
        cap = max(1, -(-self.num_prefetch // self.num_thread))
        self._init_runner(who, self.num_thread, cap, seed, shard, None, "thread")

    def __len__(self) -> int:
        return len(self.dfs[0])

    def _prepare(self) -> None:
        pass

    def _make_pool(self) -> ThreadPool:
        shard_seed = self._shard_seed() if self._shard else None
        own = self._seed is not None
        resume = self._job_resume()
        jobs: list[Job] = [_RunnerJob(df, self._shard, shard_seed, own, resume) for df in self.dfs]
        return ThreadPool(
            name=self._who, jobs=jobs, seed=self._workers_seed(), item_cap=self._item_cap
        )


# tensorpack's old names
PrefetchData = MultiProcessRunner
MultiProcessPrefetchData = MultiProcessRunner
PrefetchDataZMQ = MultiProcessRunnerZMQ
MultiThreadPrefetchData = MultiThreadRunner

"""Run the map stage, or sharded copies of a whole flow, on Ray actors.

:class:`RayMapData` is :class:`~dataflow.MultiProcessMapData` with the workers on a Ray cluster:
the upstream runs in the driver (your process), ``map_func`` runs in ``num_actors`` Ray actors.
:class:`RayRunner` is :class:`~dataflow.MultiProcessRunner` on actors: each actor runs its own copy
of the flow (with ``shard=True``, over its own disjoint share of the source), so reading and
decoding happen on the cluster and the driver only receives results.

Both are the library's own maps and runners, with one more kind of worker pool (:class:`RayPool`)
under them: order, ``strict``, exactly-once, resume (``state_dict``/``load_state_dict``) and error
reporting are those of the local classes, word for word; see :mod:`dataflow.parallel_map` and
:mod:`dataflow.parallel`. What differs:

- Connecting: ``address=None`` uses the Ray this process already initialized, else joins the
  cluster named by the ``RAY_ADDRESS`` environment variable, else starts a local Ray (as many CPUs
  as this process may use, no dashboard). ``address="auto"``, ``"host:port"`` or
  ``"ray://host:10001"`` joins a running cluster. A Ray the flow started or connected to itself is
  shut down (disconnected) when the last flow using it closes.
- Transport: datapoints and results travel through Ray's object store (Ray's serializer,
  cloudpickle, numpy arrays out of band). Large numpy arrays in results arrive without a copy as
  **read-only** views of the object store (``arr.flags.writeable`` is False): copy one before
  writing into it.
- What crosses to the actors (``map_func``, the flow of a runner) is serialized with Ray's
  cloudpickle: lambdas and closures work; an object that cannot be serialized (a lock, an open
  file, a socket) fails at construction with an error naming it. On a cluster, the modules they
  come from (and dataflow itself) must be importable on every node.
- Faults: an exception in ``map_func`` (or in a runner's copy) is raised in the driver as
  :class:`~dataflow.errors.WorkerError` with the remote traceback text. An actor that dies (its
  process killed, its node lost) is replaced, at most ``max_restarts`` times per actor, and
  every datapoint it held is sent again; duplicates are dropped by sequence number, so a strict
  pass stays exactly once and an ordered one in order. Past the budget (or for a runner, whose
  copies hold state that cannot be replayed): :class:`~dataflow.errors.WorkerDied` naming the
  actor and Ray's reason. Ray's own retries are off (``max_restarts=0``, ``max_task_retries=0``
  for every actor): they would re-run calls at least once and silently reset actor state.
- Lifecycle: actors start at ``reset_state()`` (called for you before the first pass) and are
  killed on ``close()``, garbage collection, interpreter exit, and after an error (the next pass
  starts fresh ones). Waits on actors are bounded, so a lost actor is noticed, never waited on
  forever.

Ray is an optional dependency (``pip install 'pydataflow[ray]'``), imported when a Ray flow is
built.
"""

from __future__ import annotations

import os
import pickle
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from ._engine import seeding
from ._engine.context import WorkerInfo, set_worker_info
from ._engine.stage import check_count, default_workers
from ._engine.workers import DATA, DIED, DONE, ERROR, Job, WorkerIO, make_worker_error, run_job
from ._lazy import require
from .base import DataFlow
from .errors import DataFlowArgumentError, DataFlowClosedError, WorkerDied
from .parallel import MultiProcessRunner, _RunnerJob
from .parallel_map import _MapJob, _ParallelMap

__all__ = ["RayMapData", "RayRunner", "RayPool"]

_POLL_S = 0.25  # the longest the driver waits on Ray without looking at its own state again
_TAKE_S = 1.0  # how long an actor holds a take() call open when it has nothing to hand over
_START_S = 60.0  # actors that are not up after this long: the cluster lacks resources
# A tiny map_func costs ~0.5 ms of Ray per call: 256 datapoints a call make that ~2 us each
# (measured: 1.6k calls/s over 2 actors; 330k items/s at 256 items a call).
DEFAULT_BATCH = 256


def _ray() -> Any:
    return require("ray", "ray", who="dataflow's Ray backend")


# -- the connection ----------------------------------------------------------------------------------

_conn_lock = threading.Lock()
_conn = {"ours": False, "users": 0}


def _connect(address: str | None, who: str) -> None:
    """Make sure this process is connected to a Ray; count one more user of the connection."""
    ray = _ray()
    with _conn_lock:
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True}
            if address is None and not os.environ.get("RAY_ADDRESS"):
                kwargs.update(address="local", num_cpus=default_workers())
            elif address is not None:
                kwargs["address"] = address
            try:
                ray.init(**kwargs)
            except Exception as e:
                where = address or os.environ.get("RAY_ADDRESS") or "a local Ray"
                raise RuntimeError(f"{who}: could not start or join {where}: {e}") from e
            _conn["ours"] = True
        _conn["users"] += 1


def _disconnect() -> None:
    ray = _ray()
    with _conn_lock:
        _conn["users"] = max(0, _conn["users"] - 1)
        if _conn["users"] == 0 and _conn["ours"]:
            _conn["ours"] = False
            if ray.is_initialized():
                ray.shutdown()


def _serialize(obj: Any, name: str, who: str) -> bytes:
    """``obj`` as Ray's cloudpickle writes it, or an error naming the object."""
    cloudpickle = _ray().cloudpickle
    try:
        return cloudpickle.dumps(obj, protocol=5)
    except Exception as e:  # noqa: BLE001 - serializers raise many types
        what = getattr(obj, "__qualname__", None) or type(obj).__name__
        raise DataFlowArgumentError(
            f"{who}: {_culprit(obj, name, cloudpickle)} (in {what}) cannot be serialized for the "
            f"Ray actors: {type(e).__name__}: {e}. Ray sends it to each actor with cloudpickle; "
            "keep locks, open files, sockets and live pipelines out of it (create them in the "
            "actor, e.g. on first use)"
        ) from e


def _culprit(obj: Any, name: str, cloudpickle: Any, depth: int = 0) -> str:
    """The innermost part of ``obj`` that does not serialize: a closure variable, an attribute."""

    def fails(x: Any) -> bool:
        try:
            cloudpickle.dumps(x, protocol=5)
        except Exception:  # noqa: BLE001
            return True
        return False

    if depth > 4:
        return name
    parts: list[tuple[str, Any]] = []
    code = getattr(obj, "__code__", None)
    if code is not None and getattr(obj, "__closure__", None):
        for var, cell in zip(code.co_freevars, obj.__closure__):
            try:
                parts.append((f"{name}<closure {var}>", cell.cell_contents))
            except ValueError:  # an empty cell
                continue
    elif hasattr(obj, "__dict__") and not isinstance(obj, type):
        parts.extend((f"{name}.{k}", v) for k, v in vars(obj).items())
    for path, part in parts:
        if fails(part):
            return _culprit(part, path, cloudpickle, depth + 1)
    return name


# -- the actor side ----------------------------------------------------------------------------------


class _ActorIO(WorkerIO):
    """A job's channel inside an actor: results queue up until the driver's next ``take``."""

    def __init__(self, host: _ActorHost, info: WorkerInfo) -> None:
        self.info = info
        self._host = host

    def put(self, item: Any) -> None:
        host = self._host
        with host.cv:
            while host.held >= host.item_cap:
                host.cv.wait()
            host.items.append(item)
            host.held += 1
            host.cv.notify_all()

    def flush(self) -> None:
        pass  # a take() hands over everything queued

    def send(self, kind: int, payload: Any) -> None:
        host = self._host
        with host.cv:
            host.seal()
            host.msgs.append((kind, payload))
            host.cv.notify_all()

    def get_task(self) -> Any:
        host = self._host
        with host.cv:
            while not host.tasks:
                host.cv.wait()
            return host.tasks.popleft()

    def consumer_waiting(self) -> bool:
        return self._host.waiting


class _ActorHost:
    """The body of one Ray actor: runs a :class:`Job` in a thread, hands messages over on take().

    Methods run in the actor's thread pool (``max_concurrency`` > 1), so a ``take`` waiting for
    output does not hold back a ``submit`` of new tasks.
    """

    def __init__(
        self, job: bytes, index: int, num_workers: int, seed: int | None, position: str, cap: int
    ) -> None:
        self.cv = threading.Condition()
        self.msgs: deque = deque()
        self.items: list[Any] = []
        self.tasks: deque = deque()
        self.held = 0
        self.item_cap = max(1, cap)
        self.waiting = False
        info = WorkerInfo(index, num_workers, seed, "ray")
        set_worker_info(info)
        seeding.seed_globals(position)
        io = _ActorIO(self, info)
        self._thread = threading.Thread(
            target=self._main, args=(job, io), name=f"dataflow-ray-{index}", daemon=True
        )
        self._thread.start()

    def _main(self, job: bytes, io: _ActorIO) -> None:
        try:
            loaded: Job = pickle.loads(job)
        except BaseException as e:  # noqa: BLE001 - reported like any worker failure
            from ._engine.workers import _error_payload

            io.send(ERROR, _error_payload(e, in_process=True))
            return
        run_job(loaded, io)

    def seal(self) -> None:
        """Close the batch of datapoints being collected (call with ``cv`` held)."""
        if self.items:
            self.msgs.append((DATA, self.items))
            self.items = []

    def pid(self) -> int:
        return os.getpid()

    def submit(self, tasks: list[Any]) -> None:
        with self.cv:
            self.tasks.extend(tasks)
            self.cv.notify_all()

    def take(self, timeout: float) -> list[Any]:
        """Everything queued for the driver (waits up to ``timeout`` seconds for something)."""
        with self.cv:
            if not self.msgs and not self.items:
                self.waiting = True
                self.cv.wait_for(lambda: self.msgs or self.items, timeout)
                self.waiting = False
            self.seal()
            out, self.msgs = list(self.msgs), deque()
            self.held = 0
            self.cv.notify_all()
            return out


_actor_class: Any = None


def _remote_host() -> Any:
    global _actor_class
    if _actor_class is None:
        _actor_class = _ray().remote(_ActorHost)
    return _actor_class


# -- the driver side ---------------------------------------------------------------------------------


class RayPool:
    """Ray actors behind the engine's pool interface (``send``, ``recv``, ``restart``, ``close``).

    Each actor runs the job in a thread; the driver keeps one ``take`` call open per actor and
    delivers what comes back in order. A call that fails because its actor died becomes one
    ``DIED`` message, with Ray's reason as the payload, after everything the actor had handed over.
    """

    kind = "ray"

    def __init__(
        self,
        *,
        name: str,
        job: bytes,
        num_workers: int,
        seed: int | None,
        position: str,
        item_cap: int = 1 << 40,
        actor_options: dict[str, Any] | None = None,
        max_restarts: int = 3,
    ) -> None:
        self.name = name
        self.num_workers = num_workers
        self._job = job
        self._seed = seed
        self._position = position
        self._item_cap = item_cap
        self._options = dict(actor_options or {})
        self._max_restarts = max_restarts
        self.owner_pid = os.getpid()
        self._closed = False
        n = num_workers
        self._actors: list[Any] = [None] * n
        self._pids: list[int | None] = [None] * n
        self._ids: list[str] = [""] * n
        self._takes: list[Any] = [None] * n
        self._inbox: list[deque] = [deque() for _ in range(n)]
        self._finished = [False] * n
        self._restarts = [0] * n
        self._reasons: list[str] = [""] * n
        self._rr = 0

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        try:
            for w in range(self.num_workers):
                self._spawn(w)
            self._wait_up(range(self.num_workers))
        except BaseException:
            self.close()
            raise

    def _spawn(self, w: int) -> None:
        options = {"num_cpus": 1, **self._options}
        options.update(max_concurrency=4, max_restarts=0, max_task_retries=0)
        actor = (
            _remote_host()
            .options(**options)
            .remote(self._job, w, self.num_workers, self._seed, self._position, self._item_cap)
        )
        self._actors[w] = actor
        self._ids[w] = actor._actor_id.hex()[:12]
        self._pids[w] = None
        self._inbox[w].clear()
        self._finished[w] = False
        self._takes[w] = actor.take.remote(_TAKE_S)

    def _wait_up(self, workers: Any) -> None:
        ray = _ray()
        workers = list(workers)
        refs = [self._actors[w].pid.remote() for w in workers]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=_START_S)
        if len(ready) < len(refs):
            raise WorkerDied(
                f"{self.name}: {len(refs) - len(ready)} of {len(refs)} Ray actors did not start "
                f"within {_START_S:.0f} s; the cluster may lack the resources asked for each "
                f"({self._options or {'num_cpus': 1}}): see `ray status`",
                worker=self.name,
            )
        for w, ref in zip(workers, refs):
            try:
                self._pids[w] = ray.get(ref)
            except Exception as e:  # noqa: BLE001 - an actor that failed to start
                raise WorkerDied(
                    f"{self.describe(w)} failed to start: {_reason(e)}", worker=self.describe(w)
                ) from e

    def restart(self, w: int) -> None:
        if self._restarts[w] >= self._max_restarts:
            err = self.died_error(w, self._reasons[w])
            raise WorkerDied(
                f"{err} -- it was replaced {self._restarts[w]} time(s) already "
                f"(max_restarts={self._max_restarts})",
                worker=err.worker,
            )
        self._restarts[w] += 1
        self._kill(w)
        self._spawn(w)
        self._wait_up([w])

    def _kill(self, w: int) -> None:
        actor, self._actors[w] = self._actors[w], None
        self._takes[w] = None
        if actor is not None:
            try:
                _ray().kill(actor, no_restart=True)
            except Exception:  # noqa: BLE001 - already dead, or Ray already shut down
                pass

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if os.getpid() != self.owner_pid:
            return
        ray = _ray()
        if ray.is_initialized():
            for w in range(self.num_workers):
                self._kill(w)
        for box in self._inbox:
            box.clear()

    @property
    def closed(self) -> bool:
        return self._closed

    def pids(self) -> list[int | None]:
        return list(self._pids)

    def actors(self) -> list[Any]:
        """The current actor handles (None for a slot being replaced)."""
        return list(self._actors)

    def describe(self, w: int) -> str:
        return f"{self.name} Ray actor {w} (actor id {self._ids[w]}, pid {self._pids[w]})"

    def died_error(self, w: int, reason: Any) -> WorkerDied:
        return WorkerDied(
            f"{self.describe(w)} died: {reason or 'no reason given by Ray'}",
            worker=self.describe(w),
        )

    # -- talking to the actors ---------------------------------------------------------------
    def send(self, w: int, payload: Any) -> None:
        actor = self._actors[w]
        if actor is not None:
            actor.submit.remote([payload])  # a dead actor's loss shows in its take()

    def recv(self, eligible: list[int] | None = None) -> tuple[int, int, Any]:
        """The next message ``(worker, kind, payload)`` from a worker in ``eligible``.

        Raises :class:`WorkerError` for an exception in the job; returns ``(w, DIED, reason)``
        once for an actor that died.
        """
        ray = _ray()
        n = self.num_workers
        order = list(range(n)) if eligible is None else list(eligible)
        while True:
            if self._closed:
                raise DataFlowClosedError(f"{self.name} was closed while being iterated")
            m = len(order)
            for k in range(m):
                w = order[(self._rr + k) % m]
                if self._inbox[w]:
                    self._rr = (self._rr + k + 1) % m
                    return self._deliver(w, self._inbox[w].popleft())
            pending = {self._takes[w]: w for w in order if self._takes[w] is not None}
            if not pending:
                raise RuntimeError(f"{self.name}: recv() with no live actor to wait for")
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=_POLL_S)
            for ref in ready:
                self._received(pending[ref], ref)

    def _received(self, w: int, ref: Any) -> None:
        ray = _ray()
        self._takes[w] = None
        try:
            msgs = ray.get(ref)
        except ray.exceptions.RayActorError as e:  # died, or its node was lost
            self._reasons[w] = _reason(e)
            self._inbox[w].append((DIED, self._reasons[w]))
            return
        except ray.exceptions.ActorUnavailableError as e:  # pragma: no cover - restarting
            self._reasons[w] = _reason(e)
            self._inbox[w].append((DIED, self._reasons[w]))
            return
        self._inbox[w].extend(msgs)
        if not any(kind in (DONE, ERROR) for kind, _ in msgs):
            self._takes[w] = self._actors[w].take.remote(_TAKE_S)

    def _deliver(self, w: int, msg: tuple[int, Any]) -> tuple[int, int, Any]:
        kind, payload = msg
        if kind == ERROR:
            self._finished[w] = True
            raise make_worker_error(payload, self.describe(w))
        if kind == DONE:
            self._finished[w] = True
        return w, kind, payload


def _reason(exc: BaseException) -> str:
    """Ray's explanation of an actor's death, on one line."""
    text = " ".join(str(exc).split())
    return text[:500] + ("..." if len(text) > 500 else "")


def _check_restarts(value: object, who: str) -> int:
    return check_count(value, who, "max_restarts", minimum=0)


def _check_options(value: object, who: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise DataFlowArgumentError(
            f"{who}: actor_options must be a dict of Ray actor options (e.g. "
            f"{{'num_cpus': 2}}), got {type(value).__name__}"
        )
    reserved = {"max_restarts", "max_task_retries", "max_concurrency"} & set(value)
    if reserved:
        raise DataFlowArgumentError(
            f"{who}: actor_options may not set {sorted(reserved)}: the flow manages restarts "
            "itself (use its max_restarts argument)"
        )
    return dict(value)


class _RayOwner:
    """What RayMapData and RayRunner share: the connection and the pool of actors."""

    _who: str
    _connected = False

    def _init_ray(self, address: object, actor_options: object, max_restarts: object) -> None:
        if address is not None and not isinstance(address, str):
            raise DataFlowArgumentError(
                f"{self._who}: address must be None, 'auto', 'host:port' or 'ray://host:port', "
                f"got {type(address).__name__}"
            )
        self._address = address
        self._actor_options = _check_options(actor_options, self._who)
        self._max_restarts = _check_restarts(max_restarts, self._who)
        _ray()  # a missing Ray fails here, at construction

    def _ray_pool(self, job: Any, num_workers: int, seed: int | None, cap: int) -> RayPool:
        if not self._connected:
            _connect(self._address, self._who)
            self._connected = True
            self._register_cleanup(_disconnect)  # type: ignore[attr-defined]
        return RayPool(
            name=self._who,
            job=pickle.dumps(job, protocol=5),
            num_workers=num_workers,
            seed=seed,
            position=self._position(),  # type: ignore[attr-defined]
            item_cap=cap,
            actor_options=self._actor_options,
            max_restarts=self._max_restarts,
        )

    def actor_handles(self) -> list[Any]:
        """The Ray actor handles currently working for this flow (empty before start)."""
        pool = getattr(self, "_pool", None)
        if pool is None or pool.closed:
            return []
        return pool.actors()


class RayMapData(_RayOwner, _ParallelMap):
    """``MapData`` with ``map_func`` running in ``num_actors`` Ray actors.

    The upstream runs in the driver; its datapoints go to the actors ``batch_size`` a call,
    results come back as they finish (``ordered=True``: in input order). ``strict=True``: each
    pass is exactly one upstream pass, every datapoint once; ``strict=False``: the upstream repeats
    and a pass yields ``len(ds)`` datapoints (see :mod:`dataflow.parallel_map`). ``len()`` is
    ``len(ds)``. Resume saves the upstream position and what was delivered, nothing about actors:
    a state loads into a RayMapData with another ``num_actors`` (or into a MultiProcessMapData
    of the same mode). Example::

        ds = RayMapData(DataFromList(paths, shuffle=True), load_and_augment, num_actors=32,
                        strict=True, address="auto")
    """

    def __init__(
        self,
        ds: DataFlow,
        map_func: Callable[[Any], Any] | None,
        num_actors: int | None = None,
        *,
        batch_size: int = DEFAULT_BATCH,
        strict: bool = True,
        ordered: bool = False,
        buffer_size: int | None = None,
        address: str | None = None,
        actor_options: dict[str, Any] | None = None,
        max_restarts: int = 3,
        seed: int | None = None,
    ) -> None:
        """
        Args:
            ds: the upstream flow (iterated in the driver).
            map_func: datapoint -> datapoint (``None`` drops it, with ``strict=False`` only).
            num_actors: actors to start (default: the CPUs this process may use).
            batch_size: datapoints sent to an actor in one call. Each call costs ~0.5 ms of Ray
                overhead: keep it large for cheap functions; for slow ones (a large image each)
                a few dozen keeps the actors evenly loaded.
            strict, ordered: as in :class:`~dataflow.MultiProcessMapData`.
            buffer_size: datapoints in flight at most (default: two calls' worth per actor).
            address: the Ray to use (see the module doc).
            actor_options: Ray options for each actor (``num_cpus``, ``resources``,
                ``runtime_env``...; default one CPU each).
            max_restarts: replacements of each actor after it dies.
            seed: seed for the actors' global generators (as for MultiProcessMapData).
        """
        who = "RayMapData"
        self._who = who
        if num_actors is None:
            num_actors = default_workers()
        n = check_count(num_actors, who, "num_actors")
        bs = check_count(batch_size, who, "batch_size")
        if buffer_size is None:
            buffer_size = 2 * bs * n
        self._init_map(who, ds, n, map_func, buffer_size, strict, ordered, seed, None, False, "ray")
        self._restart = True  # the pool enforces max_restarts
        self._init_ray(address, actor_options, max_restarts)
        self.num_actors = n
        self.batch_size = bs
        self._func_bytes = _serialize(map_func, "map_func", who)

    def _prepare(self) -> None:
        if self._job is None:
            self._job = _MapJob(self._func_bytes, 0, self._who)

    def _make_pool(self) -> Any:
        self._prepare()
        return self._ray_pool(self._job, self._num_workers, self._stage_seed(), 1 << 40)


class RayRunner(_RayOwner, MultiProcessRunner):
    """Run copies of ``ds`` in ``num_actors`` Ray actors and yield what they produce.

    ``shard=True`` (the default here): one pass of the runner is one pass of the source, split
    between the actors, every datapoint exactly once (the source(s) at the root of each copy yield
    every ``n``-th datapoint; see :mod:`dataflow.parallel` for what that requires of the source).
    ``shard=False``: each actor runs its own full copy, forever; a pass yields ``len(ds)``
    datapoints of their merged streams (same distribution, not the same set). ``len()`` is
    ``len(ds)``. An actor that dies raises :class:`~dataflow.errors.WorkerDied` (its copy's
    position cannot be replayed elsewhere); resume with ``shard=True`` needs the same
    ``num_actors``, as the local runners do.
    """

    def __init__(
        self,
        ds: DataFlow,
        num_actors: int,
        *,
        shard: bool = True,
        address: str | None = None,
        actor_options: dict[str, Any] | None = None,
        max_restarts: int = 3,
        num_prefetch: int | None = None,
        seed: int | None = None,
    ) -> None:
        """
        Args:
            ds: the flow each actor runs a copy of.
            num_actors: actors to start.
            shard: split one pass of the source between the actors (see above).
            address, actor_options: as in :class:`RayMapData`.
            max_restarts: accepted for symmetry with RayMapData; a runner's actor that dies
                ends the pass with WorkerDied.
            num_prefetch: datapoints an actor may hold for the driver (default 64 per actor).
            seed: seed for the copies' random streams (as for MultiProcessRunner).
        """
        n = check_count(num_actors, "RayRunner", "num_actors")
        if num_prefetch is None:
            num_prefetch = 64 * n
        super().__init__(ds, num_prefetch, n, seed=seed, shard=shard, start_method="spawn")
        self._who = "RayRunner"
        self._kind = "ray"
        self._start_method = None
        self._init_ray(address, actor_options, max_restarts)
        self.num_actors = n
        _serialize(ds, "ds", self._who)  # fail now, not at the first pass

    def _prepare(self) -> None:
        if self._pool is not None and not self._pool.closed:
            return
        # Serialized again at each start: the copy carries the flow as it stands now.
        ds = _serialize(self.ds, "ds", self._who)
        shard_seed = self._shard_seed() if self._shard else None
        self._job = _RunnerJob(
            ds, self._shard, shard_seed, self._seed is not None, self._job_resume()
        )

    def _make_pool(self) -> Any:
        self._prepare()
        return self._ray_pool(self._job, self.num_proc, self._workers_seed(), self._item_cap)

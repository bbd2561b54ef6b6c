"""Parallel maps: ``MapData`` with the function running in worker threads or processes.

Unlike the runners of :mod:`dataflow.parallel`, a parallel map has **one** upstream, iterated in
the consumer; only ``map_func`` runs in the workers. So the data is exactly what ``MapData(ds,
map_func)`` produces, up to order (and ``strict``, below). A datapoint goes in, ``map_func(dp)``
comes out; ``None`` means "drop this datapoint" (not allowed with ``strict=True``).

Two options say how exact the output is:

- ``strict=False`` (tensorpack's default): the upstream is repeated forever (as
  ``RepeatedData(ds, -1)``) and mapped continuously; one pass of the map yields ``len(ds)``
  datapoints (forever if ``len(ds)`` is unknown), which may mix datapoints of consecutive upstream
  passes. Nothing is lost or repeated across passes: the next pass continues where this one
  stopped. (tensorpack's own non-strict maps never end a pass; here a pass ends after ``len(ds)``.)
- ``strict=True``: each pass of the map is exactly one pass of the upstream, mapped: every
  datapoint exactly once (a multiset equal to ``MapData``'s pass), then the pass ends.
  ``map_func`` returning ``None`` is an error in this mode. The upstream must be finite.
- ``ordered=True``: the output comes in input order. With ``strict=True`` it equals ``MapData``'s
  output exactly. A slow datapoint then holds back the ones after it (up to ``buffer_size``).
  Without it, datapoints come out as the workers finish them.

``buffer_size`` bounds the datapoints in flight (sent to workers, not yet yielded).

Keyword-only extras: ``start_method`` (``"fork"``, ``"forkserver"``, ``"spawn"``, ``None`` for the
platform's default; under spawn/forkserver ``map_func`` is pickled at ``reset_state`` and an
error names it if it cannot be), ``seed`` (each worker's numpy and Python global generators are
seeded from ``(seed, the flow's position, worker id)``; the global :func:`dataflow.set_seed`
applies without it; with a seed and ``ordered=True`` the work is also dealt to the workers in a
fixed order, so a random ``map_func`` gives reproducible output) and
``restart_workers`` (a worker process that dies is replaced and the datapoints it held are sent
again, so a pass stays exactly once; a datapoint on which three workers died raises
:class:`~dataflow.errors.WorkerDied`).

An exception in ``map_func`` is raised in the consumer as :class:`~dataflow.errors.WorkerError`
with the original type name, message and traceback; an exception of the upstream is raised as
itself (the upstream runs in the consumer). A worker process that dies raises
:class:`~dataflow.errors.WorkerDied` within about a second (unless ``restart_workers``). Workers
start at ``reset_state()``, ignore Ctrl-C, die with the consumer, and stop on ``close()``, garbage
collection or interpreter exit. A parallel map allows one live iterator at a time.

Where things are: this module is the consumer side (one concept: feeding the workers and turning
their messages into the pass, in order or not) and the public classes; a worker's loop is in
``_engine/map_job.py``, what a worker's death costs (restart, resend, poison, timeout) in
``_engine/map_supervise.py``, and the resumable state in ``_engine/map_resume.py``.
"""

from __future__ import annotations

import itertools
import logging
import math
import pickle
from collections.abc import Callable, Iterator
from typing import Any

from ._batching import aggregate_batch
from ._engine.job import DATA, DIED, DONE, Job
from ._engine.map_job import (
    _R_BATCH,
    _R_BUSY,
    _R_CHUNK,
    _R_DROPPED,
    _R_LEFTOVER,
    _R_ORDERED,
    _R_SKIPPED,
    _R_STARTED,
    _R_UNSTACKED,
    _T_AT,
    _T_BATCH,
    _T_FLUSH,
    _T_RANGE,
    _MapJob,
)
from ._engine.map_resume import MapResume
from ._engine.map_supervise import MapSupervision, check_restarts, check_timeout
from ._engine.stage import PoolOwner, check_count, check_flag, default_workers
from ._engine.workers import ProcessPool, ThreadPool
from ._skipping import ErrorBudget, check_on_error
from .base import DataFlow, ProxyDataFlow, check_dataflow
from .errors import (
    DataFlowArgumentError,
    DataFlowTerminated,
    DatapointError,
    LengthUnknownError,
    WorkerDied,
)

logger = logging.getLogger(__name__)

__all__ = [
    "MultiThreadMapData",
    "MultiProcessMapData",
    "MultiProcessMapDataZMQ",
    "MultiProcessMapAndBatchData",
    "MultiProcessMapAndBatchDataZMQ",
]

_ALL_SKIPPED: Any = object()  # an ordered batch whose every datapoint failed (on_error="skip")


class _ParallelMap(MapResume, MapSupervision, PoolOwner, ProxyDataFlow):
    """The consumer side shared by every parallel map (see the module doc)."""

    reentrant = False
    _df_save = MapResume._df_save  # the iterating class names its state hook (dataflow._state)
    _batch_size = 0  # MapAndBatch: datapoints per batch
    _remainder = False
    _use_list = False
    _fused = False  # batching for the BatchData on top (_take_batching)

    def _init_map(
        self,
        who: str,
        ds: DataFlow,
        num_workers: object,
        map_func: object,
        buffer_size: object,
        strict: object,
        ordered: object,
        seed: object,
        start_method: object,
        restart_workers: object,
        kind: str,
        on_error: object = "raise",
        max_errors: object = None,
        timeout: object = None,
    ) -> None:
        self.ds = check_dataflow(ds, who)
        if num_workers is None:
            num_workers = default_workers()
        arg = "num_thread" if kind == "thread" else "num_proc"
        self._num_workers = check_count(num_workers, who, arg)
        if map_func is None or not callable(map_func):
            raise DataFlowArgumentError(
                f"{who}: map_func must be a callable (datapoint -> datapoint or None), "
                f"got {type(map_func).__name__}"
            )
        self.map_func = map_func
        self._buffer_size = check_count(buffer_size, who, "buffer_size")
        self._strict = check_flag(strict, who, "strict")
        self._ordered = check_flag(ordered, who, "ordered")
        self._restart, self._restart_limit = check_restarts(restart_workers, who)
        if self._restart and kind == "thread":
            raise DataFlowArgumentError(f"{who}: restart_workers applies to worker processes only")
        self._init_owner(who, seed, start_method, kind)
        self._job: Any = None
        self._skip_errors, limit = check_on_error(on_error, max_errors, who)
        self._errors = ErrorBudget(who, limit)
        self._timeout = check_timeout(timeout, who, kind)
        # What each worker holds is tracked to resend it (restarts) or to name it (timeouts).
        self._track = self._restart or self._timeout is not None

    @property
    def errors_skipped(self) -> int:
        """Datapoints dropped because ``map_func`` raised on them (``on_error="skip"``)."""
        return self._errors.skipped

    def _df_stats_extra(self) -> dict:
        """Worker figures for ``stats()`` (dataflow._stats)."""
        if "_busy_ns" not in self.__dict__:  # no pool yet
            return {"workers": self._num_workers}
        return {
            "workers": self._num_workers,
            # Batching for the BatchData on top, the map yields batches: count their datapoints.
            "per_output": self._batch_size if self._fused else 1,
            "short": self.__dict__.get("_short", 0),  # what the remainder batches lacked
            "busy_ns": list(self._busy_ns),
            "in_flight": self._outstanding,
            "capacity": self._capacity(),
            "restarts": self._restarts,
            "skipped": self.errors_skipped,
        }

    # -- batching for BatchData ------------------------------------------------------------------
    def _take_batching(self, batch_size: int, remainder: bool, use_list: bool) -> bool:
        """Batch in the workers for the ``BatchData`` directly on top; False where it cannot.

        Called by ``BatchData.reset_state`` before this map is reset. The workers then stack the
        batches (as MultiProcessMapAndBatchData's do) and this map yields them to the BatchData.
        Taken only where the output is one that ``BatchData`` over this map could give by its
        documented rules: unordered output (a batch holds datapoints in the order they were
        finished, which is any order), and with ``strict=False`` only without ``remainder``
        (a non-strict pass then yields ``len(ds) // batch_size`` batches of the stream, the
        rest going on into the next pass instead of being dropped). Not for thread maps (the
        stacking would hold the same GIL) nor once this map has started its workers.
        """
        if (
            self._kind != "process"
            or self._batch_size
            or self._ordered
            or (remainder and not self._strict)
            or self._job is not None
            or "_busy_ns" in self.__dict__
        ):
            return False
        self._fused = True
        self._batch_size = batch_size
        self._remainder = remainder
        self._use_list = use_list
        return True

    @property
    def _batch_who(self) -> str:
        """The name batching errors carry: the BatchData's when batching for it."""
        return "BatchData" if self._fused else self._who

    # -- lifecycle ---------------------------------------------------------------------------
    def reset_state(self) -> None:
        self.ds.reset_state()
        self._prepare()
        self._ensure_pool()

    def _prepare(self) -> None:
        if self._job is None:
            func = self._payload(self.map_func, "map_func")
            self._job = _MapJob(
                func,
                self._batch_size if not self._ordered else 0,
                self._who,
                self._skip_errors,
                self._timeout,
                report_started=self._report_started,
                use_list=self._use_list,
            )

    def _make_pool(self) -> ProcessPool | ThreadPool:
        self._prepare()
        if self._kind == "thread":
            jobs: list[Job] = [self._job for _ in range(self._num_workers)]
            return ThreadPool(name=self._who, jobs=jobs, seed=self._stage_seed())
        job = self._job if self._start_method == "fork" else pickle.dumps(self._job, protocol=5)
        return ProcessPool(
            name=self._who,
            job=job,
            num_workers=self._num_workers,
            method=self._start_method,  # type: ignore[arg-type]
            seed=self._stage_seed(),
            position=self._position(),
            task_ring_bytes=8 << 20,
        )

    def _on_new_pool(self) -> None:
        n = self._num_workers
        self._it: Iterator | None = None  # the upstream pass being dispatched
        self._it_yielded = 0  # datapoints the current upstream pass has given
        self._exhausted = False  # strict: the pass's upstream is fully dispatched
        self._stream_over = False  # non-strict: the upstream will give nothing more
        self._next_idx = 0  # every dispatched datapoint gets the next index
        self._pass_start = 0  # indices below belong to an abandoned pass
        self._load = [0] * n  # datapoints in flight per worker
        self._busy_ns = [0] * n  # stats: time each worker spent on tasks, as it reports
        self._restarts = 0  # stats: workers replaced
        self._sent: list[dict[int, Any]] = [{} for _ in range(n)]  # restart_workers: the data
        self._attempts: dict[int, int] = {}
        self._working_on: list[int | None] = [None] * n  # the datapoint each worker reported
        self._current = 0  # datapoints of the current pass in flight
        self._outstanding = 0  # all datapoints in flight
        self._results: dict[int, Any] = {}  # ordered: finished results by index
        self._next_out = 0  # ordered: the index to yield next
        self._batch_tasks: dict[int, tuple] = {}  # ordered batches: batch_id -> task
        self._carry: list[Any] = []  # non-strict: outputs beyond the last pass's length
        self._leftovers: list[Any] = []  # strict batching: partial batches at the pass end
        self._flushed = False
        self._deal = 0
        # Resume (strict passes). An index is the pass's read number plus ``_pass_start``.
        # ``_log`` keeps the upstream's state after some numbers of reads (oldest first);
        # ``_frontier``/``_delivered`` (unordered): every index below the frontier was collected
        # for output, and so were those in the set; ``_cur_len``/``_cur_groups`` how many outputs
        # are being yielded and the indices each covers (no reference to the outputs);
        # ``_skip`` the read numbers a resumed pass must not send again. Non-strict: indices
        # number the reads of the whole stream, and ``_carry_groups`` go with ``_carry``.
        self._log: list[tuple[int, dict]] = []
        self._next_log = 0
        self._reads = 0  # upstream datapoints read: this strict pass / this pool's stream
        self._carry_groups: list[Any] = []
        self._pass_yielded = 0
        self._frontier = 0
        self._delivered: set[int] = set()
        self._skipped: set[int] = set()  # indices whose map_func raised (on_error="skip")
        self._cur_len = 0
        self._cur_groups: list[Any] = []
        self._skip: set[int] = set()
        self._left_groups: list[Any] = []
        # With a seed (this map's or the global one) and ordered output, work is dealt to the
        # workers in a fixed order, so that a random map_func gives reproducible output.
        self._deal_in_turn = self._ordered and self._stage_seed() is not None

    def _length(self) -> int | None:
        try:
            return len(self)
        except (LengthUnknownError, NotImplementedError):
            return None

    def __iter__(self) -> Iterator:
        if self._fused and not self.__dict__.pop("_df_fused_pass", False):
            raise DataFlowArgumentError(
                f"{self._who}: this map batches in its workers for the BatchData on top of it "
                "(reset through that BatchData), so it yields batches, not datapoints: iterate "
                "the BatchData; to iterate the map on its own too, reset_state() it before "
                "building the BatchData"
            )
        pool = self._ensure_pool()
        self._deaths: list[str] = []  # this pass's worker deaths (the restart budget)
        try:
            if self._strict:
                yield from self._strict_pass(pool)
            else:
                size = self._length()
                if size is not None and self._fused:
                    size //= self._batch_size  # the BatchData's length (no remainder)
                resume = self.__dict__.pop("_df_start", None)
                self._pass_yielded = 0
                if resume is not None:
                    self._resume_stream(resume)
                    self._pass_yielded = int(resume.get("pass", {}).get("yielded", 0))
                    if self._fused:  # saved as datapoints, as BatchData over the map counts
                        self._pass_yielded //= self._batch_size
                if size is not None:
                    size -= self._pass_yielded
                yield from self._stream_pass(pool, size)
        except GeneratorExit:
            raise
        except BaseException:
            self._teardown()
            raise

    # -- dispatch ----------------------------------------------------------------------------
    def _capacity(self) -> int:
        budget = self._buffer_size
        if self._batch_size and not self._ordered:
            # Each worker may hold a partial batch: give each room for two batches, so that a
            # worker whose partial batch waits for more datapoints is always topped up.
            budget = max(budget, 2 * self._num_workers * self._batch_size)
        return budget

    def _budget(self) -> int:
        if self._ordered:
            return self._capacity() - (self._next_idx - self._next_out)
        return self._capacity() - self._outstanding

    def _pull(self, k: int) -> list[Any]:
        """Up to ``k`` upstream datapoints (fewer only at the end of the upstream)."""
        dps: list[Any] = []
        while len(dps) < k:
            if self._it is None:
                if self._strict or self._stream_over:
                    return dps
                if self._reads >= self._next_log or not self._log:
                    self._log_upstream(between=True)
                self._it = iter(self.ds)
                self._it_yielded = 0
            before = len(dps)
            try:
                dps.extend(itertools.islice(self._it, k - before))
            except DataFlowTerminated:
                self._it = None
                self._exhausted = self._stream_over = True
                return dps
            finally:
                self._it_yielded += len(dps) - before
                self._reads += len(dps) - before
            if self._reads >= self._next_log and self._it is not None:
                self._log_upstream(between=False)
            if len(dps) < k:  # the upstream pass ended
                self._it = None
                if self._strict:
                    self._exhausted = True
                    return dps
                if self._it_yielded == 0:
                    self._stream_over = True  # an empty pass: repeating it gives nothing
                    return dps
        return dps

    def _fill(self, pool: Any) -> None:
        """Send upstream datapoints to the workers, up to ``buffer_size`` in flight.

        A worker is topped up only once it is down to half its share, with one message that
        refills it: fewer, larger messages mean fewer wake-ups of sleeping workers.
        """
        budget = self._budget()
        if budget <= 0 or self._exhausted or self._stream_over:
            return
        n = self._num_workers
        if self._batch_size and self._ordered:
            bs = self._batch_size
            while budget >= bs:
                dps = self._pull(bs)
                if not dps:
                    return
                self._dispatch_batch(pool, self._pick_worker(), self._next_idx, dps)
                self._account(len(dps))
                budget -= len(dps)
                if len(dps) < bs:
                    return
            return
        share = max(1, self._capacity() // n)
        if self._deal_in_turn:
            # Deterministic dealing: fixed-size chunks, workers in turn.
            chunk = max(1, share // 2)
            while budget >= chunk or (budget > 0 and self._exhausted):
                w = self._deal % n
                if self._load[w] + chunk > share:
                    return
                dps = self._pull(min(chunk, budget))
                if not dps:
                    return
                self._deal += 1
                sent = self._dispatch(pool, w, self._next_idx, dps)
                self._account(len(dps), sent)
                budget -= len(dps)
                if len(dps) < chunk:
                    return
            return
        load = self._load
        if min(load) > share // 2:
            return  # every worker has enough (the common case)
        for w in sorted(range(n), key=load.__getitem__):
            if load[w] > share // 2:
                break
            k = min(share - load[w], budget)
            if k <= 0:
                break
            dps = self._pull(k)
            if not dps:
                return
            sent = self._dispatch(pool, w, self._next_idx, dps)
            self._account(len(dps), sent)
            budget -= len(dps)
            if len(dps) < k:
                return

    def _account(self, k: int, sent: int | None = None) -> None:
        self._next_idx += k
        sent = k if sent is None else sent
        self._outstanding += sent
        self._current += sent

    def _pick_worker(self) -> int:
        if self._deal_in_turn:
            w = self._deal % self._num_workers
            self._deal += 1
            return w
        load = self._load
        return load.index(min(load))

    def _dispatch(self, pool: Any, w: int, first: int, dps: list[Any]) -> int:
        """Send ``dps`` (indices from ``first``) to ``w``; return how many were sent.

        A resumed pass leaves out the ones delivered before the state was saved.
        """
        if self._skip:
            pairs = [
                (first + i, dp)
                for i, dp in enumerate(dps)
                if first + i - self._pass_start not in self._skip
            ]
            self._skip.difference_update(range(first - self._pass_start, first + len(dps)))
            self._delivered.update(range(first, first + len(dps)))
            self._delivered.difference_update(idx for idx, _ in pairs)
            self._advance_frontier()
            if not pairs:
                return 0
            if len(pairs) < len(dps):
                idxs, dps = [idx for idx, _ in pairs], [dp for _, dp in pairs]
                pool.send(w, (_T_AT, idxs, dps))
                self._load[w] += len(dps)
                if self._track:
                    self._sent[w].update(zip(idxs, dps))
                if self._flushed:
                    pool.send(w, (_T_FLUSH,))
                return len(dps)
        pool.send(w, (_T_RANGE, first, dps))
        self._load[w] += len(dps)
        if self._track:
            self._sent[w].update(zip(range(first, first + len(dps)), dps))
        if self._flushed:
            pool.send(w, (_T_FLUSH,))
        return len(dps)

    def _dispatch_batch(self, pool: Any, w: int, first: int, dps: list[Any]) -> None:
        task = (_T_BATCH, first, first, dps)
        self._batch_tasks[first] = task
        pool.send(w, task)
        self._load[w] += len(dps)
        if self._track:
            self._sent[w].update(zip(range(first, first + len(dps)), dps))

    # -- receiving ---------------------------------------------------------------------------
    def _finished(self, w: int, idxs: Any) -> bool:
        """Account for datapoints done by ``w``; False if they belong to an abandoned pass."""
        k = len(idxs)
        if not k:
            return False
        self._load[w] -= k
        self._outstanding -= k
        if self._track:
            sent = self._sent[w]
            for idx in idxs:
                sent.pop(idx, None)
        first = idxs[0] if isinstance(idxs, range) else min(idxs)
        if first >= self._pass_start:
            self._current -= k
            return True
        fresh = sum(1 for idx in idxs if idx >= self._pass_start)
        if fresh:  # pragma: no cover - passes are kept apart (see _strict_pass)
            self._current -= fresh
            logger.warning(
                "%s: dropped %d datapoints mixed with an abandoned pass", self._who, fresh
            )
        return False

    def _collect(self, pool: Any) -> list[Any]:
        """Receive one message; return the outputs it makes ready (in yield order)."""
        w, kind, payload = pool.recv()
        if kind == DIED:
            self._on_death(pool, w, payload)
            return []
        if kind == DONE:  # pragma: no cover - map workers never finish by themselves
            raise WorkerDied(f"{pool.describe(w)} stopped unexpectedly", worker=pool.describe(w))
        if kind != DATA:
            return []
        out: list[Any] = []
        groups: list[Any] = []  # unordered: the indices behind each output (for resume)
        for result in payload:
            tag = result[0]
            if tag == _R_BUSY:
                self._busy_ns[w] += result[1]
                continue
            if tag == _R_STARTED:
                self._working_on[w] = result[1]
                continue
            if tag == _R_SKIPPED:
                _, idxs, tbs, accounted = result
                if accounted and not self._finished(w, idxs):
                    continue
                self._skipped.update(idxs)
                for idx, tb in zip(idxs, tbs):
                    where = f"datapoint #{idx - self._pass_start} of the pass in {pool.describe(w)}"
                    self._errors.skip(where, tb)
                if not self._ordered:
                    self._delivered.update(idxs)  # nothing to deliver: as good as delivered
                continue
            if tag == _R_CHUNK:
                _, idxs, values, any_none = result
                if not self._finished(w, idxs):
                    continue
                if self._ordered:
                    self._results.update(zip(idxs, values))
                elif not any_none:
                    out.extend(values)
                    groups.extend(idxs)
                elif self._strict and any(
                    v is None and i not in self._skipped for i, v in zip(idxs, values)
                ):
                    raise self._none_error(
                        next(
                            i for i, v in zip(idxs, values) if v is None and i not in self._skipped
                        )
                    )
                else:
                    for idx, value in zip(idxs, values):
                        if value is None:
                            self._delivered.add(idx)  # dropped: nothing to deliver
                        else:
                            out.append(value)
                            groups.append(idx)
            elif tag == _R_BATCH:
                _, idxs, batch = result
                if self._finished(w, idxs):
                    out.append(batch)
                    groups.append(list(idxs))
            elif tag == _R_UNSTACKED:
                _, batch_id, idxs, dps = result
                if batch_id is not None:
                    self._batch_tasks.pop(batch_id, None)
                if not self._finished(w, idxs):
                    continue
                # The worker could not stack them: stacking here raises the BatchError.
                batch = aggregate_batch(dps, self._use_list, self._batch_who)
                if batch_id is None:
                    out.append(batch)
                    groups.append(list(idxs))
                else:
                    self._results[batch_id] = (len(idxs), batch)
            elif tag == _R_DROPPED:
                if self._finished(w, result[1]):
                    if self._strict:
                        raise self._none_error(result[1][0])
                    self._delivered.update(result[1])
            elif tag == _R_LEFTOVER:
                _, idxs, dps = result
                if self._finished(w, idxs):
                    self._leftovers.extend(dps)
                    self._left_groups.extend(idxs)
            elif tag == _R_ORDERED:
                _, batch_id, idxs, batch = result
                self._batch_tasks.pop(batch_id, None)
                if not self._finished(w, idxs):
                    continue
                if batch is None and self._skipped.issuperset(idxs):
                    batch = _ALL_SKIPPED  # every datapoint of the batch failed and was skipped
                if batch is None:
                    raise DatapointError(
                        f"{self._who}: map_func returned None for a datapoint of the batch that "
                        f"starts at datapoint #{batch_id - self._pass_start} of the pass; with "
                        "ordered=True every datapoint must map to one (batches would no longer "
                        "match BatchData(MapData(...)))"
                    )
                self._results[batch_id] = (len(idxs), batch)
        if self._ordered:
            out.extend(self._ordered_ready(groups))
        else:
            for group in groups:
                if isinstance(group, list):
                    self._delivered.update(group)
                else:
                    self._delivered.add(group)
            self._advance_frontier()
        self._groups_last = groups
        return out

    def _ordered_ready(self, groups: list[Any]) -> list[Any]:
        """The results that are next in order; ``groups`` gets the index of each (for resume)."""
        out = []
        results = self._results
        if self._batch_size:
            while self._next_out in results:
                first = self._next_out
                n, batch = results.pop(first)
                self._next_out += n
                if batch is _ALL_SKIPPED:
                    continue
                if n == self._batch_size or self._remainder:
                    out.append(batch)
                    groups.append(first)
            return out
        pop = results.pop
        nxt = self._next_out
        while nxt in results:
            value = pop(nxt)
            if value is not None:
                out.append(value)
                groups.append(nxt)
            elif self._strict and nxt not in self._skipped:
                self._next_out = nxt
                raise self._none_error(nxt)
            nxt += 1
        self._next_out = nxt
        return out

    def _none_error(self, idx: int) -> DatapointError:
        return DatapointError(
            f"{self._who}: map_func returned None for datapoint #{idx - self._pass_start} of the "
            "pass; with strict=True every datapoint must map to one (filter before the map, or "
            "use strict=False, where None drops the datapoint)"
        )

    def _strict_pass(self, pool: Any) -> Iterator:
        # Leave an abandoned pass behind: its results in flight are dropped when they arrive.
        self._pass_start = self._next_idx
        self._next_out = self._next_idx
        self._results.clear()
        self._skipped = set()
        self._batch_tasks.clear()
        self._current = 0
        self._leftovers = []
        self._left_groups = []
        self._in_leftovers = False
        self._flushed = False
        self._cur_len, self._cur_groups, self._groups_last = 0, [], []
        self._frontier = self._pass_start
        self._delivered = set()
        if self._batch_size and not self._ordered and self._outstanding:
            # Workers still hold datapoints of the abandoned pass (queued, or in a partial batch):
            # have them hand all of those over (and drop them) before any datapoint of this pass
            # can join a batch.
            for w in range(self._num_workers):
                pool.send(w, (_T_FLUSH,))
            while self._outstanding:
                self._collect(pool)
        self._begin_upstream_pass(self.__dict__.pop("_df_start", None))
        self._exhausted = False
        while True:
            if not self._exhausted:
                self._fill(pool)
                while self._current == 0 and not self._exhausted:
                    # A resumed pass: all it read so far was delivered before; read on (no
                    # progress: stale datapoints of an abandoned pass fill the budget).
                    before = self._next_idx
                    self._fill(pool)
                    if self._next_idx == before:
                        break
            if self._exhausted and self._batch_size and not self._ordered and not self._flushed:
                self._flushed = True
                for w in range(self._num_workers):
                    pool.send(w, (_T_FLUSH,))
            if self._exhausted and self._current == 0:
                break
            out = self._collect(pool)
            self._cur_len, self._cur_groups = len(out), self._groups_last
            if out:
                yield from out
        self._cur_len, self._cur_groups = 0, []
        if self._leftovers:
            yield from self._leftover_batches()

    def _leftover_batches(self) -> Iterator:
        rest, self._leftovers = self._leftovers, []
        self._in_leftovers = True
        bs = self._batch_size
        end = len(rest) if self._remainder else len(rest) - len(rest) % bs
        for start in range(0, end, bs):
            self._left_next = start + bs
            if start + bs > end:
                self._short = self.__dict__.get("_short", 0) + start + bs - end  # stats
            yield aggregate_batch(rest[start : start + bs], self._use_list, self._batch_who)
        self._in_leftovers = False

    def _stream_pass(self, pool: Any, size: int | None) -> Iterator:
        remaining = math.inf if size is None else size
        while remaining > 0:
            if self._carry:
                out, self._carry = self._carry, []
                groups, self._carry_groups = self._carry_groups, []
            else:
                self._fill(pool)
                if self._stream_over and self._outstanding == 0 and not self._results:
                    return
                out = self._collect(pool)
                groups = self._groups_last
            if len(out) > remaining:
                cut = int(remaining)
                self._carry, self._carry_groups = out[cut:], groups[cut:]
                out, groups = out[:cut], groups[:cut]
            remaining -= len(out)
            self._pass_yielded += len(out)
            self._cur_len, self._cur_groups = len(out), groups
            yield from out
        self._cur_len, self._cur_groups = 0, []


class MultiThreadMapData(_ParallelMap):
    """``MapData`` with ``map_func`` running in ``num_thread`` threads (see the module doc).

    Threads share the GIL: this pays off when ``map_func`` releases it (I/O, numpy, OpenCV, PIL).
    The threads start in the process that resets the flow, so ``MultiProcessRunnerZMQ(
    MultiThreadMapData(...), 1)`` moves them out of the training process.
    ``len()`` is ``len(ds)``.
    """

    def __init__(
        self,
        ds: DataFlow,
        num_thread: int | None = None,
        map_func: Callable[[Any], Any] | None = None,
        buffer_size: int = 200,
        strict: bool = False,
        *,
        ordered: bool = False,
        seed: int | None = None,
        on_error: str = "raise",
        max_errors: int | None = None,
        timeout: None = None,
    ) -> None:
        """
        Args:
            ds: the upstream flow (iterated in the consumer).
            num_thread: number of threads (default: the number of usable CPUs).
            map_func: datapoint -> datapoint, or ``None`` to drop it.
            buffer_size: datapoints in flight at most.
            strict: each pass is exactly one upstream pass (see the module doc).
            ordered: yield in input order.
            seed: seed for the threads' flows' streams (see the module doc).
            on_error: ``"raise"`` or ``"skip"`` (a datapoint on which ``map_func`` raises is
                dropped and counted in ``errors_skipped``, even with ``strict``).
            max_errors: with ``"skip"``, how many failures to tolerate (``None``: no limit).
            timeout: only None: a thread stuck in ``map_func`` cannot be stopped, so a timeout
                is refused (DataFlowArgumentError); MultiProcessMapData takes one.
        """
        who = "MultiThreadMapData"
        self._init_map(
            who,
            ds,
            num_thread,
            map_func,
            buffer_size,
            strict,
            ordered,
            seed,
            None,
            False,
            "thread",
            on_error,
            max_errors,
            timeout,
        )
        self.num_thread = self._num_workers


class MultiProcessMapData(_ParallelMap):
    """``MapData`` with ``map_func`` running in ``num_proc`` processes (see the module doc).

    Datapoints go to the workers and back through shared memory (numpy arrays copied once each
    way). ``len()`` is ``len(ds)``. Example::

        ds = MultiProcessMapData(DataFromList(paths), 8, load_and_augment, strict=True)
    """

    def __init__(
        self,
        ds: DataFlow,
        num_proc: int | None = None,
        map_func: Callable[[Any], Any] | None = None,
        buffer_size: int = 200,
        strict: bool = False,
        *,
        ordered: bool = False,
        start_method: str | None = None,
        restart_workers: bool | int = False,
        seed: int | None = None,
        on_error: str = "raise",
        max_errors: int | None = None,
        timeout: float | None = None,
    ) -> None:
        """
        Args:
            ds: the upstream flow (iterated in the consumer).
            num_proc: number of worker processes (default: the number of usable CPUs).
            map_func: datapoint -> datapoint, or ``None`` to drop it.
            buffer_size: datapoints in flight at most.
            strict: each pass is exactly one upstream pass (see the module doc).
            ordered: yield in input order.
            start_method: ``"fork"``, ``"forkserver"``, ``"spawn"`` or ``None`` (the default).
            restart_workers: replace dead workers and resend what they held: ``True`` without a
                limit, or an int: the restarts allowed in one pass (past it, WorkerDied names every
                death of the pass). A datapoint on which workers died three times raises
                WorkerDied, or with ``on_error="skip"`` is skipped and counted.
            seed: seed for the workers' global generators (see the module doc).
            on_error, max_errors: as in :class:`MultiThreadMapData`.
            timeout: seconds one datapoint may take in ``map_func`` (default None: no limit).
                A worker past it is stopped (SIGALRM) and handled as a death: WorkerDied naming
                the datapoint, or with ``restart_workers`` replaced and the datapoint sent again
                (three times at most, then WorkerDied or, with ``on_error="skip"``, skipped and
                counted). ``map_func`` must not use SIGALRM or ``signal.setitimer`` itself.
                Thread maps take no timeout: a stuck thread cannot be stopped.
        """
        who = type(self).__name__
        self._init_map(
            who,
            ds,
            num_proc,
            map_func,
            buffer_size,
            strict,
            ordered,
            seed,
            start_method,
            restart_workers,
            "process",
            on_error,
            max_errors,
            timeout,
        )
        self.num_proc = self._num_workers


class MultiProcessMapAndBatchData(_ParallelMap):
    """Map with ``map_func`` in ``num_proc`` processes and batch there too.

    Outputs are batches of ``batch_size`` mapped datapoints, stacked as ``BatchData`` stacks them
    (``use_list=False``), built in the workers so that stacking costs the consumer nothing. As in
    tensorpack, a batch holds whatever datapoints its worker mapped (in any order, possibly from
    consecutive upstream passes); ``map_func`` returning ``None`` drops the datapoint.

    ``len()`` is ``len(ds) // batch_size`` (plus one for a final partial batch with
    ``strict=True, remainder=True``); tensorpack's version had no length and never ended a pass.
    With ``strict=True`` each pass batches exactly one upstream pass (the workers' partial batches
    are merged at the end of the pass; the last partial batch is yielded only with
    ``remainder=True``). With ``ordered=True`` the output equals ``BatchData(MapData(ds,
    map_func), batch_size, remainder)`` (``map_func`` must then never return ``None``).
    ``buffer_size`` (default ``batch_size * 10``) bounds the datapoints in flight, and is raised to
    ``2 * num_proc * batch_size`` if smaller, so that no worker starves with a partial batch.
    """

    def __init__(
        self,
        ds: DataFlow,
        num_proc: int,
        map_func: Callable[[Any], Any],
        batch_size: int,
        buffer_size: int | None = None,
        *,
        strict: bool = False,
        remainder: bool = False,
        ordered: bool = False,
        start_method: str | None = None,
        restart_workers: bool | int = False,
        seed: int | None = None,
        on_error: str = "raise",
        max_errors: int | None = None,
        timeout: float | None = None,
    ) -> None:
        """
        Args:
            ds: the upstream flow (iterated in the consumer).
            num_proc: number of worker processes.
            map_func: datapoint -> datapoint, or ``None`` to drop it.
            batch_size: datapoints per batch.
            buffer_size: datapoints in flight at most (default ``batch_size * 10``).
            strict: each pass batches exactly one upstream pass.
            remainder: with ``strict`` or ``ordered``, also yield the last, smaller batch.
            ordered: batches in input order, equal to ``BatchData(MapData(...))``.
            start_method, restart_workers, seed, on_error, max_errors, timeout: as in
                :class:`MultiProcessMapData`.
        """
        who = type(self).__name__
        batch_size = check_count(batch_size, who, "batch_size")
        if buffer_size is None:
            buffer_size = batch_size * 10
        self._init_map(
            who,
            ds,
            num_proc,
            map_func,
            buffer_size,
            strict,
            ordered,
            seed,
            start_method,
            restart_workers,
            "process",
            on_error,
            max_errors,
            timeout,
        )
        if self._buffer_size < batch_size:
            raise DataFlowArgumentError(
                f"{who}: buffer_size ({self._buffer_size}) must be at least batch_size ({batch_size})"
            )
        self.num_proc = self._num_workers
        self.batch_size = batch_size
        self._batch_size = batch_size
        self._remainder = check_flag(remainder, who, "remainder")

    def __len__(self) -> int:
        n = len(self.ds)
        if (self._strict or self._ordered) and self._remainder:
            return -(-n // self.batch_size)
        return n // self.batch_size


# tensorpack's names
MultiProcessMapDataZMQ = MultiProcessMapData
MultiProcessMapAndBatchDataZMQ = MultiProcessMapAndBatchData

"""The worker side of the parallel maps: the job each map worker runs and the protocol it speaks.

The consumer (``dataflow.parallel_map``) sends tasks (``_T_*``: datapoints with their upstream
indices, or a flush request); a worker applies ``map_func``, batches if asked, and sends results
(``_R_*``) inside ``DATA`` messages (see :mod:`.job`). Indices travel with every result, so the
consumer can order them, count them exactly once, and resend what a dead worker held.
"""

from __future__ import annotations

import pickle
import signal
import time
import traceback
from typing import Any

import numpy as np

from .._batching import Stacker, aggregate_batch
from .job import Job

# Tasks, consumer -> worker
_T_RANGE = 0  # (tag, first_idx, [dp...]): datapoints with consecutive indices
_T_AT = 1  # (tag, [idx...], [dp...]): datapoints resent after a worker died
_T_BATCH = 2  # (tag, batch_id, first_idx, [dp...]): map all, stack into one batch (ordered)
_T_FLUSH = 3  # (tag,): hand over the partial batch now (end of a strict pass)
# Results, worker -> consumer, inside DATA messages
_R_CHUNK = 0  # (tag, idxs, [result...], any_none)
_R_BATCH = 1  # (tag, [idx...], batch): a full batch (idx: every datapoint it holds)
_R_DROPPED = 2  # (tag, [idx...]): datapoints map_func dropped (batching)
_R_LEFTOVER = 3  # (tag, [idx...], [dp...]): a partial batch, unstacked (flush)
_R_ORDERED = 4  # (tag, batch_id, idxs, batch | None)
_R_SKIPPED = 5  # (tag, [idx...], [traceback...], accounted): on_error="skip" failures; accounted
#                 when no other result of the message covers them (batching in the worker)
_R_BUSY = 6  # (tag, ns): time spent on tasks since the last report (stats; one per message)
_R_STARTED = 7  # (tag, idx): the worker begins map_func on datapoint idx (report_started only)
_R_UNSTACKED = 8  # (tag, batch_id | None, [idx...], [dp...]): a batch that would not stack here;
#                   the consumer stacks it again, so that its BatchError is raised there


# A worker hands over the results of a task chunk early once they hold this many bytes of arrays:
# a chunk of large arrays in one message would exceed a ring record and travel in fragments,
# reassembled with a copy (much slower than large arrays read in place).
_HANDOVER_BYTES = 1 << 20


def _array_bytes(out: Any) -> int:
    """Bytes of the numpy arrays at the top level of a datapoint (a cheap estimate of its size)."""
    if isinstance(out, np.ndarray):
        return out.nbytes
    if isinstance(out, (list, tuple)):
        return sum(x.nbytes for x in out if isinstance(x, np.ndarray))
    if isinstance(out, dict):
        return sum(x.nbytes for x in out.values() if isinstance(x, np.ndarray))
    return 0


class _MapJob(Job):
    """A map worker: apply ``map_func`` to the datapoints it is sent (and batch, if asked)."""

    def __init__(
        self,
        map_func: Any,
        batch_size: int = 0,
        who: str = "",
        skip_errors: bool = False,
        timeout: float | None = None,
        report_started: bool = False,
        use_list: bool = False,
    ) -> None:
        self.map_func = map_func  # the function, or its pickle
        self.batch_size = batch_size
        self.use_list = use_list  # batches: every component a list (BatchData's use_list)
        self.who = who
        self.skip_errors = skip_errors
        self.timeout = timeout  # seconds per datapoint (worker processes only)
        # Publish each datapoint's index before mapping it, so that the consumer knows which one
        # a worker died on (restart_workers, timeout: the poison rule blames only that one).
        self.report_started = report_started

    def run(self, io: Any) -> None:
        f = pickle.loads(self.map_func) if isinstance(self.map_func, bytes) else self.map_func
        if self.timeout is not None:
            f = _timed(f, self.timeout)
        failed: list[str] = []  # tracebacks of the failures not yet reported (skip_errors)
        if self.skip_errors:
            f = _guarded(f, failed)
        put = io.put
        report = self.report_started

        def started(idx: int) -> None:
            put((_R_STARTED, idx))
            io.flush()

        get = io.get_task
        waiting = io.consumer_waiting
        bs = self.batch_size
        who = self.who
        use_list = self.use_list

        def stacked(dps: list[Any]) -> Any:
            # A batch that does not stack (shapes, types) goes back as it is: the consumer
            # stacks it again and raises the BatchError where BatchData would.
            try:
                return aggregate_batch(dps, use_list, who)
            except Exception:
                return _UNSTACKED

        part_idx: list[int] = []
        # The partial batch: large arrays go into their rows as each datapoint is mapped.
        part = Stacker(bs, use_list, who) if bs else None
        clock = time.perf_counter_ns
        began = [0]  # when the task being worked on arrived (or the last message went out)

        def flush() -> None:
            # The worker's busy time travels in the message it sends anyway (dataflow._stats).
            now = clock()
            put((_R_BUSY, now - began[0]))
            began[0] = now
            io.flush()

        while True:
            task = get()
            began[0] = clock()
            tag = task[0]
            if tag == _T_RANGE or tag == _T_AT:
                if tag == _T_RANGE:
                    idxs: Any = range(task[1], task[1] + len(task[2]))
                else:
                    idxs = task[1]
                dps = task[2]
                if not bs:
                    results: list[Any] = []
                    any_none = False
                    done = 0
                    held = 0
                    fails: list[tuple[int, str]] = []
                    for dp in dps:
                        if report:
                            started(idxs[done + len(results)])
                        out = f(dp)
                        if out is _FAILED:
                            fails.append((idxs[done + len(results)], failed.pop()))
                            out = None
                        if out is None:
                            any_none = True
                        results.append(out)
                        held += _array_bytes(out)
                        if (waiting() or held >= _HANDOVER_BYTES) and len(results) < len(
                            dps
                        ) - done:
                            # The consumer starves, or the results are large: hand them over.
                            n = len(results)
                            fails = _report(put, fails, False)
                            put((_R_CHUNK, idxs[done : done + n], results, any_none))
                            flush()
                            done += n
                            results, any_none, held = [], False, 0
                    if results:
                        _report(put, fails, False)
                        put((_R_CHUNK, idxs[done:], results, any_none))
                    flush()  # results held here would count against the consumer's budget
                    continue
                dropped = []
                fails = []
                for idx, dp in zip(idxs, dps):
                    if report:
                        started(idx)
                    out = f(dp)
                    if out is _FAILED:
                        fails.append((idx, failed.pop()))
                        continue
                    if out is None:
                        dropped.append(idx)
                        continue
                    part_idx.append(idx)
                    part.add(out)  # type: ignore[union-attr]
                    if len(part) == bs:  # type: ignore[arg-type]
                        try:
                            batch = part.batch()  # type: ignore[union-attr]
                        except Exception:
                            # It does not stack (shapes, types): the consumer stacks it again
                            # and raises the BatchError where BatchData would.
                            batch = _UNSTACKED
                            rows = part.datapoints()  # type: ignore[union-attr]
                            put((_R_UNSTACKED, None, part_idx, rows))
                        else:
                            # The time spent on it travels with it (it may leave in a message
                            # that put() sends by itself, before this task's flush).
                            now = clock()
                            put((_R_BUSY, now - began[0]))
                            began[0] = now
                            put((_R_BATCH, part_idx, batch))
                        part_idx, part = [], Stacker(bs, use_list, who)
                        if waiting() or _array_bytes(batch) >= _HANDOVER_BYTES:
                            # The consumer starves, or the batch is large (see _HANDOVER_BYTES):
                            # hand it over now rather than with the rest of the task.
                            if dropped:
                                put((_R_DROPPED, dropped))
                                dropped = []
                            fails = _report(put, fails, True)
                            flush()
                        batch = None  # written (or queued): its array may be reused (Stacker)
                if dropped:
                    put((_R_DROPPED, dropped))
                _report(put, fails, True)
                flush()
            elif tag == _T_BATCH:
                _, batch_id, first, dps = task
                idxs = range(first, first + len(dps))
                outs = []
                for idx, dp in zip(idxs, dps):
                    if report:
                        started(idx)
                    outs.append(f(dp))
                fails = [
                    (i, tb)
                    for (i, out), tb in zip(
                        ((i, out) for i, out in zip(idxs, outs) if out is _FAILED), failed
                    )
                ]
                failed.clear()
                if fails:  # skipped: the batch holds the others (the consumer knows which)
                    _report(put, fails, False)
                    outs = [out for out in outs if out is not _FAILED]
                if not outs:
                    put((_R_ORDERED, batch_id, idxs, None))
                elif any(out is None for out in outs):
                    put((_R_ORDERED, batch_id, idxs, None))
                else:
                    batch = stacked(outs)
                    if batch is _UNSTACKED:
                        put((_R_UNSTACKED, batch_id, idxs, outs))
                    else:
                        put((_R_ORDERED, batch_id, idxs, batch))
                flush()
            elif tag == _T_FLUSH:
                put((_R_LEFTOVER, part_idx, part.datapoints() if part is not None else []))
                part_idx, part = [], Stacker(bs, use_list, who) if bs else None
                flush()


_FAILED: Any = object()  # what a guarded map function returns for a datapoint that raised
_UNSTACKED: Any = object()  # a batch whose datapoints did not stack

#: The signal that ends a worker process whose map_func ran past its timeout.
TIMEOUT_SIGNAL = signal.SIGALRM


def _timed(f: Any, timeout: float) -> Any:
    """``f`` under a per-call deadline: past it, the kernel ends this worker process.

    SIGALRM with its default action terminates the process even while ``f`` is stuck in C code
    holding the GIL (no Python handler has to run); the consumer sees a death by SIGALRM and
    handles it as a hung worker. Worker processes only (a thread cannot be ended).
    """
    signal.signal(TIMEOUT_SIGNAL, signal.SIG_DFL)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {TIMEOUT_SIGNAL})
    arm = signal.setitimer
    real = signal.ITIMER_REAL

    def timed(dp: Any) -> Any:
        arm(real, timeout)
        try:
            return f(dp)
        finally:
            arm(real, 0)

    return timed


def _guarded(f: Any, failed: list[str]) -> Any:
    """``f`` for ``on_error="skip"``: an exception becomes ``_FAILED`` and its traceback is kept."""

    def guarded(dp: Any) -> Any:
        try:
            return f(dp)
        except Exception:
            failed.append(traceback.format_exc())
            return _FAILED

    return guarded


def _report(put: Any, fails: list[tuple[int, str]], accounted: bool) -> list[tuple[int, str]]:
    """Send the failures (before the results that hold their places); return an empty list."""
    if fails:
        put((_R_SKIPPED, [idx for idx, _ in fails], [tb for _, tb in fails], accounted))
    return []

"""Supervision of a parallel map's workers (``dataflow.parallel_map``): what a death costs.

A worker that dies (a crash, a SIGKILL, ``timeout=`` ending a stuck ``map_func``, a lost Ray
actor) is either the end of the pass (``WorkerDied`` naming it) or, with ``restart_workers``,
replaced: the datapoints it held are sent again, so the pass stays exactly once. A datapoint in
flight at three deaths is given up on: ``WorkerDied``, or with ``on_error="skip"`` skipped and
counted. The consumer loop (``_ParallelMap._collect``) calls ``_on_death``; the rest of the map's
bookkeeping (``_sent``, ``_load``, ``_attempts``...) is the map's own.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import DataFlowArgumentError, WorkerDied
from .map_job import _T_AT, _T_FLUSH, TIMEOUT_SIGNAL

__all__ = ["MapSupervision", "check_restarts", "check_timeout", "MAX_ATTEMPTS"]

# A datapoint in flight at this many worker deaths is given up on.
MAX_ATTEMPTS = 3


def check_timeout(value: object, who: str, kind: str) -> float | None:
    """``timeout``: None (off) or the seconds one datapoint may take in a worker process."""
    if value is None:
        return None
    if kind != "process":
        raise DataFlowArgumentError(
            f"{who}: timeout applies to worker processes only: a stuck thread cannot be stopped "
            "(use MultiProcessMapData, or a timeout inside map_func)"
        )
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise DataFlowArgumentError(
            f"{who}: timeout must be a positive number of seconds or None, got {value!r}"
        )
    return float(value)


def check_restarts(value: object, who: str) -> tuple[bool, int | None]:
    """``restart_workers``: True (no limit), False, or the restarts allowed in one pass."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value), None
    if isinstance(value, (int, np.integer)) and value >= 0:
        return bool(value > 0), int(value)
    raise DataFlowArgumentError(
        f"{who}: restart_workers must be True, False or the number of restarts allowed in a "
        f"pass (an int >= 0), got {value!r}"
    )


class MapSupervision:
    """The death-handling half of ``_ParallelMap`` (a mixin: the bookkeeping is the map's)."""

    _who: str
    _ordered: bool
    _batch_size: int
    _num_workers: int
    _timeout: float | None
    _restart: bool
    _restart_limit: int | None
    _skip_errors: bool
    _flushed: bool
    _pass_start: int
    _current: int
    _outstanding: int
    _restarts: int
    _deaths: list[str]
    _sent: list[dict[int, Any]]
    _load: list[int]
    _attempts: dict[int, int]
    _working_on: list[int | None]
    _track: bool
    _kind: str
    _batch_tasks: dict[int, Any]
    _skipped: set[int]
    _delivered: set[int]
    _results: dict[int, Any]
    _errors: Any
    _pick_worker: Any
    _capacity: Any
    _advance_frontier: Any

    @property
    def _report_started(self) -> bool:
        """Whether workers say which datapoint they begin (to blame a death on it exactly)."""
        return self._track and self._kind == "process"

    def _on_death(self, pool: Any, w: int, exitcode: int | None) -> None:
        err = pool.died_error(w, exitcode)
        on = self._working_on[w]  # the datapoint it said it was mapping
        if on is not None and on not in self._sent[w]:
            on = None  # done with it: it died between two
        self._working_on[w] = None
        if self._timeout is not None and exitcode == -TIMEOUT_SIGNAL and self._sent[w]:
            # The worker held these (results it had not sent yet included): it was stuck on
            # the one it reported, else on one of them.
            held = [on] if on is not None else sorted(self._sent[w])
            first, last = held[0] - self._pass_start, held[-1] - self._pass_start
            which = (
                f"datapoint #{first}"
                if len(held) == 1
                else f"one of the {len(held)} datapoints it held, #{first} to #{last}"
            )
            err = WorkerDied(
                f"{self._who}: map_func ran past timeout={self._timeout:g}s on {which} of the "
                f"pass; {pool.describe(w)} was stopped",
                worker=err.worker,
                exitcode=exitcode,
            )
        if not self._restart:
            raise err
        self._deaths.append(str(err))
        limit = self._restart_limit
        if limit is not None and len(self._deaths) > limit:
            raise WorkerDied(
                f"{self._who}: {len(self._deaths)} worker deaths in this pass, more than "
                f"restart_workers={limit}: " + "; ".join(self._deaths),
                worker=err.worker,
                exitcode=exitcode,
            )
        lost = list(self._sent[w].items())  # in the order the worker was given them
        # Blamed for the death: the datapoint the worker said it was mapping (process workers
        # report each one as they begin it; one that died between two blames none), else
        # (Ray actors) every datapoint it held.
        if self._report_started:
            blamed = [] if on is None else [on]
        else:
            blamed = [idx for idx, _ in lost]
        poisoned = []
        for idx in blamed:
            self._attempts[idx] = self._attempts.get(idx, 0) + 1
            if self._attempts[idx] >= MAX_ATTEMPTS:
                if not self._skip_errors or (self._batch_size and self._ordered):
                    raise WorkerDied(
                        f"{err} -- workers died {MAX_ATTEMPTS} times while datapoint "
                        f"#{idx - self._pass_start} was in flight; giving up",
                        worker=err.worker,
                        exitcode=exitcode,
                    )
                poisoned.append(idx)
        if poisoned:  # on_error="skip": a datapoint that kills its workers is skipped, counted
            # Without a report, the first one given to the worker is the likely culprit (it maps
            # in order); the others rode along: sent again (one more death brings them back).
            culprit = poisoned[0]
            for idx in poisoned[1:]:
                self._attempts[idx] = MAX_ATTEMPTS - 1
            lost = [(idx, dp) for idx, dp in lost if idx != culprit]
            self._skip_poisoned([culprit], str(err))
        lost.sort()
        self._sent[w] = {}
        self._load[w] = 0
        pool.restart(w)
        self._restarts += 1
        stale = [idx for idx, _ in lost if idx < self._pass_start]
        self._outstanding -= len(stale)  # an abandoned pass needs them no more
        lost = [(idx, dp) for idx, dp in lost if idx >= self._pass_start]
        if self._batch_size and self._ordered:
            lost_ids = {idx for idx, _ in lost}
            for _, task in sorted(self._batch_tasks.items()):
                if task[2] in lost_ids:
                    v = self._pick_worker()
                    pool.send(v, task)
                    self._load[v] += len(task[3])
                    self._sent[v].update(zip(range(task[2], task[2] + len(task[3])), task[3]))
            return
        share = max(1, self._capacity() // self._num_workers)
        for start in range(0, len(lost), share):
            part = lost[start : start + share]
            v = self._pick_worker()
            pool.send(v, (_T_AT, [idx for idx, _ in part], [dp for _, dp in part]))
            self._load[v] += len(part)
            self._sent[v].update(part)
            if self._flushed:
                pool.send(v, (_T_FLUSH,))

    def _skip_poisoned(self, idxs: list[int], death: str) -> None:
        """Count datapoints on which workers died too often as skipped: done, with no result."""
        for idx in idxs:
            self._skipped.add(idx)
            where = f"datapoint #{idx - self._pass_start} of the pass"
            self._errors.skip(where, f"workers died {MAX_ATTEMPTS} times on it; the last: {death}")
            self._outstanding -= 1
            if idx >= self._pass_start:
                self._current -= 1
            if self._ordered:
                self._results[idx] = None  # _ordered_ready steps over it
            else:
                self._delivered.add(idx)
        self._advance_frontier()

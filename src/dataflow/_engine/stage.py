"""What every parallel flow shares: argument checks, seeds, picklability, the pool's lifetime.

A parallel flow (runner or map) owns one pool of workers. It prepares the pool's job in
``reset_state`` (under spawn/forkserver the job is pickled right there, so an unpicklable dataflow
or function fails early with an error naming it), starts the workers, and keeps them across passes.
If a pass ends with an exception (a worker error or death, Ctrl-C), the pool is torn down and the
next pass starts a fresh one; ``close()``, garbage collection and interpreter exit stop it too.
"""

from __future__ import annotations

import numbers
import os
from typing import Any

import numpy as np

from .._checks import check_flag
from ..errors import DataFlowArgumentError
from . import procs, seeding
from .workers import ProcessPool, ThreadPool

__all__ = ["check_count", "check_flag", "check_seed", "PoolOwner", "reposition"]


def reposition(root: Any, name: str) -> None:
    """Rename the pipeline positions of ``root`` and its upstream flows from ``name`` down.

    A stage with its own seed runs its copies under fixed positions, so that the streams of the
    flows inside depend on the seed and their place below the stage only.
    """
    from ..base import upstream_flows

    root._df_position = name
    stack = [root]
    while stack:
        flow = stack.pop()
        for attr, child in upstream_flows(flow):
            child._df_position = f"{flow._df_position}.{attr}"
            stack.append(child)


def check_count(value: object, who: str, arg: str, minimum: int = 1) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise DataFlowArgumentError(
            f"{who}: {arg} must be an int >= {minimum}, got {type(value).__name__} {value!r}"
        )
    if value < minimum:
        raise DataFlowArgumentError(f"{who}: {arg} must be an int >= {minimum}, got {value}")
    return int(value)


def check_seed(value: object, who: str) -> int | None:
    return seeding._check_seed(value, f"{who}: seed")


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)


class PoolOwner:
    """Mixin for a DataFlow that owns a worker pool (``self._pool``).

    Subclasses call :meth:`_init_owner` in ``__init__`` and implement :meth:`_make_pool`.
    """

    _pool: Any = None
    _pool_fin: Any = None

    def _init_owner(self, who: str, seed: object, start_method: object, kind: str) -> None:
        self._who = who
        self._seed = check_seed(seed, who)
        self._kind = kind
        self._start_method = (
            procs.resolve_start_method(start_method, who)  # type: ignore[arg-type]
            if kind == "process"
            else None
        )
        if kind != "process" and start_method is not None:
            procs.resolve_start_method(start_method, who)  # type: ignore[arg-type]

    @property
    def start_method(self) -> str | None:
        """The start method of the worker processes (``None`` for threads)."""
        return self._start_method

    def _stage_seed(self) -> int | None:
        seed = self._seed if self._seed is not None else seeding.get_seed()
        return seeding.stage_seed(seed, self._position())

    def _position(self) -> str:
        """The key of this stage's streams: its pipeline position, or, when it was given its own
        ``seed``, a fixed name, so that its output does not depend on which pipelines were
        built before it in this process."""
        if self._seed is not None:
            return "seeded-stage"
        return str(self.__dict__.get("_df_position") or "?")

    def _payload(self, obj: Any, name: str) -> Any:
        """``obj`` as a worker receives it: itself under fork, its pickle otherwise."""
        if self._kind != "process" or self._start_method == "fork":
            return obj
        return procs.check_picklable(obj, name, self._who, self._start_method)  # type: ignore[arg-type]

    def _make_pool(self) -> ProcessPool | ThreadPool:
        raise NotImplementedError

    def _on_new_pool(self) -> None:
        """Reset per-pool consumer state (override)."""

    def _ensure_pool(self) -> Any:
        pool = self._pool
        if pool is not None and pool.owner_pid != os.getpid():
            pool = None  # inherited from the parent by fork: not ours to use (or to close)
        if pool is None or pool.closed:
            pool = self._make_pool()
            self._pool = pool
            self._on_new_pool()
            pool.start()
            self._pool_fin = self._register_cleanup(pool.close)  # type: ignore[attr-defined]
        return pool

    def _teardown(self) -> None:
        """Stop the pool now (after an error or Ctrl-C); the next pass starts a fresh one."""
        fin, self._pool_fin = self._pool_fin, None
        if fin is not None:
            fin()
        elif self._pool is not None:
            self._pool.close()

    def worker_pids(self) -> list[int | None]:
        """The process ids of the current worker processes (empty for threads or before start)."""
        pool = self._pool
        if pool is None or pool.closed or not hasattr(pool, "pids"):
            return []
        return pool.pids()

"""Process plumbing: start methods, death signals, signal masks, pickling checks, shutdown.

Everything here is about keeping worker processes tied to their consumer: a worker dies with its
parent (``prctl(PR_SET_PDEATHSIG, SIGKILL)`` on Linux, plus a parent-liveness check where it waits),
ignores Ctrl-C (only the consumer handles it), and is stopped with terminate-then-kill.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import io
import logging
import multiprocessing
import os
import pickle
import signal
import sys
import time
from collections.abc import Iterator
from typing import Any

from ..errors import DataFlowArgumentError

__all__ = [
    "START_METHODS",
    "resolve_start_method",
    "get_context",
    "set_death_signal",
    "steady_malloc",
    "sigint_blocked",
    "check_picklable",
    "stop_processes",
]

logger = logging.getLogger(__name__)

START_METHODS = ("fork", "forkserver", "spawn")
_PR_SET_PDEATHSIG = 1


def resolve_start_method(start_method: str | None, who: str) -> str:
    """The start method to use: the argument, else the platform's multiprocessing default.

    Asking does not fix multiprocessing's global default (a later ``set_start_method`` still
    works).
    """
    if start_method is None:
        method = multiprocessing.get_start_method(allow_none=True)
        return method or multiprocessing.get_all_start_methods()[0]
    if start_method not in START_METHODS:
        raise DataFlowArgumentError(
            f"{who}: start_method must be one of {', '.join(map(repr, START_METHODS))} or None, "
            f"got {start_method!r}"
        )
    if start_method not in multiprocessing.get_all_start_methods():
        raise DataFlowArgumentError(
            f"{who}: start_method {start_method!r} is not available on this platform "
            f"(available: {', '.join(multiprocessing.get_all_start_methods())})"
        )
    return start_method


def get_context(method: str) -> Any:
    return multiprocessing.get_context(method)


_libc: Any = None


def set_death_signal() -> bool:
    """Ask the kernel to SIGKILL this process when its parent exits (Linux). True if set."""
    global _libc
    if not sys.platform.startswith("linux"):
        return False
    try:
        if _libc is None:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    except (OSError, AttributeError):  # pragma: no cover - exotic libc
        return False


# glibc mallopt parameters
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# A worker's allocator settings (see steady_malloc): blocks up to 16 MiB come from the heap, and
# the heap keeps up to 64 MiB of free space at its top instead of returning it at once.
WORKER_MMAP_THRESHOLD = 16 << 20
WORKER_TRIM_THRESHOLD = 64 << 20
# Setting any of these (glibc's own variables) leaves the worker's allocator as the user set it.
_MALLOC_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")
MALLOC_OPT_OUT_ENV = "DATAFLOW_WORKER_MALLOC"  # "default": leave glibc's dynamic thresholds


def steady_malloc() -> bool:
    """In a worker process on glibc: fix malloc's mmap and trim thresholds. True if set.

    glibc moves its mmap threshold up each time a large mapped block is freed and trims the heap
    whenever more than twice that much is free at its top. A worker that decodes an image into
    a few hundred KB, crops it, hands it over and frees everything then gives its heap back to
    the kernel after nearly every datapoint, and the next one faults every page in again: 55
    page faults an image in W4, 13% of the throughput (docs/benchmarks.md, "Where we are behind").
    Fixed thresholds keep those buffers in the heap and reuse them. Only the worker processes
    this library starts are changed, never the user's own process; the user's MALLOC_*
    environment, or ``DATAFLOW_WORKER_MALLOC=default``, leaves them alone.
    """
    global _libc
    if not sys.platform.startswith("linux") or os.environ.get(MALLOC_OPT_OUT_ENV) == "default":
        return False
    if any(name in os.environ for name in _MALLOC_ENV):
        return False
    try:
        if _libc is None:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        if not hasattr(_libc, "gnu_get_libc_version"):  # musl and others: no such knobs
            return False
        ok = _libc.mallopt(_M_MMAP_THRESHOLD, WORKER_MMAP_THRESHOLD) == 1
        return _libc.mallopt(_M_TRIM_THRESHOLD, WORKER_TRIM_THRESHOLD) == 1 and ok
    except (OSError, AttributeError):  # pragma: no cover - exotic libc
        return False


@contextlib.contextmanager
def sigint_blocked() -> Iterator[None]:
    """Block SIGINT in the calling thread while starting workers.

    A forked or spawned child inherits the mask, so it cannot receive a Ctrl-C before it has
    installed ``SIG_IGN``; the parent gets any pending SIGINT as soon as the block ends.
    """
    if not hasattr(signal, "pthread_sigmask"):  # pragma: no cover - non-POSIX
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def worker_signals() -> None:
    """In a new worker: ignore Ctrl-C, die on SIGTERM, then unblock SIGINT."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def signal_name(exitcode: int | None) -> str:
    """'exit code 3' or 'signal SIGKILL (exit code -9)'."""
    if exitcode is None:
        return "an unknown exit status"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"signal {name} (exit code {exitcode})"
    return f"exit code {exitcode}"


# -- pickling checks -----------------------------------------------------------------------------


def _describe(obj: Any) -> str:
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    kind = type(obj).__name__
    if name and kind in ("function", "builtin_function_or_method", "method", "type"):
        module = getattr(obj, "__module__", "?")
        return f"{kind} {module}.{name}"
    return f"a {kind} object"


def _find_culprit(
    obj: Any, path: str, depth: int = 0, seen: set[int] | None = None
) -> tuple[str, Any]:
    """The attribute path of the innermost part of ``obj`` that does not pickle, and that part."""
    seen = set() if seen is None else seen
    if depth > 6 or id(obj) in seen:
        return path, obj
    seen.add(id(obj))
    children: list[tuple[str, Any]] = []
    if isinstance(obj, functools.partial):
        children = [(f"{path}.func", obj.func)]
        children += [(f"{path}.args[{i}]", v) for i, v in enumerate(obj.args)]
        children += [(f"{path}.keywords[{k!r}]", v) for k, v in obj.keywords.items()]
    elif isinstance(obj, dict):
        children = [(f"{path}[{k!r}]", v) for k, v in list(obj.items())[:200]]
    elif isinstance(obj, (list, tuple, set, frozenset)):
        children = [(f"{path}[{i}]", v) for i, v in enumerate(list(obj)[:200])]
    elif hasattr(obj, "__dict__") and not isinstance(obj, type):
        children = [(f"{path}.{k}", v) for k, v in vars(obj).items()]
    elif callable(obj) and getattr(obj, "__closure__", None):
        names = obj.__code__.co_freevars
        children = [
            (f"{path}<closure {n}>", c.cell_contents) for n, c in zip(names, obj.__closure__)
        ]
    for child_path, child in children:
        try:
            pickle.dumps(child, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:  # noqa: BLE001 - any pickling failure points at this child
            return _find_culprit(child, child_path, depth + 1, seen)
    return path, obj


def check_picklable(obj: Any, name: str, who: str, method: str) -> bytes:
    """Pickle ``obj`` (for a spawn/forkserver worker) or raise an error naming what failed.

    Returns the pickle. The error is a :class:`DataFlowArgumentError` naming the argument, the
    innermost path that does not pickle (``map_func``, ``ds.ds.func<closure f>``,
    ``map_func.cfg['a'][1]``, ``map_func.args[0]`` inside a ``functools.partial``...), the type
    of the object found there, and the original pickling error (chained).
    """
    try:
        return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as e:  # noqa: BLE001 - pickling raises many types
        path, culprit = _find_culprit(obj, name)
        raise DataFlowArgumentError(
            f"{who}: {path} ({_describe(culprit)}) cannot be pickled, but start_method={method!r} "
            f"sends it to each worker process by pickling: {type(e).__name__}: {e}. Define "
            "functions at module level (not lambdas or nested functions), or use "
            "start_method='fork'."
        ) from e


# -- stopping ------------------------------------------------------------------------------------


def stop_processes(procs: list[Any], grace: float = 1.0) -> None:
    """Terminate, wait ``grace`` seconds, then kill what is left; reap everything. Never hangs."""
    procs = [p for p in procs if p is not None]
    for p in procs:
        try:
            if p.exitcode is None:
                p.terminate()
        except (OSError, ValueError, AssertionError):
            pass
    deadline = time.monotonic() + grace
    for p in procs:
        try:
            p.join(max(0.0, deadline - time.monotonic()))
        except (ValueError, AssertionError):
            pass
    for p in procs:
        try:
            if p.exitcode is None:
                p.kill()
                p.join(2.0)
                if p.exitcode is None:  # pragma: no cover - uninterruptible sleep
                    logger.warning("worker process %s did not exit after SIGKILL", p.pid)
        except (OSError, ValueError, AssertionError):
            pass
    for p in procs:
        try:
            p.close()
        except (ValueError, AttributeError):
            pass


def flush_std_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError, io.UnsupportedOperation):
            pass

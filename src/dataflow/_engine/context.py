"""Which worker the current code runs in.

The engine sets the context when it starts a worker (a process or a thread); sources read it with
:func:`dataflow.get_worker_info` to shard themselves, and the seeding scheme reads it so that
workers never share a random stream.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

__all__ = ["WorkerInfo", "get_worker_info", "set_worker_info"]


@dataclass(frozen=True)
class WorkerInfo:
    """Describes the worker the calling code runs in.

    Attributes:
        id: the worker's index, ``0 <= id < num_workers``.
        num_workers: how many workers run copies of the same stage.
        seed: the pipeline seed given to the stage, or ``None``.
        kind: ``"process"`` or ``"thread"``.
    """

    id: int
    num_workers: int
    seed: int | None = None
    kind: str = "process"


class _ThreadInfo(threading.local):
    info: WorkerInfo | None = None  # a class default: reading it never raises


_process_info: WorkerInfo | None = None
_thread_info = _ThreadInfo()


def get_worker_info() -> WorkerInfo | None:
    """Return the :class:`WorkerInfo` of the calling worker, or ``None`` in the main process/thread.

    Like ``torch.utils.data.get_worker_info``: a source can call it in ``reset_state`` or
    ``__iter__`` to read only its share of the data (``items[info.id::info.num_workers]``).
    """
    info = _thread_info.info
    return info if info is not None else _process_info


def set_worker_info(info: WorkerInfo | None, *, thread: bool = False) -> None:
    """Set (or clear with ``None``) the worker context of this process, or of this thread only."""
    global _process_info
    if thread:
        _thread_info.info = info
    else:
        _process_info = info

"""Shared memory for the rings: one segment per worker, created by the consumer.

From ``os.memfd_create`` where it exists (Linux): an anonymous file passed to the worker as a file
descriptor, so nothing appears in ``/dev/shm`` and nothing can outlive the processes that map it,
even after a ``SIGKILL``. Elsewhere it falls back to ``multiprocessing.shared_memory`` with strict
unlinking (and no zero-copy reads).
"""

from __future__ import annotations

import mmap
import os
import sys
from typing import Any

from .wakeup import FdHandle, _close_fd

__all__ = ["SharedSegment"]

_HAVE_MEMFD = hasattr(os, "memfd_create") and sys.platform.startswith("linux")


class SharedSegment:
    """A block of shared memory created by the consumer and mapped by one worker.

    ``handle()`` returns what to put in the worker's ``Process`` arguments and
    :meth:`attach` maps it there. ``close()`` unmaps (and, for the named fallback, unlinks).
    The creator keeps the descriptor so that it can map the segment again (:meth:`remap`).
    """

    def __init__(self, size: int, *, _attach: Any = None) -> None:
        self.size = size
        self.fd = -1
        self._shm: Any = None
        self._mmap: mmap.mmap | None = None
        self._creator = _attach is None
        if _attach is None:
            if _HAVE_MEMFD:
                self.fd = os.memfd_create("dataflow-ring", os.MFD_CLOEXEC)
                try:
                    os.ftruncate(self.fd, size)
                    self._mmap = mmap.mmap(self.fd, size)
                except BaseException:
                    _close_fd(self.fd)
                    raise
            else:  # no memfd: a named segment, unlinked by close() (and the resource tracker)
                from multiprocessing import shared_memory

                self._shm = shared_memory.SharedMemory(create=True, size=size)
        elif isinstance(_attach, FdHandle):
            self.fd = _attach.fd
            self._mmap = mmap.mmap(self.fd, size)
            # The mapping keeps the memory alive; the descriptor itself is no longer needed.
            _close_fd(self.fd)
            self.fd = -1
        else:
            from multiprocessing import shared_memory

            # Attaching registers the name with the resource tracker again; the tracker is the
            # consumer's (shared by its workers), so that is a no-op, and the consumer's unlink
            # unregisters it once.
            self._shm = shared_memory.SharedMemory(name=_attach)
        self.buf = memoryview(self._mmap if self._mmap is not None else self._shm.buf)

    def handle(self) -> Any:
        """What a worker needs to map this segment (valid until :meth:`release_handle`)."""
        if self.fd >= 0:
            return FdHandle(self.fd)
        return self._shm.name

    def release_handle(self) -> None:
        """The named fallback: unlink the name (its creator does, when it closes)."""
        if self._shm is not None and self._creator:
            try:
                self._shm.unlink()
            except FileNotFoundError:
                pass

    @property
    def can_remap(self) -> bool:
        return self.fd >= 0

    def remap(self) -> memoryview:
        """Map the segment again at a new address; later reads use the new mapping.

        The old mapping stays alive as long as something (a leased array) still refers to it.
        """
        fresh = mmap.mmap(self.fd, self.size)
        # Drop the old mapping: the arrays that still use it keep it alive, and it is unmapped
        # (private copies included) when the last of them dies.
        self._mmap = fresh
        self.buf = memoryview(fresh)
        return self.buf

    @classmethod
    def attach(cls, handle: Any, size: int) -> SharedSegment:
        return cls(size, _attach=handle)

    def close(self) -> None:
        """Unmap and close. Mappings that arrays still use are unmapped when the arrays die."""
        self.release_handle()
        if self.fd >= 0:
            _close_fd(self.fd)
            self.fd = -1
        view, self.buf = self.buf, memoryview(b"")
        mapping, self._mmap = self._mmap, None
        try:
            view.release()
        except BufferError:  # arrays still use it: it goes when they do
            mapping = None
        if mapping is not None:
            try:
                mapping.close()
            except BufferError:  # pragma: no cover - leased arrays still alive
                pass
        if self._shm is not None:
            try:
                self._shm.close()
            except BufferError:  # pragma: no cover - a view is still alive
                pass
            self._shm = None

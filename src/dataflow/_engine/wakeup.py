"""How the consumer and a worker wake each other, and what their memory order needs.

A side that finds nothing to do sleeps in ``poll()`` on a pipe (:class:`Pipe`) and the other
side rings it (:func:`ring_bell`: one byte; :func:`drain` empties it on waking). The "waiting"
flag and the positions in a ring header form a Dekker pair, so each side issues a full barrier
(:func:`fence`) between its store and its load; :func:`order` orders the accesses around a
published position on weakly ordered CPUs. :class:`FdHandle` passes a descriptor (a pipe end, a
memfd) into a worker under every start method.
"""

from __future__ import annotations

import errno
import os
import platform
import select
import threading
from typing import Any

__all__ = [
    "FdHandle",
    "Pipe",
    "drain",
    "fence",
    "make_poller",
    "order",
    "ring_bell",
    "ORDERED_MEMORY",
]

# x86 keeps each process's loads and stores in program order, except a store followed by a load
# (total store order): publishing a position after the data it covers needs no barrier there, and
# the Dekker pairs (flag, then position) need one full barrier. Weakly ordered CPUs (ARM) need a
# barrier around every publication too: there :func:`order` is two lock round trips (a release
# then an acquire, which ARMv8 never reorders), elsewhere it is a no-op.
ORDERED_MEMORY = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686", "x86")

_fence_lock = threading.Lock()

_SLEEP_S = 0.25  # bound on every sleep: a safety net, never the way news arrives


def fence() -> None:
    """A full memory barrier: a locked read-modify-write (the lock's fast path) orders this
    process's earlier stores before its later loads, which plain Python code cannot otherwise do."""
    _fence_lock.acquire()
    _fence_lock.release()


def _order_weak() -> None:
    _fence_lock.acquire()
    _fence_lock.release()
    _fence_lock.acquire()
    _fence_lock.release()


def _order_none() -> None:
    pass


# Orders the accesses before it (data written or read) before the ones after it (a position
# published, or data read after a position was read).
order = _order_none if ORDERED_MEMORY else _order_weak


# -- file descriptors that cross into a worker ----------------------------------------------------


class FdHandle:
    """A file descriptor to hand to a worker process in its ``Process`` arguments.

    Under fork the child inherits the descriptor and the object is not pickled. Under spawn and
    forkserver, pickling happens while ``multiprocessing`` starts the child; the descriptor is then
    passed with ``multiprocessing.reduction.DupFd``, which adds it to the descriptors the new
    process receives (no helper thread, no socket).
    """

    __slots__ = ("fd",)

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __reduce__(self):
        from multiprocessing import context, reduction

        if context.get_spawning_popen() is None:
            raise RuntimeError("FdHandle can be pickled only while starting a worker process")
        return (_rebuild_fd, (reduction.DupFd(self.fd),))

    def __repr__(self) -> str:
        return f"FdHandle({self.fd})"


def _rebuild_fd(dup: Any) -> FdHandle:
    return FdHandle(dup.detach())


class Pipe:
    """A one-way pipe used to wake a sleeping reader; the write end never blocks."""

    __slots__ = ("r", "w")

    def __init__(self) -> None:
        self.r, self.w = os.pipe()
        os.set_blocking(self.w, False)
        os.set_blocking(self.r, False)

    def close(self) -> None:
        for fd in (self.r, self.w):
            if fd >= 0:
                _close_fd(fd)
        self.r = self.w = -1


def ring_bell(fd: int) -> None:
    """Write one wake-up byte; a full pipe already holds wake-ups, so that is fine."""
    try:
        os.write(fd, b"!")
    except BlockingIOError:
        pass
    except OSError as e:  # the reader is gone (EPIPE) or the fd was closed while shutting down
        if e.errno not in (errno.EPIPE, errno.EBADF):
            raise


def drain(fd: int) -> None:
    """Read every pending wake-up byte of a non-blocking pipe."""
    try:
        while len(os.read(fd, 65536)) == 65536:
            pass
    except BlockingIOError:
        pass
    except OSError as e:
        if e.errno != errno.EBADF:
            raise


def _close_fd(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def make_poller(fds: list[int]):
    """A reusable ``poll`` object watching ``fds`` for readability (or hang-up)."""
    p = select.poll()
    for fd in fds:
        p.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    return p

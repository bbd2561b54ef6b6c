"""The transport between a consumer and its worker processes: shared-memory rings.

Each direction between the consumer and one worker is a single-producer single-consumer byte ring
in shared memory. A message is one pickle (protocol 5) whose large buffers (numpy arrays) travel
out of band: the producer copies each array once into the ring. The consumer reads a message with
large buffers in place (its arrays are views of the ring, and the record is leased until they are
garbage collected; see :class:`Ring`) and copies smaller ones out. Small messages are written
whole; a message larger than half the ring is cut into fragments that stream through it (and are
reassembled by one copy), so any size passes through a ring of fixed size.

Shared memory comes from :mod:`.shm` (a memfd on Linux), the record layout of a message from
:mod:`.message`, the doorbells and memory barriers described below from :mod:`.wakeup`; this module
is the ring itself and its zero-copy reads.

Waking up: a reader that finds its ring empty raises a "waiting" flag in the ring header and
sleeps in ``poll()`` on a pipe (together with the workers' process sentinels, so that a death wakes
it too); a writer that publishes a message while the flag is up writes one byte to that pipe. The
flag and the positions form a Dekker pair, so each side issues a full memory barrier between its
store and its load (:func:`fence`). Every sleep also has a bounded timeout as a second line of
defence, so a lost wake-up could cost latency but never a hang. A consumer may also wait
*lazily* (flag value 2): it sleeps for a short, bounded time of its choosing and wants no wake-up
for data, only for news (an error, the end of a stream, a worker that has no more work or no
room); see ``workers._WaitPolicy``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import mmap
import os
import pickle
import threading
import weakref
from collections import deque
from typing import Any

import numpy as np

from .message import (
    _ALIGN,
    _FRAG_HEAD,
    _REC,
    _REC_FRAG,
    _REC_INLINE,
    _REC_MSG,
    _REC_WRAP,
    _align,
    _decode,
    _Encoded,
    _layout,
)
from .shm import _HAVE_MEMFD
from .wakeup import order

__all__ = ["Ring", "RingFull"]

logger = logging.getLogger(__name__)

HEADER_BYTES = 4096  # a page: ring data starts on a page boundary (see Ring.evacuate)
_PAGE = mmap.PAGESIZE
# Indices of the u64 slots of a ring header; each side's slots share a 64-byte line.
_W_POS, _W_ITEMS = 0, 1  # producer: bytes written, items written
_R_POS, _R_ITEMS = 8, 9  # consumer: bytes read, items read
_C_WAIT = 16  # consumer raised: 1 it sleeps until data arrives, 2 it sleeps lazily (see above)
_P_WAIT = 24  # producer raised: it sleeps until space frees up
_CLOSED = 32  # consumer raised: it will never read again (the producer should stop)
_P_NEED = 25  # producer: the bytes it waits for (with the skip to the ring's start)
_P_HOLDS = 26  # producer: it holds datapoints not yet written (a transit batch being filled)
_JUMP_BACK_BYTES = 1 << 20  # an empty ring restarts at offset 0 past this, keeping pages warm


class RingFull(Exception):
    """Internal: a non-blocking write found no room."""


# -- zero-copy reads ---------------------------------------------------------------------------------

_ZERO_COPY_MIN = 256 << 10  # messages with at least this many buffer bytes are read in place
_MAP_FIXED = 0x10  # Linux
_libc: Any = None


def _map_private_copy(addr: int, length: int) -> None:
    """Replace the pages at ``[addr, addr + length)`` by private anonymous memory holding the
    same bytes (the arrays there keep their addresses; the shared pages are no longer used)."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        _libc.mmap.restype = ctypes.c_void_p
        _libc.mmap.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_long,
        ]
    saved = ctypes.create_string_buffer(length)
    ctypes.memmove(saved, addr, length)
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_FIXED
    got = _libc.mmap(addr, length, mmap.PROT_READ | mmap.PROT_WRITE, flags, -1, 0)
    if got != addr:  # pragma: no cover - the kernel refused: nothing was replaced
        raise OSError(ctypes.get_errno(), "mmap(MAP_FIXED) failed while evacuating leased arrays")
    ctypes.memmove(addr, saved, length)


ZERO_COPY_SUPPORTED = _HAVE_MEMFD and hasattr(mmap, "MAP_ANONYMOUS")

# Rings read in place in this process. Before this process forks, their leased records are made
# private: a child gets copy-on-write copies of the caller's arrays, as fork promises, instead of
# views of shared pages that the writer reuses once the parent lets go of them.
_reading_rings: weakref.WeakSet = weakref.WeakSet()


def _evacuate_before_fork() -> None:
    for ring in list(_reading_rings):
        try:
            ring.evacuate()
        except Exception:  # noqa: BLE001 - never break a fork; the lease just stays shared
            logger.warning("could not make leased arrays private before fork", exc_info=True)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_evacuate_before_fork)


class Ring:
    """One direction of a channel: a single-producer single-consumer message ring.

    The same object type serves both ends; a process uses only the producer methods
    (:meth:`try_write`, :meth:`reader_waiting`...) or only the consumer ones (:meth:`read`,
    :meth:`set_waiting`...). ``item_cap`` bounds the items that may sit unread in the
    ring, on top of the byte capacity: each message counts the ``n_items`` it was encoded with (1
    by default), whether written whole or in fragments; an empty ring takes one message whatever
    its count.

    Zero-copy reads (consumer, ``remap`` given): a message with large buffers is decoded with its
    arrays *in* the ring. Its record is leased: the writer may not reuse it until every array
    made from it is garbage collected (a ``weakref.finalize`` on the lease array, which numpy keeps
    as the base of all of them). If leases held for long would stall the writer, the reader
    evacuates them (:meth:`evacuate`): the leased pages become private copies at the same
    addresses, and the ring is read through a fresh mapping from then on.
    """

    def __init__(
        self, buf: memoryview, item_cap: int = 1 << 62, remap: Any = None, offset: int = 0
    ) -> None:
        self._buf = buf
        self._buf_offset = offset  # where ``buf`` starts in the segment (for a remap)
        self.hdr = buf[:HEADER_BYTES].cast("Q")
        self.data = buf[HEADER_BYTES:]
        self.cap = (len(self.data) // _ALIGN) * _ALIGN
        self.max_record = self.cap // 2
        self.frag_size = max(_ALIGN, (self.cap // 4) // _ALIGN * _ALIGN) - _FRAG_HEAD.size
        self.item_cap = item_cap
        # Each side caches its own position (it is the only writer of it).
        self._wpos = self.hdr[_W_POS]
        self._witems = self.hdr[_W_ITEMS]
        self._rpos = self.hdr[_R_POS]
        self._ritems = self.hdr[_R_ITEMS]
        self._partial: np.ndarray | None = None  # a fragmented message being reassembled
        self._partial_fill = 0
        self._pending_frags: Any = None  # producer: fragments not written yet
        self._remap = remap if ZERO_COPY_SUPPORTED else None
        self._leases: deque[tuple[int, int, int]] = deque()  # (start, end, id), ring order
        self._released: deque[int] = deque()  # ids of dead leases (appended from any thread)
        self._dead: set[int] = set()
        self._next_lease = 0
        self._lease_floor = 0  # ids below were evacuated
        self._lock = threading.Lock()
        if self._remap is not None:
            _reading_rings.add(self)

    @staticmethod
    def bytes_needed(capacity: int) -> int:
        return HEADER_BYTES + (capacity + _PAGE - 1) // _PAGE * _PAGE

    def release(self) -> None:
        """Stop using the ring (its writer is gone). Arrays read in place stay valid."""
        self._remap = None  # nothing will overwrite them any more: no evacuation needed
        _reading_rings.discard(self)
        for view in (self.hdr, self.data, self._buf):
            try:
                view.release()
            except BufferError:  # leased arrays still use the mapping; it goes with them
                pass

    # -- producer ----------------------------------------------------------------------------
    def _room(self, size: int, n_items: int) -> int:
        """Bytes to skip before writing a record of ``size`` (-1: no room now)."""
        rpos = self.hdr[_R_POS]
        used = self._wpos - rpos
        off = self._wpos % self.cap
        skip = 0
        if off + size > self.cap:
            skip = self.cap - off
        elif used == 0 and off > _JUMP_BACK_BYTES and off >= size:
            # The ring is empty: go back to its (warm) start, but only where the record fits
            # there (skip + size <= cap). Without the size check an empty ring refused, forever,
            # a record larger than the offset, and a worker starved for a task it never got.
            skip = self.cap - off
        if self.cap - used < skip + size:
            self.hdr[_P_NEED] = skip + size
            return -1
        if n_items and self._witems != self.hdr[_R_ITEMS]:
            if self._witems - self.hdr[_R_ITEMS] + n_items > self.item_cap:
                self.hdr[_P_NEED] = 0
                return -1
        return skip

    def _publish(self) -> None:
        order()
        self.hdr[_W_ITEMS] = self._witems
        self.hdr[_W_POS] = self._wpos

    def _put_record(self, skip: int, size: int) -> int:
        if skip:
            _REC.pack_into(self.data, self._wpos % self.cap, skip, _REC_WRAP, 0, 0)
            self._wpos += skip
        return self._wpos % self.cap

    def try_write(self, msg: _Encoded) -> bool:
        """Write a whole message if it fits now; False if the ring has no room (nothing written).

        Messages larger than :attr:`max_record` must go through :meth:`start_fragments`.
        """
        skip = self._room(msg.size, msg.n_items)
        if skip < 0:
            return False
        off = self._put_record(skip, msg.size)
        msg.write_into(self.data, off)
        self._wpos += msg.size
        self._witems += msg.n_items
        self._publish()
        return True

    def start_fragments(self, msg: _Encoded) -> None:
        """Queue ``msg`` to be written in fragments (:meth:`try_write_fragments`).

        The message counts its ``n_items`` against ``item_cap`` from its first fragment on: it
        starts only when the whole message fits under the cap.
        """
        self._pending_frags = (msg.size, msg.n_items, msg.chunks(self.frag_size), [None, False])

    def _fragment_room(self, chunk_bytes: int) -> int:
        _, n_items, _, held = self._pending_frags
        return self._room(_align(_FRAG_HEAD.size + chunk_bytes), 0 if held[1] else n_items)

    def next_fragment_fits(self) -> bool:
        """Producer side: could :meth:`try_write_fragments` make progress now?"""
        chunk = self._pending_frags[3][0]
        return self._fragment_room(self.frag_size if chunk is None else chunk.nbytes) >= 0

    def try_write_fragments(self) -> bool:
        """Write as many pending fragments as fit; True when the message is fully written."""
        total, n_items, chunks, held = self._pending_frags
        wrote = False
        while True:
            chunk = held[0]
            if chunk is None:
                chunk = next(chunks, None)
                if chunk is None:
                    self._pending_frags = None
                    return True
                held[0] = chunk
            size = _align(_FRAG_HEAD.size + chunk.nbytes)
            skip = self._fragment_room(chunk.nbytes)
            if skip < 0:
                if wrote:
                    self._publish()
                return False
            off = self._put_record(skip, size)
            peek = next(chunks, None)
            last = peek is None
            _FRAG_HEAD.pack_into(self.data, off, size, _REC_FRAG, int(last), total, chunk.nbytes)
            start = off + _FRAG_HEAD.size
            self.data[start : start + chunk.nbytes] = chunk
            self._wpos += size
            held[0] = peek
            held[1] = True
            if last:
                self._witems += n_items
                self._publish()
                self._pending_frags = None
                return True
            wrote = True
            self._publish()

    def reader_waiting(self) -> bool:
        return bool(self.hdr[_C_WAIT])

    def reader_closed(self) -> bool:
        return bool(self.hdr[_CLOSED])

    def set_holding(self, flag: bool) -> None:
        self.hdr[_P_HOLDS] = int(flag)

    def writer_holds_items(self) -> bool:
        return bool(self.hdr[_P_HOLDS])

    def set_writer_waiting(self, flag: bool) -> None:
        self.hdr[_P_WAIT] = int(flag)

    def unread_items(self) -> int:
        return self._witems - self.hdr[_R_ITEMS]

    def is_drained(self) -> bool:
        """Producer side: has the reader consumed everything written so far?"""
        return self.hdr[_R_POS] == self._wpos

    # -- consumer ----------------------------------------------------------------------------
    def has_data(self) -> bool:
        return self.hdr[_W_POS] != self._rpos

    def read(self) -> tuple[bool, Any]:
        """Read the next message: ``(True, obj)``, or ``(False, None)`` if none is complete."""
        if self._remap is None:
            return self._read()
        with self._lock:  # an evacuation before a fork may come from another thread
            return self._read()

    def _read(self) -> tuple[bool, Any]:
        hdr = self.hdr
        data = self.data
        cap = self.cap
        while True:
            wpos = hdr[_W_POS]
            if wpos == self._rpos:
                return False, None
            order()
            off = self._rpos % cap
            length, kind, n, plen = _REC.unpack_from(data, off)
            if kind == _REC_INLINE:
                view = data[off + _REC.size : off + _REC.size + plen]
                try:
                    obj = pickle.loads(view)
                finally:
                    view.release()
                self._rpos += length
                self._ritems += n
                self._publish_read()
                return True, obj
            if kind == _REC_MSG:
                if self._released:
                    self.reclaim(publish=False)
                layout = _layout(data, off)
                lease = self._lease(off, length, layout[2]) if self._remap is not None else None
                obj = _decode(data, off, lease if lease is not None else "copy", layout)
                self._rpos += length
                self._ritems += n
                self._publish_read()
                return True, obj
            if kind == _REC_WRAP:
                self._rpos += length
                self._publish_read()
                continue
            if kind == _REC_FRAG:
                length, kind, last, total, n_bytes = _FRAG_HEAD.unpack_from(data, off)
                if self._partial is None:
                    self._partial = np.empty(total, dtype=np.uint8)
                    self._partial_fill = 0
                start = off + _FRAG_HEAD.size
                dst = self._partial.data.cast("B")
                dst[self._partial_fill : self._partial_fill + n_bytes] = data[
                    start : start + n_bytes
                ]
                self._partial_fill += n_bytes
                self._rpos += length
                self._publish_read()
                if last:
                    whole = self._partial
                    self._partial = None
                    mv = whole.data.cast("B")
                    _, kind, n, plen = _REC.unpack_from(mv, 0)
                    if kind == _REC_INLINE:
                        obj = pickle.loads(mv[_REC.size : _REC.size + plen])
                    else:
                        obj = _decode(mv, 0, "view")
                    self._ritems += n
                    hdr[_R_ITEMS] = self._ritems
                    return True, obj
                continue
            raise RuntimeError(f"corrupt ring record (kind {kind}, length {length})")

    def set_waiting(self, flag: bool) -> None:
        self.hdr[_C_WAIT] = int(flag)

    def _publish_read(self) -> None:
        order()
        hdr = self.hdr
        hdr[_R_ITEMS] = self._ritems
        hdr[_R_POS] = self._leases[0][0] if self._leases else self._rpos

    def _lease(self, off: int, length: int, bufs: list[tuple[int, int]]) -> np.ndarray | None:
        """A lease array over the record at ``off`` (buffers ``bufs``) if worth reading in place."""
        data = self.data
        if sum(n for _, n in bufs) < _ZERO_COPY_MIN:
            return None
        lease = np.frombuffer(data, dtype=np.uint8, count=length, offset=off)
        lease_id = self._next_lease
        self._next_lease += 1
        self._leases.append((self._rpos, self._rpos + length, lease_id))
        weakref.finalize(lease, self._released.append, lease_id).atexit = False
        return lease

    def has_leases(self) -> bool:
        return bool(self._leases)

    def reclaim(self, publish: bool = True) -> bool:
        """Free the records whose arrays died; True if the writer got room."""
        released = self._released
        if not released:
            return False
        dead = self._dead
        floor = self._lease_floor
        while released:
            lease_id = released.popleft()
            if lease_id >= floor:
                dead.add(lease_id)
        leases = self._leases
        freed = False
        while leases and leases[0][2] in dead:
            dead.discard(leases.popleft()[2])
            freed = True
        if freed and publish:
            self._publish_read()
        return freed

    def evacuate(self) -> None:
        """Give the writer back every leased record, at once, without touching the arrays.

        The pages under the leased records become private copies (same addresses, same bytes)
        and this ring is read through a fresh mapping from now on. Costs one copy of the leased
        bytes; happens only when the arrays are held long enough to stall the writer.
        """
        if not self._leases or self._remap is None:
            return
        with self._lock:
            self._evacuate()

    def _evacuate(self) -> None:
        if not self._leases:
            return
        view = np.frombuffer(self.data, dtype=np.uint8)
        base = view.__array_interface__["data"][0]
        del view
        pages = []
        for start, end, _ in self._leases:  # ring order is not address order (wrap-around)
            off = start % self.cap
            lo = (base + off) // _PAGE * _PAGE
            hi = (base + off + (end - start) + _PAGE - 1) // _PAGE * _PAGE
            pages.append((lo, hi))
        ranges: list[list[int]] = []
        for lo, hi in sorted(pages):
            if ranges and lo <= ranges[-1][1]:
                ranges[-1][1] = max(ranges[-1][1], hi)
            else:
                ranges.append([lo, hi])
        remap = self._remap
        if remap is None:  # released meanwhile: nothing reuses these records any more
            return
        fresh = remap()  # map first: if this fails, nothing has changed
        for lo, hi in ranges:
            _map_private_copy(lo, hi - lo)
        # From here on, this ring reads the fresh mapping; the old one lives while arrays do.
        offset = self._buf_offset
        self._buf = fresh[offset : offset + len(self._buf)]
        self.hdr = self._buf[:HEADER_BYTES].cast("Q")
        self.data = self._buf[HEADER_BYTES:]
        self._leases.clear()
        self._dead.clear()
        self._lease_floor = self._next_lease
        self._publish_read()

    def writer_waiting(self) -> bool:
        return bool(self.hdr[_P_WAIT])

    def writer_can_go(self) -> bool:
        """Consumer side: is it time to wake the waiting writer?

        When it has room for what it waits for and, unless arrays hold leases, the ring is at most
        half full: waking it only then, rather than after every read, lets it refill a good part
        of the ring per wake-up while the reader keeps reading what is left.
        """
        hdr = self.hdr
        free = self.cap - (hdr[_W_POS] - hdr[_R_POS])
        need = hdr[_P_NEED]
        return free >= (need if self._leases else max(need, self.cap // 2)) and (
            hdr[_W_ITEMS] - self._ritems <= self.item_cap // 2
        )

    def writer_stalled_by_leases(self) -> bool:
        """Consumer side: does the writer wait for room that only leased arrays hold?"""
        if not self._leases or not self.hdr[_P_WAIT]:
            return False
        hdr = self.hdr
        return self.cap - (hdr[_W_POS] - hdr[_R_POS]) < hdr[_P_NEED]

    def close_reader(self) -> None:
        self.hdr[_CLOSED] = 1

"""How a message is laid out as a ring record: pickle protocol 5 with large buffers out of band.

:func:`encode` pickles a message once and records where each out-of-band buffer (a numpy array of
at least a few KB) goes, so that the producer copies it once, straight into the ring; the consumer
decodes (:func:`_decode`) with the buffers copied out, or as views of the ring (zero copy). Arrays
travel as (buffer, dtype string, shape) rather than with numpy's own reduction, whose pickled
dtype object costs more to rebuild than the rest of a small message together.
"""

from __future__ import annotations

import copyreg
import io
import pickle
import struct
from typing import Any

import numpy as np

# Record header: length, kind, n_items (a fragment: its "last" flag), pickle length (inline only).
_REC = struct.Struct("<QIII")
_REC_WRAP, _REC_MSG, _REC_FRAG, _REC_INLINE = 1, 2, 3, 4  # INLINE: a pickle, no buffers
_FRAG_HEAD = struct.Struct("<QIIQQ")  # record length, kind, last flag, message length, chunk length
_MSG_META = struct.Struct("<QI")  # pickle length, number of out-of-band buffers
_ALIGN = 64
_OOB_MIN_BYTES = 4096  # smaller buffers travel inside the pickle


def _align(n: int) -> int:
    return (n + _ALIGN - 1) & ~(_ALIGN - 1)


def _rebuild_array(buf: Any, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    """Unpickle an array that :func:`_reduce_array` encoded (its buffer out of band or inline)."""
    return np.frombuffer(buf, dtype=dtype).reshape(shape)


_PLAIN_KINDS = frozenset("biufcSU")  # named completely by ``.str``, and exportable as buffers


def _reduce_array(arr: np.ndarray) -> Any:
    """Pickle a C-contiguous array of a plain dtype as (buffer, dtype string, shape).

    Other arrays (object or structured dtypes, dtypes with metadata, non-C-contiguous layouts)
    keep numpy's own reduction. Subclasses of ndarray never get here (the table is by exact type).
    """
    dt = arr.dtype
    if arr.flags.c_contiguous and dt.kind in _PLAIN_KINDS and dt.metadata is None:
        return _rebuild_array, (pickle.PickleBuffer(arr), dt.str, arr.shape)  # type: ignore[arg-type]
    return arr.__reduce_ex__(5)


class _Pickler(pickle.Pickler):
    dispatch_table = {**copyreg.dispatch_table, np.ndarray: _reduce_array}


class _Encoded:
    """A message laid out for the ring.

    Layout (offsets from the record start): record header, meta (pickle length, buffer count),
    one u64 length per out-of-band buffer, the pickle, then each buffer at a 64-byte boundary.
    """

    __slots__ = ("data", "bufs", "offsets", "size", "n_items", "head_len")

    def __init__(self, obj: Any, n_items: int) -> None:
        bufs: list[memoryview] = []

        def out_of_band(pb: pickle.PickleBuffer) -> bool:
            raw = pb.raw()
            if raw.nbytes < _OOB_MIN_BYTES:
                return True  # in band
            bufs.append(raw)
            return False

        out = io.BytesIO()
        _Pickler(out, protocol=5, buffer_callback=out_of_band).dump(obj)
        self.data = out.getvalue()
        self.bufs = bufs
        self.n_items = n_items
        if not bufs:  # the common small message: header and pickle only
            self.head_len = _REC.size + len(self.data)
            self.offsets = []
            self.size = _align(self.head_len)
            return
        pos = _REC.size + _MSG_META.size + 8 * len(bufs) + len(self.data)
        self.head_len = pos
        offsets = []
        for b in bufs:
            pos = _align(pos)
            offsets.append(pos)
            pos += b.nbytes
        self.offsets = offsets
        self.size = _align(pos)

    def _write_head(self, dst: memoryview, base: int) -> None:
        if not self.bufs:
            _REC.pack_into(dst, base, self.size, _REC_INLINE, self.n_items, len(self.data))
            dst[base + _REC.size : base + self.head_len] = self.data
            return
        _REC.pack_into(dst, base, self.size, _REC_MSG, self.n_items, 0)
        p = base + _REC.size
        _MSG_META.pack_into(dst, p, len(self.data), len(self.bufs))
        p += _MSG_META.size
        if self.bufs:
            struct.pack_into(f"<{len(self.bufs)}Q", dst, p, *(b.nbytes for b in self.bufs))
            p += 8 * len(self.bufs)
        dst[p : p + len(self.data)] = self.data

    def write_into(self, dst: memoryview, base: int) -> None:
        """Write the whole record at ``dst[base:]``."""
        self._write_head(dst, base)
        for off, b in zip(self.offsets, self.bufs):
            dst[base + off : base + off + b.nbytes] = b

    def chunks(self, size: int):
        """The record as consecutive bytes-like chunks of at most ``size`` bytes (fragments)."""
        head = bytearray(self.offsets[0] if self.offsets else self.size)
        self._write_head(memoryview(head), 0)
        pieces: list[memoryview] = [memoryview(head)]
        end = len(head)
        for off, b in zip(self.offsets, self.bufs):
            if off > end:
                pieces.append(memoryview(bytes(off - end)))
            pieces.append(b)
            end = off + b.nbytes
        if self.size > end:
            pieces.append(memoryview(bytes(self.size - end)))
        for piece in pieces:
            for start in range(0, piece.nbytes, size):
                yield piece[start : start + size]


def _layout(src: memoryview, base: int) -> tuple[int, int, list[tuple[int, int]]]:
    """Where the parts of the message at ``src[base]`` are: pickle (start, length), buffers."""
    p = base + _REC.size
    plen, nbuf = _MSG_META.unpack_from(src, p)
    p += _MSG_META.size
    lens = struct.unpack_from(f"<{nbuf}Q", src, p) if nbuf else ()
    p += 8 * nbuf
    start = p
    p += plen
    bufs = []
    for n in lens:
        p = base + _align(p - base)
        bufs.append((p, n))
        p += n
    return start, plen, bufs


def _decode(src: memoryview, base: int, buffers_from: Any, layout: Any = None) -> Any:
    """Read the message whose record starts at ``src[base]``.

    ``buffers_from`` says where the out-of-band buffers come from: ``"copy"`` (fresh arrays, so
    that the ring can be reused at once), ``"view"`` (views of ``src``, a private buffer the arrays
    keep alive), or a lease array covering the record (views of it: zero copy). ``layout`` is
    :func:`_layout`'s answer if the caller has it already.
    """
    start, plen, bufs = layout if layout is not None else _layout(src, base)
    buffers: list[Any] = []
    for p, n in bufs:
        if isinstance(buffers_from, np.ndarray):
            buffers.append(buffers_from[p - base : p - base + n])
        elif buffers_from == "copy":
            out = np.empty(n, dtype=np.uint8)
            out.data.cast("B")[:] = src[p : p + n]
            buffers.append(out)
        else:
            buffers.append(src[p : p + n])
    data = src[start : start + plen]
    try:
        return pickle.loads(data, buffers=buffers)
    finally:
        data.release()


def encode(obj: Any, n_items: int = 1) -> _Encoded:
    """Lay out ``obj`` for a ring (pickle protocol 5, large buffers out of band)."""
    return _Encoded(obj, n_items)

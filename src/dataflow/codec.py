"""The safe datapoint codec: msgpack with an extension for numpy arrays.

Every file the library writes and every message :mod:`dataflow.remote` sends holds datapoints
encoded by :func:`dumps` and read back by :func:`loads`. Decoding never executes code: the format
has no way to name a class or a function, only data. Pickle is available for objects outside the
codec's types, but only when both sides ask for it (``allow_pickle=True``), as with ``numpy.load``.

What round-trips exactly (value and type):

- ``None``, ``bool``, ``float``, ``str``, ``bytes`` (``bytearray``/``memoryview`` come back as
  ``bytes``), ``complex``, and ``int`` of any size (those outside msgpack's 64-bit range travel in an
  extension).
- ``list``, ``tuple`` (kept a tuple) and ``dict`` (keys of any of these hashable types), nested.
  Subclasses come back as the base type (an ``OrderedDict`` as a ``dict``, an ``IntEnum`` as an
  ``int``).
- numpy arrays of every non-object dtype (bool, all ints and floats including float16, complex,
  fixed-width unicode ``U`` and bytes ``S``, datetime/timedelta, structured), any shape including
  0-d and empty, in any memory layout (a non-contiguous array is stored contiguously). Subclasses
  (``np.matrix``) come back as plain ``ndarray``.
- numpy scalars (``np.float32(1)``, ``np.int64(5)``, ``np.bool_``...), kept with their dtype.

Anything else raises :class:`~dataflow.errors.DatapointError` naming the type, unless
``allow_pickle=True``, in which case it is pickled.

Array data travels out of band: a message with arrays is the msgpack body followed by the raw array
bytes, each aligned, so :func:`loads` can return arrays that *view* the message buffer instead of
copying it (``copy=False``, the default). Such arrays are read-only when the buffer is (``bytes``)
and keep it alive; pass ``copy=True`` for writable arrays that own their memory.

A message that is not a valid encoding (truncated, corrupted, from another program) raises
:class:`~dataflow.errors.FormatError`, never another exception. A value that is well formed but
changed (a flipped bit inside a number) cannot be detected here: files that need that add their own
checksums.

The module also defines the small header that the library's files start with
(:func:`encode_header`, :func:`decode_header`): a magic number, the format version, the codec's
name, the kind of file and the number of datapoints.
"""

from __future__ import annotations

import pickle
import re
import struct
import threading
from collections.abc import Mapping
from typing import Any

import msgpack
import numpy as np

from ._version import __version__
from .errors import DatapointError, FormatError

__all__ = ["dumps", "loads", "CODEC_NAME"]

#: What :func:`loads` accepts: any object with the buffer protocol (``mmap``, a zmq frame's
#: ``.buffer``...), typed here by its common cases.
Buffer = bytes | bytearray | memoryview

#: The codec's name as written in file headers; a reader refuses a file written with another.
CODEC_NAME = "msgpack-numpy/1"

# Extension type codes (msgpack reserves negative codes; -1 is its timestamp).
_EXT_ARRAY = 1  # payload: msgpack [dtype, shape, offset, nbytes]; data out of band
_EXT_TUPLE = 2  # payload: the msgpack encoding of the items as a list
_EXT_SCALAR = 3  # payload: msgpack [dtype, raw bytes]
_EXT_BIGINT = 4  # payload: the int as signed little-endian bytes
_EXT_COMPLEX = 5  # payload: two little-endian doubles
_EXT_PICKLE = 6  # payload: a pickle; decoded only with allow_pickle=True
_EXT_SMALL_ARRAY = 7  # payload: uint16 length of the msgpack [dtype, shape] that follows, then data

# A message with out-of-band arrays starts with 0xC1, the one byte msgpack never uses, then the
# body's length; array data follows the body. A message without arrays is plain msgpack.
_OOB_MARK = 0xC1
_OOB_PREFIX = struct.Struct("<BI")
_ALIGN_SMALL = 16  # alignment of array data under _ALIGN_LARGE_FROM bytes
_ALIGN_LARGE = 64  # a cache line, for large arrays
_ALIGN_LARGE_FROM = 1024
_MAX_NESTED = 64  # tuples within tuples within ...: deeper than this is refused as malformed
# Arrays up to this size travel inside the msgpack body (copied on decode: cheaper than the
# bookkeeping of out-of-band data for a few bytes).
_INLINE_MAX = 1024
_SMALL_META = struct.Struct("<H")

_ZEROS = bytes(_ALIGN_LARGE)


def _dtype_to_wire(dtype: np.dtype) -> str | list:
    if dtype.fields is not None or dtype.subdtype is not None:
        return dtype.descr  # type: ignore[return-value]  # a list of tuples: msgpack lists
    return dtype.str


def _wire_to_tuple(value: Any) -> Any:
    # msgpack returns the descr's tuples as lists; numpy wants tuples for fields and shapes.
    if isinstance(value, list):
        return tuple(_wire_to_tuple(v) for v in value)
    return value


_DTYPE_STR = re.compile(r"[<>|][biufcSUVmM]\d+(\[\d*[a-zA-Z]+\])?\Z")
_DTYPES: dict[str, np.dtype] = {}  # dtype strings seen, parsed (cleared when it grows large)


def _dtype_from_wire(wire: Any) -> np.dtype:
    if type(wire) is str:
        dtype = _DTYPES.get(wire)
        if dtype is not None:
            return dtype
        if not _DTYPE_STR.match(wire):  # only the canonical form dumps writes (dtype.str)
            raise ValueError(f"bad dtype {wire!r}")
        dtype = np.dtype(wire)
        if dtype.hasobject:
            raise ValueError(f"object dtype {dtype} is not allowed")
        if len(_DTYPES) > 256:
            _DTYPES.clear()
        _DTYPES[wire] = dtype
        return dtype
    elif isinstance(wire, list):
        dtype = np.dtype([_wire_to_tuple(field) for field in wire])
    else:
        raise ValueError(f"bad dtype {wire!r}")
    if dtype.hasobject:
        raise ValueError(f"object dtype {dtype} is not allowed")
    return dtype


def _pickle(obj: Any) -> bytes:
    try:
        return pickle.dumps(obj, protocol=5)
    except Exception as e:
        raise DatapointError(f"cannot pickle {type(obj).__qualname__}: {e}") from e


class _Encoder:
    """Encoding state of one thread: a msgpack Packer per tuple-nesting depth (a Packer cannot be
    re-entered while it packs) and the arrays collected for the message being encoded."""

    def __init__(self) -> None:
        self.packers: list[msgpack.Packer] = []
        self.meta_packer = msgpack.Packer(use_bin_type=True)  # array/scalar descriptions
        self.allow_pickle = False
        self.blobs: list[tuple[int, Any]] | None = None  # (offset in data section, uint8 view)
        self.size = 0
        self.busy = False

    def packer(self, depth: int) -> msgpack.Packer:
        while len(self.packers) <= depth:
            level = len(self.packers)

            def default(obj: Any, level: int = level) -> Any:
                return self.default(obj, level)

            self.packers.append(
                msgpack.Packer(default=default, use_bin_type=True, strict_types=True)
            )
        return self.packers[depth]

    def add_array(self, arr: np.ndarray) -> msgpack.ExtType:
        if type(arr) is not np.ndarray:
            arr = np.asarray(arr)
        if arr.dtype.hasobject:
            if self.allow_pickle:
                return msgpack.ExtType(_EXT_PICKLE, _pickle(arr))
            raise DatapointError(
                f"cannot encode a numpy array of dtype {arr.dtype} (it holds Python objects) "
                "without pickle; pass allow_pickle=True if the reader will trust it"
            )
        if not arr.flags.c_contiguous:
            arr = np.ascontiguousarray(arr)
        nbytes = arr.nbytes
        if nbytes <= _INLINE_MAX:
            meta_bytes = self.meta_packer.pack([_dtype_to_wire(arr.dtype), list(arr.shape)])
            if len(meta_bytes) <= 0xFFFF:
                parts: list[Any] = [_SMALL_META.pack(len(meta_bytes)), meta_bytes]
                if nbytes:
                    parts.append(arr.reshape(-1).view(np.uint8))
                payload = b"".join(parts)
                return msgpack.ExtType(_EXT_SMALL_ARRAY, payload)
        offset = 0
        if nbytes:
            if self.blobs is None:
                self.blobs = []
            align = _ALIGN_LARGE if nbytes >= _ALIGN_LARGE_FROM else _ALIGN_SMALL
            offset = -self.size % align + self.size
            self.blobs.append((offset, arr.reshape(-1).view(np.uint8)))
            self.size = offset + nbytes
        meta = [_dtype_to_wire(arr.dtype), list(arr.shape), offset, nbytes]
        return msgpack.ExtType(_EXT_ARRAY, self.meta_packer.pack(meta))

    def default(self, obj: Any, depth: int) -> Any:
        kind = type(obj)
        if kind is tuple:
            if depth + 1 >= _MAX_NESTED:
                raise DatapointError(f"tuples nested deeper than {_MAX_NESTED} levels")
            return msgpack.ExtType(_EXT_TUPLE, self.packer(depth + 1).pack(list(obj)))
        if isinstance(obj, np.ndarray):
            return self.add_array(obj)
        if isinstance(obj, np.generic):
            if obj.dtype.hasobject:
                return self.fallback(obj)
            meta = [_dtype_to_wire(obj.dtype), obj.tobytes()]
            return msgpack.ExtType(_EXT_SCALAR, self.meta_packer.pack(meta))
        if isinstance(obj, int):
            value = int(obj)
            if -(2**63) <= value < 2**64:
                return value
            nbytes = (value.bit_length() + 8) // 8
            return msgpack.ExtType(_EXT_BIGINT, value.to_bytes(nbytes, "little", signed=True))
        if isinstance(obj, float):
            return float(obj)
        if isinstance(obj, complex):
            return msgpack.ExtType(_EXT_COMPLEX, struct.pack("<dd", obj.real, obj.imag))
        if isinstance(obj, str):
            return str(obj)
        if isinstance(obj, (bytes, bytearray, memoryview)):
            return bytes(obj)
        if isinstance(obj, Mapping):
            return dict(obj)
        if isinstance(obj, list):
            return list(obj)
        if isinstance(obj, tuple):  # a namedtuple or another tuple subclass
            return self.default(tuple(obj), depth)
        return self.fallback(obj)

    def fallback(self, obj: Any) -> Any:
        if self.allow_pickle:
            return msgpack.ExtType(_EXT_PICKLE, _pickle(obj))
        raise DatapointError(
            f"cannot encode an object of type {type(obj).__module__}.{type(obj).__qualname__}: "
            "the codec holds None, bool, int, float, complex, str, bytes, lists, tuples, dicts, "
            "numpy arrays and numpy scalars (pass allow_pickle=True to pickle other objects, "
            "only if the reader will trust them)"
        )


_local = threading.local()


def dumps(obj: Any, *, allow_pickle: bool = False) -> bytes:
    """Encode ``obj`` (a datapoint or any value of the codec's types) into bytes.

    Thread-safe. Arrays are copied once, into the result.

    Args:
        obj: the value to encode.
        allow_pickle: pickle objects the codec has no type for (and object arrays) instead of
            raising. The result then needs ``loads(..., allow_pickle=True)``.

    Raises:
        DatapointError: ``obj`` holds a value the codec cannot encode (the message names its type).
    """
    enc = _local.__dict__.get("encoder")
    if enc is None or enc.busy:  # first use in this thread, or a re-entrant call
        enc = _Encoder()
        if "encoder" not in _local.__dict__:
            _local.encoder = enc
    enc.busy = True
    enc.allow_pickle = allow_pickle
    try:
        body = enc.packer(0).pack(obj)
        blobs = enc.blobs
    except DatapointError:
        raise
    except (TypeError, ValueError, OverflowError, UnicodeError, RecursionError) as e:
        raise DatapointError(f"cannot encode {type(obj).__name__}: {e}") from e
    finally:
        enc.busy = False
        enc.blobs = None
        enc.size = 0
    if blobs is None:
        return body
    head = _OOB_PREFIX.pack(_OOB_MARK, len(body))
    start = len(head) + len(body)
    parts: list[Any] = [head, body, _ZEROS[: -start % _ALIGN_LARGE]]
    pos = 0
    for offset, data in blobs:
        if offset > pos:
            parts.append(_ZEROS[: offset - pos])
        parts.append(data)
        pos = offset + len(data)
    return b"".join(parts)


class _PickleRefused(Exception):
    pass


def _element_count(shape: Any) -> int:
    if type(shape) is not list or len(shape) > 64:
        raise ValueError("bad array shape")
    count = 1
    for dim in shape:
        if type(dim) is not int or dim < 0:
            raise ValueError("bad array shape")
        count *= dim
    return count


def _small_array(payload: bytes) -> np.ndarray:
    (meta_len,) = _SMALL_META.unpack_from(payload)
    start = _SMALL_META.size + meta_len
    wire, shape = _unpackb(payload[_SMALL_META.size : start], raw=False)
    dtype = _dtype_from_wire(wire)
    count = _element_count(shape)
    if count * dtype.itemsize != len(payload) - start:
        raise ValueError("array size does not match its shape")
    if not count or not dtype.itemsize:
        return np.empty(shape, dtype=dtype)
    # a copy: writable, aligned, and independent of the message
    return np.frombuffer(payload, dtype=dtype, count=count, offset=start).reshape(shape).copy()


class _Decoder:
    """Decodes one nesting level; ``child`` decodes the tuples inside it. Immutable once built, so
    the shared decoders of plain messages are thread-safe."""

    __slots__ = ("buf", "data_start", "allow_pickle", "copy", "depth", "_child", "hook")

    def __init__(
        self, buf: memoryview | None, data_start: int, allow_pickle: bool, copy: bool, depth: int
    ) -> None:
        self.buf = buf
        self.data_start = data_start
        self.allow_pickle = allow_pickle
        self.copy = copy
        self.depth = depth
        self._child: _Decoder | None = None
        self.hook = self.ext_hook

    def child(self) -> _Decoder:
        if self._child is None:
            if self.depth + 1 >= _MAX_NESTED:
                raise ValueError("tuples nested too deeply")
            self._child = _Decoder(
                self.buf, self.data_start, self.allow_pickle, self.copy, self.depth + 1
            )
        return self._child

    def unpack(self, data: Any) -> Any:
        return _unpackb(data, ext_hook=self.hook, raw=False, strict_map_key=False)

    def ext_hook(self, code: int, payload: bytes) -> Any:
        if code == _EXT_SMALL_ARRAY:
            return _small_array(payload)
        if code == _EXT_ARRAY:
            return self.array(payload)
        if code == _EXT_TUPLE:
            items = self.child().unpack(payload)
            if type(items) is not list:
                raise ValueError("a tuple extension that does not hold a list")
            return tuple(items)
        if code == _EXT_SCALAR:
            wire, raw = _unpackb(payload, raw=False)
            dtype = _dtype_from_wire(wire)
            if type(raw) is not bytes or len(raw) != dtype.itemsize or not dtype.itemsize:
                raise ValueError("bad numpy scalar")
            return np.frombuffer(raw, dtype=dtype)[0]
        if code == _EXT_BIGINT:
            if not payload:
                raise ValueError("empty int")
            return int.from_bytes(payload, "little", signed=True)
        if code == _EXT_COMPLEX:
            real, imag = struct.unpack("<dd", payload)
            return complex(real, imag)
        if code == _EXT_PICKLE:
            if not self.allow_pickle:
                raise _PickleRefused
            return pickle.loads(payload)
        raise ValueError(f"unknown extension type {code}")

    def array(self, payload: bytes) -> np.ndarray:
        wire, shape, offset, nbytes = _unpackb(payload, raw=False)
        dtype = _dtype_from_wire(wire)
        count = _element_count(shape)
        if type(offset) is not int or type(nbytes) is not int or offset < 0:
            raise ValueError("bad array location")
        if count * dtype.itemsize != nbytes:
            raise ValueError("array size does not match its shape")
        if nbytes == 0:
            return np.empty(shape, dtype=dtype)
        start = self.data_start + offset
        if self.buf is None or start + nbytes > len(self.buf):
            raise ValueError("array data outside the message")
        arr = np.frombuffer(self.buf, dtype=dtype, count=count, offset=start).reshape(shape)
        return arr.copy() if self.copy else arr


_unpackb = msgpack.unpackb
# Plain messages (no out-of-band arrays) need no per-message state: one shared decoder each.
_PLAIN_HOOKS = {flag: _Decoder(None, 0, flag, False, 0).hook for flag in (False, True)}


def _decode(data: Any, allow_pickle: bool, copy: bool) -> Any:
    if data[0] != _OOB_MARK:
        return _unpackb(data, ext_hook=_PLAIN_HOOKS[allow_pickle], raw=False, strict_map_key=False)
    buf = memoryview(data)
    if buf.ndim != 1 or buf.itemsize != 1:
        buf = buf.cast("B")
    if len(buf) < _OOB_PREFIX.size:
        raise ValueError("truncated header")
    _, body_len = _OOB_PREFIX.unpack_from(buf)
    body_end = _OOB_PREFIX.size + body_len
    if body_end > len(buf):
        raise ValueError("truncated body")
    data_start = body_end + (-body_end % _ALIGN_LARGE)
    dec = _Decoder(buf, data_start, allow_pickle, copy, 0)
    return dec.unpack(buf[_OOB_PREFIX.size : body_end])


def _format_error(e: Exception) -> FormatError:
    if isinstance(e, FormatError):
        return e
    if isinstance(e, _PickleRefused):
        return FormatError(
            "the data holds pickled objects; unpickling runs code chosen by whoever wrote it, so "
            "it is refused unless you pass allow_pickle=True (only for data you trust)"
        )
    return FormatError(f"not a valid {CODEC_NAME} encoding: {type(e).__name__}: {e}")


def loads(data: Buffer, *, allow_pickle: bool = False, copy: bool = False) -> Any:
    """Decode a value encoded by :func:`dumps`. Thread-safe.

    Args:
        data: the encoded bytes (any buffer: ``bytes``, ``bytearray``, ``memoryview``, ``mmap``...).
        allow_pickle: accept pickled objects. Unpickling runs code chosen by whoever wrote the
            data: only for data you trust.
        copy: ``False`` (default): arrays view ``data`` where its layout allows (no copy); they
            are read-only if ``data`` is, and keep it alive. ``True``: every array owns a writable
            copy, so ``data`` may be reused or freed afterwards.

    Raises:
        FormatError: ``data`` is not a valid encoding (truncated, corrupted, another format), or it
            holds pickled objects and ``allow_pickle`` is False.
    """
    try:
        if data[0] != _OOB_MARK and not allow_pickle:  # the common case, inlined
            return _unpackb(data, ext_hook=_PLAIN_HOOKS[False], raw=False, strict_map_key=False)
        return _decode(data, bool(allow_pickle), copy)
    except Exception as e:  # anything the parser raises on malformed input
        raise _format_error(e) from (None if isinstance(e, _PickleRefused) else e)


def decoder(*, allow_pickle: bool = False, copy: bool = False) -> Any:
    """A one-argument function equivalent to ``loads(data, allow_pickle=..., copy=...)``, for
    readers that decode many messages (it saves the keyword handling per call)."""
    allow = bool(allow_pickle)
    hook = _PLAIN_HOOKS[allow]

    def decode(data: Buffer) -> Any:
        try:
            if data[0] != _OOB_MARK:
                return _unpackb(data, ext_hook=hook, raw=False, strict_map_key=False)
            return _decode(data, allow, copy)
        except Exception as e:
            raise _format_error(e) from (None if isinstance(e, _PickleRefused) else e)

    return decode


# -- file headers -----------------------------------------------------------------------------

#: Magic number at the start of every header: a non-ASCII byte, the name, and a CR LF that a
#: text-mode transfer would alter.
MAGIC = b"\x89DFLOW\r\n"
#: The version of the file layouts this release writes, and the newest it reads.
FORMAT_VERSION = 1
_COUNT = struct.Struct("<Q")
HEADER_FIXED_SIZE = len(MAGIC) + _COUNT.size
#: The count written while a file is incomplete (replaced when the write succeeds).
COUNT_UNKNOWN = 2**64 - 1


def encode_header(kind: str, count: int, **meta: Any) -> bytes:
    """The header of a file of ``kind`` (``"lmdb"``, ``"tfrecord"``...) holding ``count`` datapoints.

    Layout: :data:`MAGIC`, the count as a little-endian uint64 (at a fixed offset, so a writer may
    fill it in at the end), then a msgpack map with the format version, codec, kind and ``meta``.
    """
    info = {
        "format_version": FORMAT_VERSION,
        "codec": CODEC_NAME,
        "kind": kind,
        "writer": f"pydataflow {__version__}",
        **meta,
    }
    return MAGIC + _COUNT.pack(count) + msgpack.packb(info, use_bin_type=True)


def decode_header(data: Buffer, kind: str, where: str) -> dict[str, Any]:
    """Check a header written by :func:`encode_header` and return its fields (with ``count``).

    Raises:
        FormatError: naming ``where`` (the file) if ``data`` is not such a header, is for another
            kind of file, another codec, a newer format version, or an incomplete write.
    """
    raw = bytes(data)
    if not raw.startswith(MAGIC):
        raise FormatError(f"{where}: not a file written by dataflow (no dataflow header)")
    if len(raw) < HEADER_FIXED_SIZE:
        raise FormatError(f"{where}: truncated dataflow header")
    (count,) = _COUNT.unpack_from(raw, len(MAGIC))
    try:
        info = msgpack.unpackb(raw[HEADER_FIXED_SIZE:], raw=False)
    except Exception as e:
        raise FormatError(f"{where}: corrupt dataflow header ({e})") from e
    if not isinstance(info, dict):
        raise FormatError(f"{where}: corrupt dataflow header")
    version = info.get("format_version")
    if type(version) is not int or version < 1:
        raise FormatError(f"{where}: corrupt dataflow header (format version {version!r})")
    if version > FORMAT_VERSION:
        raise FormatError(
            f"{where}: written in format version {version} by {info.get('writer', '?')}; this "
            f"release reads versions up to {FORMAT_VERSION}: upgrade pydataflow"
        )
    if info.get("kind") != kind:
        raise FormatError(f"{where}: holds a {info.get('kind')!r} layout, expected {kind!r}")
    if info.get("codec") != CODEC_NAME:
        raise FormatError(
            f"{where}: encoded with codec {info.get('codec')!r}, this release reads {CODEC_NAME!r}"
        )
    if count == COUNT_UNKNOWN:
        raise FormatError(f"{where}: an incomplete write (its writer did not finish)")
    info["count"] = count
    return info

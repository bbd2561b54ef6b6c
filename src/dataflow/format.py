"""Readers of on-disk formats: LMDB, HDF5, SVMlight (and Caffe's LMDB layout).

Every class here is a drop-in for the one of the same name in ``tensorpack.dataflow.format``.
Handles (LMDB environments, HDF5 files) are opened in ``reset_state``, i.e. in the process that
iterates: a flow built in the main process and run in forked workers never shares a handle across a
fork. The constructors open the file only briefly, to check it and learn its length, and close it.

Optional dependencies: LMDB readers need ``lmdb`` (``pip install 'pydataflow[lmdb]'``), HDF5Data
needs ``h5py`` (``[hdf5]``), SVMLightData needs scikit-learn. The classes import without them and
raise an ImportError saying what to install when used.

Errors: a file that is not in the expected format (garbage, truncated, written by another program
in a layout the reader does not know) raises :class:`~dataflow.errors.FormatError` naming the file.

Pitfall: LMDB keeps no checksums and trusts its own page structure: a damaged page (a bit flip on
disk) can make the lmdb library crash the process. Files written by our LMDBSerializer are sealed
(see :class:`~dataflow.serialize.LMDBSerializer`) and checked before the lmdb library reads them, so
damage raises FormatError. Other LMDB files (tensorpack's, Caffe's) have no such checksums: the
readers check what they can (that the file is an LMDB, not truncated, every record's encoding),
and the rest is trusted.
"""

from __future__ import annotations

import io
import logging
import os
import pickle
import threading
import zlib
from collections.abc import Callable, Iterator, Sequence
from itertools import islice
from typing import Any

import numpy as np

from . import codec
from ._lazy import require
from ._lmdb_seal import Seal, check_seal
from .base import DataFlow, RNGDataFlow
from .common import MapData
from .errors import DataFlowArgumentError, FormatError

__all__ = ["HDF5Data", "LMDBData", "LMDBDataDecoder", "CaffeLMDB", "SVMLightData"]

logger = logging.getLogger(__name__)

# -- LMDB -------------------------------------------------------------------------------------

#: The key under which LMDBSerializer stores its header (sorts after every digit key).
LMDB_HEADER_KEY = b"__dataflow__"
#: The key under which tensorpack's LMDBSerializer stores the pickled list of keys.
TENSORPACK_KEYS_KEY = b"__keys__"
_META_KEYS = frozenset((LMDB_HEADER_KEY, TENSORPACK_KEYS_KEY))
# Values at least this large (on average) are read through LMDB's zero-copy buffers: decoding
# copies them once out of the memory map, instead of twice (to bytes, then to the datapoint).
_BUFFERS_FROM = 16 * 1024


def lmdb_key(index: int) -> bytes:
    """The key of datapoint ``index`` in an LMDB written by LMDBSerializer (tensorpack's layout)."""
    return b"%08d" % index


def _check_path(path: object, who: str, arg: str) -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise DataFlowArgumentError(f"{who}: {arg} must be a path, got {type(path).__name__}")
    path = os.fspath(path)
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    return path


def _check_flag(value: object, who: str, arg: str) -> bool:
    if not isinstance(value, (bool, np.bool_, int)):
        raise DataFlowArgumentError(f"{who}: {arg} must be a bool, got {type(value).__name__}")
    return bool(value)


class _NoGlobalsUnpickler(pickle.Unpickler):
    """Unpickles plain data only: any reference to a class or function is refused, so no code runs.
    Enough for tensorpack's ``__keys__`` (a list of bytes)."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refusing a persistent id")


def _safe_key_list(blob: bytes) -> list[bytes] | None:
    """tensorpack's ``__keys__`` value (pickled, or msgpack with its msgpack serializer) as a list
    of bytes, decoded without running code; None if it is neither."""
    keys: Any = None
    try:
        keys = _NoGlobalsUnpickler(io.BytesIO(blob)).load()
    except Exception:
        try:
            keys = codec.loads(blob)
        except Exception:
            return None
    if isinstance(keys, (list, tuple)) and all(isinstance(k, bytes) for k in keys):
        return list(keys)
    return None


def _open_env(
    path: str, subdir: bool, data_file: str, who: str, readahead: bool
) -> tuple[Any, Seal | None]:
    """Open an LMDB environment read-only, without a lock file, once the file is checked.

    A file LMDBSerializer wrote is checked against its seal (see ``_lmdb_seal``) before the lmdb
    library reads any of it; any other LMDB only for truncation.
    """
    lmdb = require("lmdb", "lmdb", who=who)
    seal = check_seal(path, data_file)
    try:
        env = lmdb.open(
            path,
            subdir=subdir,
            readonly=True,
            lock=False,
            readahead=readahead,
            max_readers=1024,
            max_spare_txns=4,
        )
    except lmdb.Error as e:
        raise FormatError(f"{path}: not a readable LMDB database ({e})") from e
    try:
        last_page = env.info()["last_pgno"]
        page_size = env.stat()["psize"]
        size = os.path.getsize(data_file)
    except (lmdb.Error, OSError) as e:
        env.close()
        raise FormatError(f"{path}: not a readable LMDB database ({e})") from e
    if (last_page + 1) * page_size > size:
        env.close()
        # LMDB would read past the end of the file (and the process would die of SIGBUS).
        raise FormatError(
            f"{path}: truncated LMDB database ({size} bytes, {(last_page + 1) * page_size} "
            "expected)"
        )
    return env, seal


class _EnvRegistry:
    """The process's open LMDB environments, shared by every reader of the same file.

    LMDB (and py-lmdb, which enforces it) allows one open environment per file per process, so two
    readers of one file share it, reference-counted. A forked child inherits the parent's objects
    but must not use them: right after a fork the child closes the inherited ones (its own copies;
    the parent's stay open), so that readers reset in the child can open the file again.
    """

    def __init__(self) -> None:
        # Reentrant: a garbage-collected reader may release its env while this thread acquires.
        self.lock = threading.RLock()
        self.envs: dict[tuple[int, int], list[Any]] = {}  # file id -> [env, references]
        self.seals: dict[tuple[int, int], Seal | None] = {}  # file id -> its checked seal

    def after_fork_in_child(self) -> None:
        self.lock = threading.RLock()  # the parent's may have been held by another thread
        inherited, self.envs = self.envs, {}
        self.seals = {}
        for env, _ in inherited.values():
            try:
                env.close()
            except Exception as e:  # pragma: no cover - closing a copy should not fail
                logger.debug("closing an LMDB environment inherited by fork failed: %s", e)

    def acquire(self, f: _LMDBFile, readahead: bool) -> tuple[tuple[int, int], Any]:
        with self.lock:
            try:
                st = os.stat(f.data_file)
            except OSError as e:
                raise DataFlowArgumentError(f"{f.who}: cannot read {f.path!r}: {e}") from e
            key = (st.st_dev, st.st_ino)
            entry = self.envs.get(key)
            if entry is None:
                env, self.seals[key] = _open_env(f.path, f.subdir, f.data_file, f.who, readahead)
                entry = self.envs[key] = [env, 0]
            entry[1] += 1
            f.seal = self.seals[key]
            return key, entry[0]

    def release(self, key: tuple[int, int], env: Any) -> None:
        with self.lock:
            entry = self.envs.get(key)
            if entry is None or entry[0] is not env:
                return  # already gone (closed after a fork)
            entry[1] -= 1
            if entry[1] <= 0:
                del self.envs[key]
                self.seals.pop(key, None)
                env.close()


_ENVS = _EnvRegistry()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_ENVS.after_fork_in_child)


class _LMDBFile:
    """What a reader learns about an LMDB when it opens it: layout, record count, keys."""

    def __init__(self, path: str, who: str) -> None:
        self.path = path
        self.who = who
        self.subdir = os.path.isdir(path)
        self.data_file = os.path.join(path, "data.mdb") if self.subdir else path
        self.seal: Seal | None = None  # set by _ENVS.acquire
        if not os.path.exists(self.data_file):
            raise DataFlowArgumentError(
                f"{who}: {path!r} is not an LMDB database "
                + ("(a directory without data.mdb)" if self.subdir else "(no such file)")
            )
        key, env = _ENVS.acquire(self, readahead=False)
        try:
            with env.begin() as txn:
                self.entries = int(env.stat()["entries"])
                header = txn.get(LMDB_HEADER_KEY)
                keys_blob = txn.get(TENSORPACK_KEYS_KEY)
            self.header: dict[str, Any] | None = None
            self.tensorpack_keys: list[bytes] | None = None
            if header is not None:
                self.layout = "dataflow"
                self.header = codec.decode_header(header, "lmdb", path)
                self.count = int(self.header["count"])
                if self.entries != self.count + 1:
                    raise FormatError(
                        f"{path}: the header says {self.count} datapoints but the database "
                        f"holds {self.entries - 1} (an incomplete or altered file)"
                    )
                if self.seal is None or self.seal.count != self.count:
                    raise FormatError(
                        f"{path}: written by LMDBSerializer but "
                        + (
                            "its seal is missing (a truncated or altered file)"
                            if self.seal is None
                            else f"its seal covers {self.seal.count} records, not {self.count}"
                        )
                    )
            elif keys_blob is not None:
                self.layout = "tensorpack"
                self.count = self.entries - 1
                self.tensorpack_keys = _safe_key_list(keys_blob)
            else:
                self.layout = "plain"
                self.count = self.entries
            self.file_size = os.path.getsize(self.data_file)
        finally:
            _ENVS.release(key, env)


class _LMDBReader(RNGDataFlow):
    """Opening, key handling and iteration order shared by the LMDB readers."""

    def __init__(self, lmdb_path: str, shuffle: bool, keys: Sequence | str | None, who: str):
        require("lmdb", "lmdb", who=who.split(".")[0])
        self._lmdb_path = _check_path(lmdb_path, who, "lmdb_path")
        self._shuffle = _check_flag(shuffle, who, "shuffle")
        self._who = who
        self._file = _LMDBFile(self._lmdb_path, who)
        self._size = self._file.count
        self._check_layout()
        self.keys: list[bytes] | None = None
        if keys is not None:
            self.keys = self._user_keys(keys)
        elif self._shuffle:
            self.keys = self._find_keys()
        self._env: Any = None
        logger.info("Found %d entries in %s", self._size, self._lmdb_path)

    def _check_layout(self) -> None:
        """Refuse a database this reader cannot read (before any slow key search)."""

    def _user_keys(self, keys: Sequence | str) -> list[bytes]:
        if isinstance(keys, str):  # a format string such as '{:0>8d}'
            try:
                return [keys.format(i).encode("utf-8") for i in range(self._size)]
            except (ValueError, IndexError, KeyError) as e:
                raise DataFlowArgumentError(
                    f"{self._who}: keys {keys!r} is not a format string for an int index ({e})"
                ) from e
        if not isinstance(keys, Sequence) or isinstance(keys, (bytes, bytearray)):
            raise DataFlowArgumentError(
                f"{self._who}: keys must be a list of keys or a format string, "
                f"got {type(keys).__name__}"
            )
        out = []
        for i, k in enumerate(keys):
            if isinstance(k, str):
                k = k.encode("utf-8")
            if not isinstance(k, bytes):
                raise DataFlowArgumentError(
                    f"{self._who}: keys[{i}] must be str or bytes, got {type(k).__name__}"
                )
            out.append(k)
        return out

    def _find_keys(self) -> list[bytes] | None:
        f = self._file
        if f.layout == "dataflow":
            return None  # keys are lmdb_key(0..count-1): made on the fly
        if f.tensorpack_keys is not None:
            return f.tensorpack_keys
        logger.warning(
            "%s: %s has no list of keys; traversing the database to find them (slow for a large "
            "database: pass keys=... to avoid it)",
            self._who,
            self._lmdb_path,
        )
        key, env = _ENVS.acquire(f, readahead=False)
        try:
            with env.begin() as txn:
                return [
                    k for k in txn.cursor().iternext(keys=True, values=False) if k not in _META_KEYS
                ]
        finally:
            _ENVS.release(key, env)

    def __len__(self) -> int:
        if self._shuffle and self.keys is not None:
            return len(self.keys)
        return self._size

    def reset_state(self) -> None:
        super().reset_state()
        # (an env copied from a parent process by fork was closed in this process at the fork)
        key, self._env = _ENVS.acquire(self._file, readahead=not self._shuffle)
        self._register_cleanup(_ENVS.release, key, self._env)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_env"] = None  # a handle cannot cross a process boundary; reset_state reopens
        return state

    def _shuffled_keys(self) -> Iterator[bytes]:
        if self.keys is not None:
            keys = self.keys
            return map(keys.__getitem__, self.rng.permutation(len(keys)).tolist())
        return map(lmdb_key, self.rng.permutation(self._size).tolist())

    def _key_error(self, key: bytes) -> FormatError:
        return FormatError(f"{self._lmdb_path}: key {key!r} not found in the database")


class LMDBData(_LMDBReader):
    """Read an LMDB database and yield its ``[key, value]`` pairs, both ``bytes``.

    The raw bytes are rarely what a model wants: decode them with :class:`LMDBDataDecoder` or a
    (parallel) map, or read a file written by :class:`~dataflow.serialize.LMDBSerializer` with
    ``LMDBSerializer.load``, which decodes for you.

    Order: with ``shuffle=False``, the database's key order (a sequential read, the fast way; for
    LMDBSerializer's files it is the order the datapoints were written in up to 10^8 of them).
    With ``shuffle=True``, a new random permutation of the keys each pass (random reads; put the
    file on fast storage or in the page cache). Each key once per pass either way.

    ``len`` is the number of records (the bookkeeping keys ``__keys__`` and ``__dataflow__`` are
    neither counted nor yielded), or ``len(keys)`` when ``keys`` is given and ``shuffle`` is True.

    The environment is opened read-only without a lock file in ``reset_state``, so a flow built in
    the main process can run in forked or spawned workers. Every pass has its own read transaction:
    the flow is reentrant.
    """

    def __init__(
        self, lmdb_path: str, shuffle: bool = True, keys: Sequence | str | None = None
    ) -> None:
        """
        Args:
            lmdb_path: a directory holding ``data.mdb``, or the database file itself.
            shuffle: yield the records in a random order each pass.
            keys: the keys to read when ``shuffle`` is True: a list of ``bytes``/``str``, or a
                format string such as ``'{:0>8d}'`` formatted with the indices 0 .. len-1. If not
                given: the keys LMDBSerializer (ours or tensorpack's) recorded, or else every key
                found by traversing the database once (slow for large databases).
        """
        super().__init__(lmdb_path, shuffle, keys, "LMDBData")

    def __iter__(self) -> Iterator[list[bytes]]:
        with self._env.begin() as txn:
            if not self._shuffle:
                meta = _META_KEYS
                for k, v in txn.cursor():
                    if k[:2] == b"__" and k in meta:
                        continue
                    yield [k, v]
            else:
                get = txn.get
                for k in self._shuffled_keys():
                    v = get(k)
                    if v is None:
                        raise self._key_error(k)
                    yield [k, v]


class LMDBDatapoints(_LMDBReader):
    """The datapoints of an LMDB written by :class:`~dataflow.serialize.LMDBSerializer`, decoded
    (what ``LMDBSerializer.load`` returns).

    Yields the datapoints as they were saved (see :mod:`dataflow.codec` for what round-trips);
    arrays are writable and own their memory. Order as :class:`LMDBData`; ``len`` is the number of
    datapoints saved.

    A database written by tensorpack's LMDBSerializer holds pickles: it is read only with
    ``allow_pickle=True`` (unpickling runs code chosen by the file's author: only for files you
    trust); without it the constructor raises :class:`~dataflow.errors.FormatError` saying so.

    ``verify=True`` checks each record against the CRC-32 that the file's seal holds for it
    before decoding it (a damaged record raises FormatError naming its key).
    """

    def __init__(
        self,
        lmdb_path: str,
        shuffle: bool = True,
        *,
        allow_pickle: bool = False,
        verify: bool = False,
    ):
        self._allow_pickle = _check_flag(allow_pickle, "LMDBSerializer.load", "allow_pickle")
        self._verify = _check_flag(verify, "LMDBSerializer.load", "verify")
        super().__init__(lmdb_path, shuffle, None, "LMDBSerializer.load")
        if self._verify and self._file.layout != "dataflow":
            raise DataFlowArgumentError(
                f"LMDBSerializer.load: verify=True needs a file written by LMDBSerializer; "
                f"{self._lmdb_path} has no record checksums"
            )
        average = self._file.file_size / max(self._size, 1)
        self._buffers = average >= _BUFFERS_FROM

    def _check_layout(self) -> None:
        layout = self._file.layout
        if layout == "tensorpack" and not self._allow_pickle:
            raise FormatError(
                f"{self._lmdb_path}: written by tensorpack's LMDBSerializer, whose values are "
                "pickles; unpickling runs code chosen by the file's author, so it is refused. "
                "Pass allow_pickle=True if you trust this file (or convert it once with "
                "LMDBSerializer.save)."
            )
        if layout == "plain":
            raise FormatError(
                f"{self._lmdb_path}: not written by LMDBSerializer (no {LMDB_HEADER_KEY!r} "
                "header and no tensorpack __keys__); read its raw key/value pairs with LMDBData "
                "and decode them with LMDBDataDecoder"
            )

    def _decoder(self) -> Callable[[Any], Any]:
        if self._file.layout == "tensorpack":
            return pickle.loads
        # Buffers from a transaction are valid only while it lives: arrays must be copied out.
        return codec.decoder(allow_pickle=self._allow_pickle, copy=True)

    def __iter__(self) -> Iterator[Any]:
        decode = self._decoder()
        if self._verify:
            yield from self._iter_verified(decode)
            return
        with self._env.begin(buffers=self._buffers) as txn:
            if not self._shuffle:
                cursor = txn.cursor()
                values = islice(cursor.iternext(keys=False, values=True), self._size)
                try:
                    for v in values:
                        yield decode(v)
                except Exception as e:
                    raise self._record_error(bytes(cursor.key()), e) from e
            else:
                get = txn.get
                for k in self._shuffled_keys():
                    v = get(k)
                    if v is None:
                        raise self._key_error(k)
                    try:
                        dp = decode(v)
                    except Exception as e:
                        raise self._record_error(k, e) from e
                    yield dp

    def _iter_verified(self, decode: Callable[[Any], Any]) -> Iterator[Any]:
        seal = self._file.seal
        assert seal is not None  # a "dataflow" layout always has one (checked at open)
        crcs = seal.record_crcs()
        crc32 = zlib.crc32
        if self._shuffle:
            order: Iterator[int] = iter(self.rng.permutation(self._size).tolist())
        else:
            order = iter(range(self._size))
        with self._env.begin(buffers=self._buffers) as txn:
            get = txn.get
            for i in order:
                k = lmdb_key(i)
                v = get(k)
                if v is None:
                    raise self._key_error(k)
                if crc32(v) != crcs[i]:
                    raise FormatError(
                        f"{self._lmdb_path}: record {k!r} is damaged (its CRC-32 does not match "
                        "the file's seal)"
                    )
                try:
                    dp = decode(v)
                except Exception as e:
                    raise self._record_error(k, e) from e
                yield dp

    def _record_error(self, key: bytes, e: Exception) -> FormatError:
        return FormatError(f"{self._lmdb_path}: record {key!r} cannot be decoded: {e}")


class LMDBDataDecoder(MapData):
    """Read an LMDB with a decoder of your own: ``decoder(key, value) -> datapoint or None``.

    In: an :class:`LMDBData` (``[key, value]`` pairs). Out: what ``decoder`` returns; a ``None``
    drops the record (then ``len``, which is ``len(lmdb_data)``, is too large, as in tensorpack).
    To decode in parallel instead, put ``decoder`` in a parallel map after LMDBData.
    """

    def __init__(self, lmdb_data: DataFlow, decoder: Callable[[bytes, bytes], Any]) -> None:
        """
        Args:
            lmdb_data: an :class:`LMDBData` instance.
            decoder: ``(key, value) -> datapoint``, or ``None`` to drop the record.
        """
        if not callable(decoder):
            raise DataFlowArgumentError(
                f"LMDBDataDecoder: decoder must be callable, got {type(decoder).__name__}"
            )
        self.decoder = decoder

        def f(dp: list) -> Any:
            return decoder(dp[0], dp[1])

        super().__init__(lmdb_data, f)


# -- Caffe LMDB -------------------------------------------------------------------------------


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def parse_caffe_datum(buf: bytes) -> dict[str, Any]:
    """Parse a serialized ``caffe.Datum`` protobuf (no protobuf library needed).

    Returns a dict with ``channels``, ``height``, ``width``, ``label`` (ints), ``data`` (bytes),
    ``float_data`` (float32 array) and ``encoded`` (bool). Raises ValueError on a malformed message.
    """
    fields: dict[str, Any] = {
        "channels": 0,
        "height": 0,
        "width": 0,
        "label": 0,
        "data": b"",
        "encoded": False,
    }
    floats: list[np.ndarray] = []
    pos = 0
    n = len(buf)
    names = {1: "channels", 2: "height", 3: "width", 5: "label", 7: "encoded"}
    while pos < n:
        tag, pos = _read_varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _read_varint(buf, pos)
            if number in names:
                if number == 5 and value >= 2**63:  # label is an int32: negative as 10 bytes
                    value -= 2**64
                fields[names[number]] = bool(value) if number == 7 else value
        elif wire == 2:
            length, pos = _read_varint(buf, pos)
            if pos + length > n:
                raise ValueError("truncated field")
            chunk = buf[pos : pos + length]
            pos += length
            if number == 4:
                fields["data"] = bytes(chunk)
            elif number == 6:  # packed float_data
                if length % 4:
                    raise ValueError("bad packed float_data")
                floats.append(np.frombuffer(chunk, dtype="<f4"))
        elif wire == 5:
            if pos + 4 > n:
                raise ValueError("truncated field")
            if number == 6:  # unpacked float_data
                floats.append(np.frombuffer(buf[pos : pos + 4], dtype="<f4"))
            pos += 4
        elif wire == 1:
            pos += 8
            if pos > n:
                raise ValueError("truncated field")
        else:
            raise ValueError(f"unsupported wire type {wire}")
    fields["float_data"] = (
        np.concatenate(floats).astype(np.float32) if floats else np.empty(0, np.float32)
    )
    return fields


class _CaffeDecoder:
    def __init__(self) -> None:
        self.warned = 0

    def __call__(self, key: bytes, value: bytes) -> list | None:
        try:
            d = parse_caffe_datum(value)
            if d["encoded"]:
                cv2 = require("cv2", "image", who="CaffeLMDB (encoded images)")
                img = cv2.imdecode(np.frombuffer(d["data"], np.uint8), cv2.IMREAD_UNCHANGED)
                if img is None:
                    raise ValueError("cannot decode the encoded image")
                if img.ndim == 2:
                    img = img[:, :, None]
                return [img, d["label"]]
            c, h, w = d["channels"], d["height"], d["width"]
            if d["data"]:
                img = np.frombuffer(d["data"], dtype=np.uint8)
            else:
                img = d["float_data"]
            img = img.reshape(c, h, w).transpose(1, 2, 0)
            return [np.ascontiguousarray(img), d["label"]]
        except ImportError:
            raise
        except Exception as e:
            self.warned += 1
            if self.warned <= 10:
                logger.warning("CaffeLMDB: cannot read key %r, dropped: %s", key, e)
            return None


def CaffeLMDB(lmdb_path: str, shuffle: bool = True, keys: Sequence | str | None = None):
    """Read a Caffe-format LMDB whose values are ``caffe.Datum`` protobufs.

    Yields ``[image, label]``: the image HWC (uint8 from ``data``, float32 from ``float_data``, or
    decoded with OpenCV when the datum is ``encoded``), the label an int. A record that cannot be
    parsed is dropped with a warning (the first ten are logged), as in tensorpack. The protobuf is
    parsed directly: neither Caffe nor protobuf is needed, only ``lmdb``.

    Note that Caffe's LMDBs usually hold raw pixels rather than JPEG, so they are large and slow to
    read from disk; LMDBSerializer with JPEG bytes is the efficient layout.

    Args:
        lmdb_path, shuffle, keys: as for :class:`LMDBData`.

    Example::

        ds = CaffeLMDB("/data/ilsvrc12_val_lmdb", shuffle=False)
    """
    lmdb_data = LMDBData(lmdb_path, shuffle, keys)
    return LMDBDataDecoder(lmdb_data, _CaffeDecoder())


# -- HDF5 -------------------------------------------------------------------------------------

#: Root attribute under which HDF5Serializer stores its header.
HDF5_HEADER_ATTR = "dataflow_header"
#: Per-dataset attribute: how to turn a stored row back into the component that was saved.
HDF5_KIND_ATTR = "dataflow_kind"
HDF5_DTYPE_ATTR = "dataflow_dtype"
_HDF5_BLOCK_BYTES = 4 << 20  # read about this much per dataset at a time


def _hdf5_converter(dset: Any) -> Callable[[Any], Any] | None:
    """How to restore a component read from ``dset`` (None: use what h5py returns)."""
    kind = dset.attrs.get(HDF5_KIND_ATTR)
    if isinstance(kind, bytes):
        kind = kind.decode()
    if kind in ("int", "float", "bool"):
        return lambda x: x.item()
    if kind == "bytes":
        return lambda x: x.tobytes()
    if kind == "array0d":
        return np.asarray
    if kind == "rawarray":
        dtype = np.dtype(str(dset.attrs[HDF5_DTYPE_ATTR]))
        if dtype.hasobject:
            raise ValueError("object dtype")
        return lambda x: x.reshape(-1).view(dtype).reshape(x.shape[:-1])
    if kind == "rawscalar":
        dtype = np.dtype(str(dset.attrs[HDF5_DTYPE_ATTR]))
        if dtype.hasobject:
            raise ValueError("object dtype")
        return lambda x: x.view(dtype)[0]
    return None


class HDF5Data(RNGDataFlow):
    """Zip datasets of an HDF5 file: datapoint ``i`` is ``[f[path][i] for path in data_paths]``.

    Lazy: rows are read a block at a time (a few MB per dataset), never whole datasets, so files
    larger than memory work. With ``shuffle=True`` each pass is a new random permutation of the rows;
    each block of it is read with one sorted selection per dataset and yielded in permuted order.

    Components are what h5py returns for a row (numpy arrays, numpy scalars; variable-length strings
    as ``str``). For files written by :class:`~dataflow.serialize.HDF5Serializer`, the saved types
    come back exactly (Python ints/floats/bools, ``str``, ``bytes``, 0-d arrays, unicode and datetime
    arrays).

    ``len`` is the common length of the datasets (they must have the same first dimension). The file
    is opened in ``reset_state``, read-only; each pass reads through it with its own position.
    """

    def __init__(self, filename: str, data_paths: Sequence[str], shuffle: bool = True) -> None:
        """
        Args:
            filename: the HDF5 file.
            data_paths: the datasets to zip, e.g. ``['images', 'labels']``.
            shuffle: yield the rows in a random order each pass.
        """
        who = "HDF5Data"
        self.filename = _check_path(filename, who, "filename")
        if isinstance(data_paths, str) or not isinstance(data_paths, Sequence) or not data_paths:
            raise DataFlowArgumentError(
                f"{who}: data_paths must be a non-empty list of dataset paths, got {data_paths!r}"
            )
        for p in data_paths:
            if not isinstance(p, str):
                raise DataFlowArgumentError(f"{who}: data_paths holds a {type(p).__name__}: {p!r}")
        self.data_paths = list(data_paths)
        self.shuffle = _check_flag(shuffle, who, "shuffle")
        self._file: Any = None
        h5py = require("h5py", "hdf5", who=who)
        if not os.path.exists(self.filename):
            raise DataFlowArgumentError(f"{who}: {self.filename!r} does not exist")
        with self._open(h5py) as f:
            try:
                header = f.attrs.get(HDF5_HEADER_ATTR)
            except Exception as e:
                raise FormatError(f"{self.filename}: cannot read the root group ({e})") from e
            info = None
            if header is not None:
                try:
                    raw = np.asarray(header).tobytes()
                except Exception as e:
                    raise FormatError(f"{self.filename}: corrupt dataflow header ({e})") from e
                info = codec.decode_header(raw, "hdf5", self.filename)
            lens = []
            for p in self.data_paths:
                try:
                    present = p in f
                    if not present:
                        list(f)  # a damaged root group raises here
                except Exception as e:
                    raise FormatError(f"{self.filename}: cannot read dataset {p!r}: {e}") from e
                if not present:
                    raise DataFlowArgumentError(f"{who}: {self.filename} has no dataset {p!r}")
                try:
                    dset = f[p]
                    shape = dset.shape
                    _hdf5_converter(dset)
                except Exception as e:
                    raise FormatError(f"{self.filename}: cannot read dataset {p!r}: {e}") from e
                if not shape:
                    raise DataFlowArgumentError(
                        f"{who}: dataset {p!r} of {self.filename} is a scalar, not rows"
                    )
                lens.append(shape[0])
        if any(n != lens[0] for n in lens):
            raise FormatError(
                f"{self.filename}: datasets {self.data_paths} have different lengths {lens}"
            )
        if info is not None and info["count"] != lens[0]:
            raise FormatError(
                f"{self.filename}: {lens[0]} rows but its header says {info['count']} datapoints "
                "(an altered file)"
            )
        self._size = int(lens[0])

    def _open(self, h5py: Any) -> Any:
        try:
            return h5py.File(self.filename, "r")
        except Exception as e:  # h5py raises OSError for anything it cannot parse
            raise FormatError(f"{self.filename}: not a readable HDF5 file ({e})") from e

    def __len__(self) -> int:
        return self._size

    def reset_state(self) -> None:
        super().reset_state()
        h5py = require("h5py", "hdf5", who="HDF5Data")
        f = self._file
        if f is not None and self.__dict__.get("_file_pid") == os.getpid():
            f.close()
        self._file = self._open(h5py)
        self.__dict__["_file_pid"] = os.getpid()
        self._register_cleanup(self._file.close)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_file"] = None
        return state

    def _readers(self) -> tuple[list[Any], list[Callable[[Any], Any] | None], int]:
        dsets, convs = [], []
        row_bytes = 1
        for p in self.data_paths:
            try:
                dset = self._file[p]
                conv = _hdf5_converter(dset)
                if _h5_is_str(dset):
                    dset = dset.asstr()
                    row_bytes += 64
                else:
                    row_bytes += int(np.prod(dset.shape[1:], dtype=np.int64)) * dset.dtype.itemsize
            except Exception as e:
                raise FormatError(f"{self.filename}: cannot read dataset {p!r}: {e}") from e
            dsets.append(dset)
            convs.append(conv)
        block = max(1, min(4096, _HDF5_BLOCK_BYTES // row_bytes))
        return dsets, convs, block

    def __iter__(self) -> Iterator[list]:
        dsets, convs, block = self._readers()
        n = self._size
        order = self.rng.permutation(n) if self.shuffle else None
        for start in range(0, n, block):
            stop = min(start + block, n)
            if order is None:
                sel: Any = slice(start, stop)
                pos = None
            else:
                idx = order[start:stop]
                sorted_idx = np.sort(idx)
                sel = sorted_idx
                pos = np.searchsorted(sorted_idx, idx).tolist()
            columns = []
            for p, dset, conv in zip(self.data_paths, dsets, convs):
                rows: Any
                try:
                    if dset.size == 0:  # rows without elements: HDF5 cannot select them
                        rows = np.empty((stop - start, *dset.shape[1:]), dset.dtype)
                    else:
                        rows = dset[sel]
                except Exception as e:
                    raise FormatError(
                        f"{self.filename}: cannot read rows {start}..{stop - 1} of {p!r}: {e}"
                    ) from e
                if conv is not None:
                    try:
                        rows = [conv(r) for r in rows]
                    except Exception as e:
                        raise FormatError(f"{self.filename}: bad rows in {p!r}: {e}") from e
                columns.append(rows)
            if pos is None:
                yield from map(list, zip(*columns))
            else:
                for i in pos:
                    yield [col[i] for col in columns]


def _h5_is_str(dset: Any) -> bool:
    """Whether an h5py dataset holds variable-length strings."""
    h5py = require("h5py", "hdf5")
    info = h5py.check_string_dtype(dset.dtype)
    return info is not None and info.length is None


# -- SVMlight ---------------------------------------------------------------------------------


class SVMLightData(RNGDataFlow):
    """Read ``X, y`` from an SVMlight / libsvm file and yield ``[X_i, y_i]`` pairs.

    ``X_i`` is a dense float64 row (1-D array of the file's number of features), ``y_i`` a float64
    scalar. The file is parsed once at construction (with scikit-learn) and kept as a sparse matrix;
    rows are made dense one at a time (tensorpack densified the whole matrix up front). ``len`` is
    the number of rows; ``shuffle`` permutes them anew each pass.
    """

    def __init__(self, filename: str, shuffle: bool = True) -> None:
        """
        Args:
            filename: the input file.
            shuffle: yield the rows in a random order each pass.
        """
        who = "SVMLightData"
        filename = _check_path(filename, who, "filename")
        self.shuffle = _check_flag(shuffle, who, "shuffle")
        datasets = require("sklearn.datasets", None, who=who)
        if not os.path.exists(filename):
            raise DataFlowArgumentError(f"{who}: {filename!r} does not exist")
        try:
            X, y = datasets.load_svmlight_file(filename)
        except ValueError as e:
            raise FormatError(f"{filename}: not an SVMlight file ({e})") from e
        X = X.tocsr()
        self._indptr = X.indptr
        self._indices = X.indices
        self._values = X.data
        self._nfeatures = X.shape[1]
        self.y = y

    def __len__(self) -> int:
        return len(self.y)

    def __iter__(self) -> Iterator[list]:
        n = len(self.y)
        idxs = self.rng.permutation(n) if self.shuffle else np.arange(n)
        indptr, indices, values, y = self._indptr, self._indices, self._values, self.y
        for i in idxs.tolist():
            row = np.zeros(self._nfeatures, dtype=np.float64)
            a, b = indptr[i], indptr[i + 1]
            row[indices[a:b]] = values[a:b]
            yield [row, y[i]]

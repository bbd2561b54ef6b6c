"""LMDB readers: LMDBData (raw key/value pairs), LMDBDatapoints (what LMDBSerializer.load returns),
LMDBDataDecoder (a decoder of your own), and the per-process registry of open environments.

Which of three layouts a database has (written by LMDBSerializer, by tensorpack's serializer, or
plain) is learnt when it is opened; the environment itself is opened in ``reset_state``.
"""

from __future__ import annotations

import base64
import io
import logging
import os
import pickle
import threading
from collections.abc import Callable, Iterator, Sequence
from itertools import islice
from typing import Any

from .. import _state, codec
from .._checks import check_flag, check_path
from .._lazy import require
from .._lmdb_seal import LEAF_RECORD_MAX, Seal, check_seal, crc32
from ..base import DataFlow, RNGDataFlow
from ..common import MapData
from ..errors import DataFlowArgumentError, FormatError

logger = logging.getLogger(__name__)

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
                stat = env.stat()
                self.entries = int(stat["entries"])
                # None of the records lives outside the leaf pages (checked whole at open)?
                self.overflow_pages = int(stat["overflow_pages"])
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

    def __init__(
        self,
        lmdb_path: str,
        shuffle: bool,
        keys: Sequence | str | None,
        who: str,
        verify: bool | None = None,
    ):
        require("lmdb", "lmdb", who=who.split(".")[0])
        self._lmdb_path = check_path(lmdb_path, who, "lmdb_path")
        self._shuffle = check_flag(shuffle, who, "shuffle")
        if verify is not None:
            verify = check_flag(verify, who, "verify")
        self._who = who
        self._file = _LMDBFile(self._lmdb_path, who)
        self._size = self._file.count
        self._check_layout()
        has_crcs = self._file.layout == "dataflow"
        if verify and not has_crcs:
            raise DataFlowArgumentError(
                f"{who}: verify=True needs a file written by LMDBSerializer; "
                f"{self._lmdb_path} has no record checksums (leave verify at None to read it "
                "unverified)"
            )
        # Per-record checks: only for a file with checksums and records outside the leaf pages
        # (the leaf pages, holding every record under LEAF_RECORD_MAX bytes, are checked at open).
        self._verify = verify is not False and has_crcs and self._file.overflow_pages > 0
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

    def _shuffled_keys(self, start: int = 0) -> Iterator[bytes]:
        if self.keys is not None:
            keys = self.keys
            return map(keys.__getitem__, self.rng.permutation(len(keys))[start:].tolist())
        return map(lmdb_key, self.rng.permutation(self._size)[start:].tolist())

    # Resume: the position is how many records the pass yielded (``pos``, a local of the pass's
    # generator). A resumed pass draws the same permutation and starts at ``pos`` in it; a
    # sequential pass puts its cursor on that record (directly for LMDBSerializer's numbered keys,
    # otherwise just after the last key it read, saved in the state: a B-tree lookup, whatever
    # the keys; only a state without that key steps over the keys without reading values).
    def _df_save(self) -> dict:
        live_ref = self.__dict__.get("_df_live")
        live = live_ref() if live_ref is not None else None
        pos = _state.gen_local(live, "pos")
        state: dict[str, Any] = {"pos": int(pos or 0), "len": len(self)}
        cursor = _state.gen_local(live, "cursor")
        if pos and cursor is not None and self._file.layout != "dataflow":
            state["after"] = base64.b64encode(bytes(cursor.key())).decode("ascii")
        return state

    def _df_load(self, state: dict) -> None:
        self._df_start = int(state["pos"])
        after = state.get("after")
        self.__dict__["_df_after"] = None if after is None else base64.b64decode(after)

    def _df_check(self, node: dict) -> str | None:
        return _state.check_len(self, node)

    def _seek(self, cursor: Any, start: int) -> bool:
        """Put ``cursor`` on the ``start``-th record (bookkeeping keys not counted)."""
        after = self.__dict__.pop("_df_after", None)
        if self._file.layout == "dataflow":
            return bool(cursor.set_range(lmdb_key(start)))
        if after is not None:  # the record after the last one the saved pass read
            if not cursor.set_range(after):
                return False
            return bytes(cursor.key()) != after or bool(cursor.next())
        if not cursor.first():
            return False
        seen = 0
        for k in cursor.iternext(keys=True, values=False):
            if k[:2] == b"__" and k in _META_KEYS:
                continue
            if seen == start:
                return True
            seen += 1
        return False

    # ShardByRank: a pass that visits only this rank's positions reads each of its records by
    # key (a shuffled pass's keys, or the numbered keys of LMDBSerializer's files in order).
    @property
    def _df_strides(self) -> bool:
        return self._shuffle or (self._file.layout == "dataflow" and self._size <= 10**8)

    def _records_at(self, txn: Any, positions: range) -> Iterator[tuple[bytes, Any]]:
        """``(key, value)`` of the records at ``positions`` of this pass's order, checked as the
        whole pass would check them."""
        idx: Any = positions
        keys = self.keys if self._shuffle else None
        if self._shuffle:
            n = len(self)
            idx = self.rng.permutation(n)[positions.start : positions.stop : positions.step]
            idx = idx.tolist()
        crcs, small = self._crcs() if self._verify else (None, 0)
        get = txn.get
        for i in idx:
            k = keys[i] if keys is not None else lmdb_key(i)
            v = get(k)
            if v is None:
                raise self._key_error(k)
            if crcs is not None and len(v) > small:
                j = self._record_index(k)
                if j is not None and crc32(v) != crcs[j]:
                    raise self._damaged(k)
            yield k, v

    def _key_error(self, key: bytes) -> FormatError:
        return FormatError(f"{self._lmdb_path}: key {key!r} not found in the database")

    def _damaged(self, key: bytes) -> FormatError:
        return FormatError(
            f"{self._lmdb_path}: record {key!r} is damaged (its CRC-32 does not match the "
            "file's seal; verify=False reads it unchecked)"
        )

    def _record_index(self, key: bytes) -> int | None:
        """The index of a record LMDBSerializer wrote under ``key``; None for another key."""
        try:
            i = int(key)
        except ValueError:
            return None
        return i if 0 <= i < self._size and lmdb_key(i) == key else None

    def _crcs(self) -> tuple[Any, int]:
        """The record CRCs and the length from which a record is checked when read."""
        seal = self._file.seal
        assert seal is not None  # a "dataflow" layout always has one (checked at open)
        return seal.record_crcs(), LEAF_RECORD_MAX


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

    Integrity: a file written by :class:`~dataflow.serialize.LMDBSerializer` is checked when
    opened (its structure) and, by default, each record as it is read against the CRC-32 the file
    holds for it: a damaged record raises :class:`~dataflow.errors.FormatError` naming the file
    and the key. Other LMDBs carry no checksums and read as before.
    """

    def __init__(
        self,
        lmdb_path: str,
        shuffle: bool = True,
        keys: Sequence | str | None = None,
        *,
        verify: bool | None = None,
    ) -> None:
        """
        Args:
            lmdb_path: a directory holding ``data.mdb``, or the database file itself.
            shuffle: yield the records in a random order each pass.
            keys: the keys to read when ``shuffle`` is True: a list of ``bytes``/``str``, or a
                format string such as ``'{:0>8d}'`` formatted with the indices 0 .. len-1. If not
                given: the keys LMDBSerializer (ours or tensorpack's) recorded, or else every key
                found by traversing the database once (slow for large databases).
            verify: check each record against the file's CRC-32 for it. None (the default):
                when the file has record checksums (LMDBSerializer's); True: also refuse a file
                without them; False: never.
        """
        super().__init__(lmdb_path, shuffle, keys, "LMDBData", verify)

    def __iter__(self) -> Iterator[list[bytes]]:
        if self.__dict__.get("_df_stride") is not None:
            positions = _state.pass_positions(self, len(self))
            pos = positions.start  # ``pos``: the saved position (the next one to visit)
            with self._env.begin() as txn:
                for k, v in self._records_at(txn, positions):
                    pos += positions.step
                    yield [k, v]
            return
        pos = start = self.__dict__.pop("_df_start", 0)
        if self._verify:  # (a file LMDBSerializer wrote: resumed by index, no cursor kept)
            for kv in self._iter_verified(start):
                pos += 1
                yield kv
            return
        with self._env.begin() as txn:
            if not self._shuffle:
                meta = _META_KEYS
                cursor = txn.cursor()
                if start and not self._seek(cursor, start):
                    return
                for k, v in cursor.iternext() if start else cursor:
                    if k[:2] == b"__" and k in meta:
                        continue
                    pos += 1
                    yield [k, v]
            else:
                get = txn.get
                for k in self._shuffled_keys(start):
                    v = get(k)
                    if v is None:
                        raise self._key_error(k)
                    pos += 1
                    yield [k, v]

    def _iter_verified(self, start: int) -> Iterator[list[bytes]]:
        pos = start
        crcs, small = self._crcs()
        index = self._record_index
        in_order = self._size <= 10**8  # key order is index order (the header key sorts last)
        with self._env.begin() as txn:
            if not self._shuffle:
                cursor = txn.cursor()
                if start and not self._seek(cursor, start):
                    return
                for k, v in cursor.iternext() if start else cursor:
                    if k[:2] == b"__" and k in _META_KEYS:
                        continue
                    if len(v) > small:
                        i = pos if in_order else index(k)
                        if i is not None and crc32(v) != crcs[i]:
                            raise self._damaged(k)
                    pos += 1
                    yield [k, v]
            else:
                get = txn.get
                for k in self._shuffled_keys(start):
                    v = get(k)
                    if v is None:
                        raise self._key_error(k)
                    if len(v) > small:
                        i = index(k)
                        if i is not None and crc32(v) != crcs[i]:
                            raise self._damaged(k)
                    pos += 1
                    yield [k, v]

    _df_save = _LMDBReader._df_save
    _df_strides = _LMDBReader._df_strides


class LMDBDatapoints(_LMDBReader):
    """The datapoints of an LMDB written by :class:`~dataflow.serialize.LMDBSerializer`, decoded
    (what ``LMDBSerializer.load`` returns).

    Yields the datapoints as they were saved (see :mod:`dataflow.codec` for what round-trips);
    arrays are writable and own their memory. Order as :class:`LMDBData`; ``len`` is the number of
    datapoints saved.

    A database written by tensorpack's LMDBSerializer holds pickles: it is read only with
    ``allow_pickle=True`` (unpickling runs code chosen by the file's author: only for files you
    trust); without it the constructor raises :class:`~dataflow.errors.FormatError` saying so.

    Each record is checked against the CRC-32 that the file's seal holds for it before it is
    decoded (a damaged record raises FormatError naming the file and its key), unless
    ``verify=False``; see ``LMDBSerializer.load``.
    """

    def __init__(
        self,
        lmdb_path: str,
        shuffle: bool = True,
        *,
        allow_pickle: bool = False,
        verify: bool | None = None,
    ):
        self._allow_pickle = check_flag(allow_pickle, "LMDBSerializer.load", "allow_pickle")
        super().__init__(lmdb_path, shuffle, None, "LMDBSerializer.load", verify)
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
        if self.__dict__.get("_df_stride") is not None:
            positions = _state.pass_positions(self, len(self))
            pos = positions.start  # ``pos``: the saved position (the next one to visit)
            with self._env.begin(buffers=self._buffers) as txn:
                for k, v in self._records_at(txn, positions):
                    try:
                        dp = decode(v)
                    except Exception as e:
                        raise self._record_error(k, e) from e
                    pos += positions.step
                    yield dp
            return
        pos = start = self.__dict__.pop("_df_start", 0)
        if self._verify:
            for dp in self._iter_verified(decode, start):
                pos += 1
                yield dp
            return
        with self._env.begin(buffers=self._buffers) as txn:
            if not self._shuffle:
                cursor = txn.cursor()
                if start and not self._seek(cursor, start):
                    return
                values = islice(cursor.iternext(keys=False, values=True), self._size - start)
                try:
                    for v in values:
                        dp = decode(v)
                        pos += 1
                        yield dp
                except Exception as e:
                    raise self._record_error(bytes(cursor.key()), e) from e
            else:
                get = txn.get
                for k in self._shuffled_keys(start):
                    v = get(k)
                    if v is None:
                        raise self._key_error(k)
                    try:
                        dp = decode(v)
                    except Exception as e:
                        raise self._record_error(k, e) from e
                    pos += 1
                    yield dp

    _df_save = _LMDBReader._df_save
    _df_strides = _LMDBReader._df_strides

    def _iter_verified(self, decode: Callable[[Any], Any], start: int = 0) -> Iterator[Any]:
        crcs, small = self._crcs()
        with self._env.begin(buffers=self._buffers) as txn:
            if not self._shuffle and self._size <= 10**8:  # key order is index order
                cursor = txn.cursor()
                if start and not self._seek(cursor, start):
                    return
                values = islice(cursor.iternext(keys=False, values=True), self._size - start)
                i = start
                for v in values:
                    if len(v) > small and crc32(v) != crcs[i]:
                        raise self._damaged(lmdb_key(i))
                    try:
                        dp = decode(v)
                    except Exception as e:
                        raise self._record_error(lmdb_key(i), e) from e
                    i += 1
                    yield dp
                return
            if self._shuffle:
                order: Iterator[int] = iter(self.rng.permutation(self._size)[start:].tolist())
            else:
                order = iter(range(start, self._size))
            get = txn.get
            for i in order:
                k = lmdb_key(i)
                v = get(k)
                if v is None:
                    raise self._key_error(k)
                if len(v) > small and crc32(v) != crcs[i]:
                    raise self._damaged(k)
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

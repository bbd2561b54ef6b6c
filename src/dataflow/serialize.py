"""Save a DataFlow to one file and load it back as a fast sequential source.

tensorpack's "efficient DataFlow" recipe: a dataset made of many small files (slow random reads) is
written once into a single file that streams at disk speed; training then reads it sequentially,
shuffles locally (:class:`~dataflow.common.LocallyShuffleData`) and decodes in parallel::

    LMDBSerializer.save(ds, "/data/train.lmdb")
    ds = LMDBSerializer.load("/data/train.lmdb", shuffle=False)
    ds = LocallyShuffleData(ds, 2000)
    ds = MultiProcessMapData(ds, 4, decode_and_augment)

Every class here is a drop-in for the one of the same name in ``tensorpack.dataflow.serialize``
(``save``/``load`` static methods, same arguments). What differs:

- Datapoints are stored with the safe codec of :mod:`dataflow.codec` (msgpack + numpy arrays), not
  pickle: loading a file never runs code from it. Files written by tensorpack (pickles) are read
  with ``load(..., allow_pickle=True)`` only; without it, a clear
  :class:`~dataflow.errors.FormatError` says so.
- Every file starts with a header (magic number, format version, codec, datapoint count); readers
  check it and raise FormatError naming the file on anything else (garbage, truncation, another
  codec, a newer version).
- Writes are atomic: the file is written under a temporary name in the same directory and renamed
  when complete, so an interrupted or failed write never leaves a file that reads as valid.
- Writers show a tqdm progress bar (with a total when the flow's ``len`` is known).
- ``TFRecordSerializer`` reads and writes the TFRecord framing (with its CRC32C checksums) itself:
  TensorFlow is not needed. It stores the count, so ``load`` needs no ``size``.
- ``LMDBSerializer`` grows the database's map size as needed and never loses a transaction doing so.

Optional dependencies: ``lmdb`` for LMDBSerializer (``pip install 'pydataflow[lmdb]'``), ``h5py``
for HDF5Serializer (``[hdf5]``). NumpySerializer and TFRecordSerializer need only numpy.
"""

from __future__ import annotations

import logging
import os
import pickle
import secrets
import zlib
from array import array
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import tqdm

from . import codec
from ._lazy import require
from ._lmdb_seal import write_seal
from ._tfrecord import iter_records, write_record
from .base import DataFlow, RNGDataFlow, check_dataflow
from .common import FixedSizeData
from .errors import DataFlowArgumentError, DatapointError, FormatError, LengthUnknownError
from .format import (
    HDF5_DTYPE_ATTR,
    HDF5_HEADER_ATTR,
    HDF5_KIND_ATTR,
    LMDB_HEADER_KEY,
    HDF5Data,
    LMDBDatapoints,
    lmdb_key,
)
from .raw import DataFromList

__all__ = ["LMDBSerializer", "NumpySerializer", "TFRecordSerializer", "HDF5Serializer"]

logger = logging.getLogger(__name__)


# -- helpers shared by the writers --------------------------------------------------------------


def _check_path(path: object, who: str) -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise DataFlowArgumentError(f"{who}: path must be a path, got {type(path).__name__}")
    path = os.fspath(path)
    return os.fsdecode(path) if isinstance(path, bytes) else path


def _check_parent(path: str, who: str) -> None:
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise DataFlowArgumentError(f"{who}: the directory {parent!r} of {path!r} does not exist")


def _prepare(df: object, who: str) -> tuple[DataFlow, int | None]:
    """Validate and reset the flow to save; return it and its length (None if unknown)."""
    flow = check_dataflow(df, who, "df")
    flow.reset_state()
    try:
        return flow, len(flow)
    except (NotImplementedError, TypeError):
        return flow, None


def _progress(total: int | None, who: str) -> tqdm.tqdm:
    return tqdm.tqdm(total=total, desc=who, unit="dp", dynamic_ncols=True, mininterval=0.5)


def _temp_path(final: str) -> str:
    head, tail = os.path.split(os.path.abspath(final))
    return os.path.join(head, f".{tail}.tmp-{os.getpid()}-{secrets.token_hex(4)}")


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _publish(tmp: str, final: str) -> None:
    """Move a complete temporary file to its final name, durably."""
    os.replace(tmp, final)
    try:
        fd = os.open(os.path.dirname(os.path.abspath(final)), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _encode(dp: Any, index: int, who: str) -> bytes:
    try:
        return codec.dumps(dp)
    except DatapointError as e:
        raise DatapointError(f"{who}: datapoint {index}: {e}") from e


# -- LMDB ---------------------------------------------------------------------------------------

#: The map size an LMDB write starts with; it doubles whenever the database is full.
_LMDB_INITIAL_MAP_SIZE = 1 << 30
# A transaction is committed after write_frequency records or this many bytes, whichever first:
# its records are kept until the commit (to be replayed if the map must grow).
_LMDB_TXN_BYTES = 64 << 20


class LMDBSerializer:
    """Save a flow into an LMDB database, one datapoint per record; load it back.

    Keys are the datapoints' indices formatted ``'{:08}'`` (``b'00000000'``, ...), as tensorpack
    writes them, so key order is write order (up to 10^8 datapoints); values are the datapoints
    encoded with :mod:`dataflow.codec`. A header record (key ``__dataflow__``) holds the format
    version, codec and count. Needs ``lmdb`` (``pip install 'pydataflow[lmdb]'``).

    Integrity: LMDB itself keeps no checksums and trusts its pages, so that one damaged page can
    crash the process inside the lmdb library. The file is therefore sealed: after LMDB's pages
    come a CRC-32 of every page that steers the lmdb library (checked each time the file is opened,
    before the lmdb library reads it; a few tens of MB for millions of records) and a CRC-32 of
    every record (checked as records are read with ``load(..., verify=True)``). A damaged file
    raises :class:`~dataflow.errors.FormatError` instead of crashing. Records small enough to live
    in LMDB's leaf pages (under about 2 KB with 4 KB pages) are always checked; larger ones are
    checked byte for byte only with ``verify=True`` (otherwise damage there gives a FormatError
    or a well-formed but different datapoint). The lmdb library and other programs read the file
    as any LMDB.

    Example::

        LMDBSerializer.save(my_df, "output.lmdb")
        new_df = LMDBSerializer.load("output.lmdb", shuffle=True)
    """

    @staticmethod
    def save(df: DataFlow, path: str, write_frequency: int = 5000) -> None:
        """Write one pass of ``df`` to ``path``.

        Args:
            df: the flow to save (one full pass is written; it must be finite).
            path: an existing directory (the database becomes ``path/data.mdb``) or the name of
                the database file to create. Refused if the database already exists.
            write_frequency: commit a transaction every this many datapoints (also every 64 MB).
                Smaller values use less memory.

        Raises:
            DataFlowArgumentError: a bad argument, or the database exists.
            DatapointError: a datapoint holds a value the codec cannot store (names its index).
        """
        who = "LMDBSerializer.save"
        lmdb = require("lmdb", "lmdb", who="LMDBSerializer")
        path = _check_path(path, who)
        if (
            isinstance(write_frequency, (bool, np.bool_))
            or not isinstance(write_frequency, (int, np.integer))
            or write_frequency <= 0
        ):
            raise DataFlowArgumentError(
                f"{who}: write_frequency must be a positive int, got {write_frequency!r}"
            )
        if os.path.isdir(path):
            final = os.path.join(path, "data.mdb")
            if os.path.exists(final):
                raise DataFlowArgumentError(f"{who}: an LMDB database exists in {path!r}")
        else:
            if os.path.exists(path):
                raise DataFlowArgumentError(f"{who}: {path!r} exists")
            _check_parent(path, who)
            final = path
        df, size = _prepare(df, who)

        tmp = _temp_path(final)
        env = lmdb.open(
            tmp,
            subdir=False,
            map_size=_LMDB_INITIAL_MAP_SIZE,
            readonly=False,
            lock=False,  # the temporary file is ours alone
            sync=False,  # one sync at the end, before the file gets its name
            meminit=False,
        )
        # (key, value, append): append mode (faster) while keys arrive in sorted order
        pending: list[tuple[bytes, bytes, bool]] = []

        def commit() -> None:
            while True:
                try:
                    with env.begin(write=True) as txn:
                        put = txn.put
                        for key, value, append in pending:
                            put(key, value, append=append)
                    break
                except lmdb.MapFullError:
                    new_size = env.info()["map_size"] * 2
                    logger.info("%s: growing the LMDB map size to %.2f GB", who, new_size / 1e9)
                    env.set_mapsize(new_size)
            pending.clear()

        crcs = array("I")  # each record's CRC-32, for the seal
        try:
            count = 0
            pending_bytes = 0
            with _progress(size, f"LMDBSerializer {os.path.basename(path)}") as bar:
                for dp in df:
                    value = _encode(dp, count, who)
                    crcs.append(zlib.crc32(value))
                    # From 10^8 on, '{:08}' keys no longer sort in index order.
                    pending.append((lmdb_key(count), value, count < 10**8))
                    pending_bytes += len(value)
                    count += 1
                    bar.update(1)
                    if len(pending) >= write_frequency or pending_bytes >= _LMDB_TXN_BYTES:
                        commit()
                        pending_bytes = 0
                pending.append((LMDB_HEADER_KEY, codec.encode_header("lmdb", count), False))
                commit()
            env.sync(True)
            env.close()
            write_seal(tmp, crcs)
            _publish(tmp, final)
        except BaseException:
            env.close()
            _remove(tmp)
            raise
        logger.info("%s: wrote %d datapoints to %s", who, count, final)

    @staticmethod
    def load(
        path: str, shuffle: bool = True, *, allow_pickle: bool = False, verify: bool = False
    ) -> DataFlow:
        """A flow of the datapoints saved in ``path``.

        Returns a :class:`~dataflow.format.LMDBDatapoints`: ``len`` is the number of datapoints;
        each pass yields each once, in key (= write) order, or in a new random order if
        ``shuffle``. Decoding happens in the flow itself; to decode in parallel, read with
        :class:`~dataflow.format.LMDBData` and put ``dataflow.codec.loads`` on ``dp[1]`` in a
        parallel map.

        Args:
            path: the database (directory or file) written by ``save``.
            shuffle: random order (random reads); ``False`` reads sequentially, the fast way.
            allow_pickle: also read a database written by tensorpack's LMDBSerializer (pickled
                values). Unpickling runs code chosen by the file's author: only for trusted files.
            verify: check every record read against its CRC-32 in the file's seal (costs one
                CRC-32 pass over each value, about 1 GB/s). The structure is checked either way.

        Raises:
            FormatError: not a database written by LMDBSerializer (or tensorpack's, without
                ``allow_pickle``), or a damaged one; a corrupted record raises it when read,
                naming its key.
        """
        return LMDBDatapoints(path, shuffle, allow_pickle=allow_pickle, verify=verify)


# -- NumPy --------------------------------------------------------------------------------------


class _NpzData(RNGDataFlow):
    """The datapoints of an ``.npz`` written by NumpySerializer, decoded one at a time."""

    def __init__(self, path: str, data: np.ndarray, offsets: np.ndarray, shuffle: bool) -> None:
        self.path = path
        self._data = data
        self._offsets = offsets.tolist()
        self.shuffle = shuffle

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __iter__(self) -> Iterator[Any]:
        n = len(self._offsets) - 1
        order = self.rng.permutation(n).tolist() if self.shuffle else range(n)
        decode = codec.decoder(copy=True)  # the arrays must not alias the stored data
        buf = memoryview(self._data)  # type: ignore[arg-type]
        offsets = self._offsets
        for i in order:
            try:
                dp = decode(buf[offsets[i] : offsets[i + 1]])
            except FormatError as e:
                raise FormatError(f"{self.path}: datapoint {i} cannot be decoded: {e}") from e
            yield dp


class NumpySerializer:
    """Save a whole flow into one ``.npz`` file (in memory while writing and reading).

    The file holds three arrays: ``dataflow_header``, ``data`` (the datapoints encoded with
    :mod:`dataflow.codec`, concatenated) and ``offsets``; it is compressed (zlib). Reading it needs
    no pickle (``numpy.load(allow_pickle=False)``). The whole flow is held in memory while saving,
    and the whole file while loading: for large datasets use :class:`LMDBSerializer`.
    """

    @staticmethod
    def save(df: DataFlow, path: str) -> None:
        """Write one pass of ``df`` to ``path`` (exactly that name; an existing file is replaced
        atomically when the new one is complete).

        Raises:
            DatapointError: a datapoint holds a value the codec cannot store (names its index).
        """
        who = "NumpySerializer.save"
        path = _check_path(path, who)
        _check_parent(path, who)
        df, size = _prepare(df, who)
        chunks: list[bytes] = []
        offsets = [0]
        with _progress(size, f"NumpySerializer {os.path.basename(path)}") as bar:
            for i, dp in enumerate(df):
                msg = _encode(dp, i, who)
                chunks.append(msg)
                offsets.append(offsets[-1] + len(msg))
                bar.update(1)
        data = np.frombuffer(b"".join(chunks), dtype=np.uint8)
        del chunks
        header = np.frombuffer(codec.encode_header("npz", len(offsets) - 1), dtype=np.uint8)
        tmp = _temp_path(path)
        try:
            with open(tmp, "wb") as f:  # a file object: numpy does not append ".npz" to it
                np.savez_compressed(
                    f, dataflow_header=header, offsets=np.asarray(offsets, np.int64), data=data
                )
                f.flush()
                os.fsync(f.fileno())
            _publish(tmp, path)
        except BaseException:
            _remove(tmp)
            raise

    @staticmethod
    def load(path: str, shuffle: bool = True, *, allow_pickle: bool = False) -> DataFlow:
        """A flow of the datapoints saved in ``path``; ``len`` is their number.

        Args:
            path: the file written by ``save``.
            shuffle: a new random order each pass.
            allow_pickle: also read a file written by tensorpack's NumpySerializer (a pickled
                object array). Unpickling runs code chosen by the file's author.

        Raises:
            FormatError: not such a file (garbage, truncated, corrupted, or tensorpack's without
                ``allow_pickle``), naming it.
        """
        who = "NumpySerializer.load"
        path = _check_path(path, who)
        if not os.path.exists(path):
            raise DataFlowArgumentError(f"{who}: {path!r} does not exist")
        shuffle = bool(shuffle)
        try:
            with np.load(path, allow_pickle=False) as npz:
                names = set(npz.files)
                if "dataflow_header" not in names:
                    if "buffer" not in names:
                        raise FormatError(f"{path}: not a file written by NumpySerializer")
                    legacy = True
                else:
                    legacy = False
                    header = npz["dataflow_header"]
                    offsets = npz["offsets"]
                    data = npz["data"]
        except FormatError:
            raise
        except Exception as e:  # zipfile, zlib and numpy raise many kinds on a damaged file
            raise FormatError(f"{path}: not a readable .npz file ({type(e).__name__}: {e})") from e
        if legacy:
            if not allow_pickle:
                raise FormatError(
                    f"{path}: written by tensorpack's NumpySerializer, which pickles the "
                    "datapoints; unpickling runs code chosen by the file's author, so it is "
                    "refused. Pass allow_pickle=True if you trust this file."
                )
            try:
                with np.load(path, allow_pickle=True) as npz:
                    buffer = list(npz["buffer"])
            except Exception as e:
                raise FormatError(f"{path}: cannot read tensorpack's buffer: {e}") from e
            return DataFromList(buffer, shuffle=shuffle)
        if header.dtype != np.uint8 or header.ndim != 1:
            raise FormatError(f"{path}: corrupt dataflow header")
        info = codec.decode_header(header.tobytes(), "npz", path)
        count = info["count"]
        if (
            data.dtype != np.uint8
            or data.ndim != 1
            or offsets.dtype != np.int64
            or offsets.shape != (count + 1,)
            or offsets[0] != 0
            or offsets[-1] != len(data)
            or (count and bool(np.any(np.diff(offsets) < 0)))
        ):
            raise FormatError(f"{path}: inconsistent data and offsets (a corrupted file)")
        return _NpzData(path, data, offsets, shuffle)


class _TFRecordData(DataFlow):
    """The datapoints of a TFRecord file, decoded; each pass reads the file anew."""

    def __init__(self, path: str, count: int | None, decode: Callable[[Any], Any]) -> None:
        self.path = path
        self._count = count  # None: a foreign file without our header
        self._decode = decode

    def __len__(self) -> int:
        if self._count is None:
            raise LengthUnknownError(
                f"{self.path} was not written by TFRecordSerializer: its length is unknown "
                "(pass size= to TFRecordSerializer.load)"
            )
        return self._count

    def __iter__(self) -> Iterator[Any]:
        decode = self._decode
        try:
            f = open(self.path, "rb")
        except OSError as e:
            raise FormatError(f"{self.path}: cannot open: {e}") from e
        with f:
            records = iter_records(f, self.path)
            if self._count is not None:
                next(records, None)  # the header, checked by load()
            n = 0
            for record in records:
                try:
                    dp = decode(record)
                except Exception as e:
                    raise FormatError(
                        f"{self.path}: record {n} cannot be decoded: {type(e).__name__}: {e}"
                    ) from e
                n += 1
                yield dp
            if self._count is not None and n != self._count:
                raise FormatError(
                    f"{self.path}: holds {n} datapoints but its header says {self._count} "
                    "(a truncated or altered file)"
                )


class TFRecordSerializer:
    """Save a flow into a TFRecord file, one datapoint per record; load it back.

    The framing is TFRecord's (length, masked CRC-32C of the length, data, masked CRC-32C of the
    data), written and checked here without TensorFlow, so any corruption of a record is detected
    when it is read. The first record is dataflow's header (with the count); the others are the
    datapoints encoded with :mod:`dataflow.codec` (not ``tf.train.Example`` protos).

    TFRecord has no index: reading is sequential only. :class:`LMDBSerializer` is usually faster.
    """

    @staticmethod
    def save(df: DataFlow, path: str) -> None:
        """Write one pass of ``df`` to ``path`` (an existing file is replaced atomically when the
        new one is complete).

        Raises:
            DatapointError: a datapoint holds a value the codec cannot store (names its index).
        """
        who = "TFRecordSerializer.save"
        path = _check_path(path, who)
        _check_parent(path, who)
        df, size = _prepare(df, who)
        tmp = _temp_path(path)
        try:
            with open(tmp, "wb") as f:
                # The count is filled in at the end; the header's length does not depend on it.
                write_record(f, codec.encode_header("tfrecord", codec.COUNT_UNKNOWN))
                count = 0
                with _progress(size, f"TFRecordSerializer {os.path.basename(path)}") as bar:
                    for dp in df:
                        write_record(f, _encode(dp, count, who))
                        count += 1
                        bar.update(1)
                f.seek(0)
                write_record(f, codec.encode_header("tfrecord", count))
                f.flush()
                os.fsync(f.fileno())
            _publish(tmp, path)
        except BaseException:
            _remove(tmp)
            raise

    @staticmethod
    def load(path: str, size: int | None = None, *, allow_pickle: bool = False) -> DataFlow:
        """A flow of the datapoints in ``path``, in file order.

        Args:
            path: the file written by ``save``.
            size: not needed for files written by ``save`` (the count is stored). If given, the
                flow is wrapped in ``FixedSizeData(ds, size)`` as tensorpack does: exactly ``size``
                datapoints per pass.
            allow_pickle: also read a file written by tensorpack's TFRecordSerializer (pickled
                records, no header; its length is then unknown unless ``size`` is given).
                Unpickling runs code chosen by the file's author: only for trusted files.

        Raises:
            FormatError: not such a file, naming it; a corrupted record raises it when read.
        """
        who = "TFRecordSerializer.load"
        path = _check_path(path, who)
        if size is not None and (
            isinstance(size, (bool, np.bool_))
            or not isinstance(size, (int, np.integer))
            or size < 0
        ):
            raise DataFlowArgumentError(f"{who}: size must be a non-negative int, got {size!r}")
        if not os.path.exists(path):
            raise DataFlowArgumentError(f"{who}: {path!r} does not exist")
        with open(path, "rb") as f:
            first = next(iter_records(f, path), None)
        ds: DataFlow
        if first is not None and first.startswith(codec.MAGIC):
            info = codec.decode_header(first, "tfrecord", path)
            ds = _TFRecordData(path, info["count"], codec.decoder())
        elif allow_pickle:
            ds = _TFRecordData(path, None, pickle.loads)
        else:
            raise FormatError(
                f"{path}: not written by TFRecordSerializer (no dataflow header). If tensorpack "
                "wrote it, its records are pickles: unpickling runs code chosen by the file's "
                "author, so pass allow_pickle=True only if you trust it."
            )
        if size is not None:
            ds = FixedSizeData(ds, int(size))
        return ds


# -- HDF5 ---------------------------------------------------------------------------------------

_H5_CHUNK_BYTES = 1 << 20
_H5_RAW_KINDS = "UMmV"  # dtypes HDF5 cannot hold natively: stored as their bytes


class _H5Column:
    """One component of the datapoints, written into one resizable dataset."""

    def __init__(self, h5py: Any, f: Any, path: str, comp: Any, index: int, who: str) -> None:
        self.path, self.who, self.index = path, who, index
        self.kind, self.dtype, self.shape, self.store_dtype = self._classify(h5py, comp)
        self.row_shape = self.shape + (
            (self.dtype.itemsize,) if self.kind in ("rawarray", "rawscalar") else ()
        )
        self.rows: list[Any] = []
        self.count = 0
        self.dset: Any = None
        self.f = f
        nelem = int(np.prod(self.row_shape, dtype=np.int64))
        row_bytes = max(1, nelem * (self.store_dtype.itemsize or 8))
        self.block = max(1, min(4096, _H5_CHUNK_BYTES // row_bytes))
        if nelem:
            self.dset = f.create_dataset(
                path,
                shape=(0, *self.row_shape),
                maxshape=(None, *self.row_shape),
                dtype=self.store_dtype,
                chunks=(self.block, *self.row_shape),
                # HDF5 cannot checksum variable-length data (str, bytes)
                fletcher32=self.kind not in ("str", "bytes"),
            )
            self.dset.attrs[HDF5_KIND_ATTR] = self.kind
            if self.kind in ("rawarray", "rawscalar"):
                self.dset.attrs[HDF5_DTYPE_ATTR] = self.dtype.str

    def _classify(self, h5py: Any, comp: Any) -> tuple[str, np.dtype, tuple, np.dtype]:
        if isinstance(comp, bool):
            return "bool", np.dtype(bool), (), np.dtype(bool)
        if isinstance(comp, int):
            return "int", np.dtype(np.int64), (), np.dtype(np.int64)
        if isinstance(comp, float):
            return "float", np.dtype(np.float64), (), np.dtype(np.float64)
        if isinstance(comp, str):
            dt = h5py.string_dtype("utf-8")
            return "str", dt, (), dt
        if isinstance(comp, (bytes, bytearray)):
            dt = h5py.vlen_dtype(np.dtype(np.uint8))
            return "bytes", dt, (), dt
        if isinstance(comp, (np.ndarray, np.generic)):
            dtype = comp.dtype
            if dtype.hasobject or dtype.itemsize == 0:
                raise self._error(f"a numpy {type(comp).__name__} of dtype {dtype} is not storable")
            raw = dtype.kind in _H5_RAW_KINDS
            if isinstance(comp, np.generic):
                kind = "rawscalar" if raw else "npscalar"
                shape: tuple = ()
            else:
                kind = "rawarray" if raw else ("array0d" if comp.ndim == 0 else "array")
                shape = comp.shape
            return kind, dtype, shape, np.dtype(np.uint8) if raw else dtype
        raise self._error(
            f"a {type(comp).__name__} cannot be stored in an HDF5 dataset (HDF5Serializer stores "
            "numpy arrays and scalars, int, float, bool, str and bytes; use LMDBSerializer for "
            "nested lists and dicts)"
        )

    def _error(self, what: str, index: int | None = None) -> DatapointError:
        i = self.index if index is None else index
        return DatapointError(f"{self.who}: datapoint {i}, component {self.path!r}: {what}")

    def add(self, comp: Any, index: int) -> None:
        kind = self.kind
        if kind in ("array", "array0d", "rawarray", "npscalar", "rawscalar"):
            is_array = kind in ("array", "array0d", "rawarray")
            if not isinstance(comp, np.ndarray if is_array else np.generic):
                raise self._error(
                    f"a {type(comp).__name__} where datapoint {self.index} had a "
                    f"{'numpy array' if is_array else 'numpy scalar'}",
                    index,
                )
            if comp.dtype != self.dtype or comp.shape != self.shape:
                raise self._error(
                    f"dtype {comp.dtype} shape {comp.shape} differs from dtype {self.dtype} shape "
                    f"{self.shape} of datapoint {self.index} (an HDF5 dataset holds rows of one "
                    "dtype and shape)",
                    index,
                )
            if kind.startswith("raw"):
                comp = np.ascontiguousarray(comp).reshape(-1).view(np.uint8)
        else:
            expected = {"bool": bool, "int": int, "float": float, "str": str}.get(kind)
            if kind == "bytes":
                if not isinstance(comp, (bytes, bytearray)):
                    raise self._error(f"a {type(comp).__name__} where bytes were expected", index)
                comp = np.frombuffer(bytes(comp), dtype=np.uint8)
            elif expected is not None and (
                not isinstance(comp, expected) or (kind == "int" and isinstance(comp, bool))
            ):
                raise self._error(
                    f"a {type(comp).__name__} where datapoint {self.index} had a {kind}", index
                )
            if kind == "int" and not -(2**63) <= comp < 2**63:
                raise self._error(f"the int {comp} does not fit in int64", index)
        self.rows.append(comp)
        self.count += 1
        if len(self.rows) >= self.block:
            self.flush()

    def flush(self) -> None:
        rows, self.rows = self.rows, []
        if not rows or self.dset is None:
            return
        start = self.dset.shape[0]
        self.dset.resize(start + len(rows), axis=0)
        if self.kind in ("str", "bytes"):
            block = np.empty(len(rows), dtype=self.dset.dtype)
            for i, r in enumerate(rows):
                block[i] = r
            # (h5py's __setitem__ misreads equal-length byte rows as a 2-D block)
            self.dset.write_direct(block, dest_sel=np.s_[start:])
        else:
            block = np.stack(rows) if isinstance(rows[0], np.ndarray) else np.asarray(rows)
            self.dset[start:] = block.reshape((len(rows), *self.row_shape))

    def finish(self) -> None:
        self.flush()
        if self.dset is None:  # rows without elements: nothing to store but the shape
            self.dset = self.f.create_dataset(
                self.path, shape=(self.count, *self.row_shape), dtype=self.store_dtype
            )
            self.dset.attrs[HDF5_KIND_ATTR] = self.kind
            if self.kind in ("rawarray", "rawscalar"):
                self.dset.attrs[HDF5_DTYPE_ATTR] = self.dtype.str


class HDF5Serializer:
    """Save a flow into an HDF5 file, one dataset per component; load it back (lazily).

    Component ``k`` of every datapoint becomes row ``i`` of dataset ``data_paths[k]``, so every
    datapoint must have the same structure: for each component the same type, and for arrays the
    same dtype and shape (else :class:`~dataflow.errors.DatapointError` names the datapoint and
    component). Components may be numpy arrays (any shape and non-object dtype, including 0-d,
    empty, unicode and datetime) and scalars, Python ``int``/``float``/``bool``, ``str`` and
    ``bytes``; they come back with their type. Nested lists and dicts need
    :class:`LMDBSerializer`.

    Datasets are chunked with Fletcher-32 checksums and the file uses HDF5's latest format (with
    checksummed metadata), so corruption is detected when read; ``str`` and ``bytes`` components are
    stored as variable-length data, which HDF5 cannot checksum. Rows are written in blocks: memory
    stays bounded whatever the size. Needs ``h5py`` (``pip install 'pydataflow[hdf5]'``).
    """

    @staticmethod
    def save(df: DataFlow, path: str, data_paths: Sequence[str]) -> None:
        """Write one pass of ``df`` to ``path``.

        Args:
            df: the flow to save; its datapoints are lists/tuples of ``len(data_paths)``
                components.
            path: the HDF5 file (replaced atomically when the new one is complete).
            data_paths: one dataset path per component, e.g. ``['images', 'labels']``.
        """
        who = "HDF5Serializer.save"
        h5py = require("h5py", "hdf5", who="HDF5Serializer")
        path = _check_path(path, who)
        _check_parent(path, who)
        paths = _check_data_paths(data_paths, who)
        df, size = _prepare(df, who)
        tmp = _temp_path(path)
        try:
            with h5py.File(tmp, "w", libver="latest") as f:
                columns: list[_H5Column] | None = None
                count = 0
                with _progress(size, f"HDF5Serializer {os.path.basename(path)}") as bar:
                    for dp in df:
                        if not isinstance(dp, (list, tuple)):
                            raise DatapointError(
                                f"{who}: datapoint {count} is a {type(dp).__name__}; HDF5Serializer "
                                "needs list or tuple datapoints (one component per data path)"
                            )
                        if len(dp) != len(paths):
                            raise DatapointError(
                                f"{who}: datapoint {count} has {len(dp)} components, data_paths "
                                f"names {len(paths)}"
                            )
                        if columns is None:
                            columns = [
                                _H5Column(h5py, f, p, c, count, who) for p, c in zip(paths, dp)
                            ]
                        for col, comp in zip(columns, dp):
                            col.add(comp, count)
                        count += 1
                        bar.update(1)
                if columns is None:  # an empty flow: empty datasets
                    for p in paths:
                        f.create_dataset(p, shape=(0,), dtype=np.float64)
                else:
                    for col in columns:
                        col.finish()
                header = codec.encode_header("hdf5", count, data_paths=paths)
                f.attrs[HDF5_HEADER_ATTR] = np.void(header)
            _publish(tmp, path)
        except BaseException:
            _remove(tmp)
            raise

    @staticmethod
    def load(path: str, data_paths: Sequence[str], shuffle: bool = True) -> DataFlow:
        """An :class:`~dataflow.format.HDF5Data` over ``path``: datapoint ``i`` is row ``i`` of
        each of ``data_paths``; ``len`` is the number of rows.

        Args:
            data_paths: the datasets to zip, usually those given to ``save``.
            shuffle: a new random order each pass.
        """
        return HDF5Data(path, _check_data_paths(data_paths, "HDF5Serializer.load"), shuffle)


def _check_data_paths(data_paths: object, who: str) -> list[str]:
    if (
        isinstance(data_paths, (str, bytes))
        or not isinstance(data_paths, Sequence)
        or not data_paths
    ):
        raise DataFlowArgumentError(
            f"{who}: data_paths must be a non-empty list of dataset paths, got {data_paths!r}"
        )
    paths = list(data_paths)
    for p in paths:
        if not isinstance(p, str) or not p.strip("/"):
            raise DataFlowArgumentError(f"{who}: data_paths holds {p!r}, not a dataset path")
    if len(set(paths)) != len(paths):
        raise DataFlowArgumentError(f"{who}: data_paths has duplicates: {paths}")
    return paths

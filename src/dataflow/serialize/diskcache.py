"""DiskCacheSerializer: a flow in a ``diskcache`` directory (SQLite plus files for large values)."""

from __future__ import annotations

import logging
import os
import pickle
import shutil
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from .. import _state, codec
from .._lazy import require
from ..base import DataFlow, RNGDataFlow
from ..errors import DataFlowArgumentError, FormatError
from ._common import (
    _check_path,
    _check_write_frequency,
    _encode,
    _prepare,
    _progress,
    _publish,
    _temp_path,
)

__all__ = ["DiskCacheSerializer"]

logger = logging.getLogger(__name__)

#: The key of dataflow's header; datapoint ``i`` is under the int key ``i``, as tensorpack wrote.
HEADER_KEY = "__dataflow__"


def _diskcache(who: str) -> Any:
    return require("diskcache", "diskcache", who=who)


class _PickledValue(Exception):
    """Raised by the safe disk in place of unpickling a value."""


@lru_cache(maxsize=1)
def _safe_disk() -> type:
    """A ``diskcache.Disk`` that never unpickles a value and reads files only in its directory.

    diskcache stores ``bytes`` as they are, but any other value as a pickle; a directory from
    elsewhere could hold such values (or point a value's file outside the directory).
    """
    diskcache = _diskcache("DiskCacheSerializer")

    class SafeDisk(diskcache.Disk):  # type: ignore[name-defined]
        def fetch(self, mode: int, filename: str | None, value: Any, read: bool) -> Any:
            if mode == diskcache.core.MODE_PICKLE:
                raise _PickledValue
            if filename is not None and (
                os.path.isabs(filename) or os.pardir in filename.replace("\\", "/").split("/")
            ):
                raise FormatError(f"a value's file {filename!r} lies outside the cache directory")
            return super().fetch(mode, filename, value, read)

    return SafeDisk


def _open(path: str, allow_pickle: bool, who: str) -> Any:
    """The ``diskcache.Cache`` in ``path``, opened as ``diskcache.Index`` opens it (no eviction)."""
    diskcache = _diskcache(who)
    disk = diskcache.Disk if allow_pickle else _safe_disk()
    return diskcache.Cache(path, eviction_policy="none", disk=disk)


class _DiskCacheData(_state.PositionalPass, RNGDataFlow):
    """The datapoints of a diskcache directory, decoded; ``len`` is their number."""

    def __init__(
        self, path: str, count: int, allow_pickle: bool, shuffle: bool, tensorpack: bool = False
    ) -> None:
        self.path = path
        self._count = count
        self._allow_pickle = allow_pickle
        self._tensorpack = tensorpack  # pickled datapoints, no header
        self.shuffle = shuffle

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[Any]:
        n = self._count
        order = self.rng.permutation(n).tolist() if self.shuffle else range(n)
        # Opened for each pass (SQLite connections do not survive a fork; a pickled flow holds none).
        decode = (
            _loads_pickle
            if self._tensorpack
            else codec.decoder(allow_pickle=self._allow_pickle, copy=True)
        )
        cache = _open(self.path, self._allow_pickle, "DiskCacheSerializer.load")
        try:
            for pos in _state.pass_positions(self, n):
                i = order[pos]
                try:
                    value = cache.get(i, default=None, retry=True)
                except _PickledValue:
                    raise FormatError(
                        f"{self.path}: datapoint {i} is a pickle; unpickling runs code chosen by "
                        "the file's author, so it is refused. Pass allow_pickle=True if you "
                        "trust this directory."
                    ) from None
                except FormatError as e:
                    raise FormatError(f"{self.path}: datapoint {i}: {e}") from e
                except Exception as e:  # sqlite3 and OS errors on a damaged directory
                    raise FormatError(
                        f"{self.path}: datapoint {i} cannot be read: {type(e).__name__}: {e}"
                    ) from e
                if value is None:
                    raise FormatError(f"{self.path}: datapoint {i} is missing (key {i})")
                try:
                    dp = decode(value)
                except Exception as e:
                    raise FormatError(
                        f"{self.path}: datapoint {i} cannot be decoded: {type(e).__name__}: {e}"
                    ) from e
                yield dp
        finally:
            cache.close()

    _df_save = _state.PositionalPass._df_save  # its pass: ``pos`` above
    _df_strides = True  # ShardByRank: its pass visits _state.pass_positions


class DiskCacheSerializer:
    """Save a flow into a `diskcache <https://grantjenks.com/docs/diskcache/>`_ directory; load it.

    The layout is tensorpack's: datapoint ``i`` is the value of the int key ``i`` of a
    ``diskcache.Index`` (SQLite, with large values in files beside it), so any diskcache program
    can read it. What differs from tensorpack: values are the datapoints encoded with
    :mod:`dataflow.codec`, not pickles (diskcache stores ``bytes`` as they are, so loading runs no
    code from the directory); a header under the key ``"__dataflow__"`` holds the format version,
    codec and count; the directory is written under a temporary name and renamed when complete.
    Needs ``diskcache`` (``pip install 'pydataflow[diskcache]'``).

    Example::

        DiskCacheSerializer.save(my_df, "output.diskcache")
        new_df = DiskCacheSerializer.load("output.diskcache", shuffle=True)
    """

    @staticmethod
    def save(df: DataFlow, path: str, write_frequency: int = 5000) -> None:
        """Write one pass of ``df`` into the directory ``path``.

        Args:
            df: the flow to save (one full pass is written; it must be finite).
            path: the directory to create (its parent directories too, as tensorpack did). An
                existing empty directory is accepted; a file or a non-empty directory is refused.
            write_frequency: commit a transaction every this many datapoints (tensorpack's
                argument, which it ignored). Larger is faster; a failed write leaves nothing anyway.

        Raises:
            DataFlowArgumentError: a bad argument, ``path`` is a file or a non-empty directory.
            DatapointError: a datapoint holds a value the codec cannot store (names its index).
        """
        who = "DiskCacheSerializer.save"
        _diskcache("DiskCacheSerializer")
        path = _check_path(path, who)
        write_frequency = _check_write_frequency(write_frequency, who)
        if os.path.isdir(path):
            if os.listdir(path):
                raise DataFlowArgumentError(
                    f"{who}: the directory {path!r} exists and is not empty"
                )
        elif os.path.lexists(path):
            raise DataFlowArgumentError(f"{who}: {path!r} exists and is not a directory")
        parent = os.path.dirname(os.path.abspath(path))
        try:
            os.makedirs(parent, exist_ok=True)
        except OSError as e:
            raise DataFlowArgumentError(
                f"{who}: cannot create the directory {parent!r}: {e}"
            ) from e
        df, size = _prepare(df, who)

        tmp = _temp_path(path)
        cache = _open(tmp, False, who)
        try:
            count = 0
            with _progress(size, f"DiskCacheSerializer {os.path.basename(path)}") as bar:
                done = False
                it = iter(df)
                while not done:
                    with cache.transact(retry=True):
                        for _ in range(write_frequency):
                            dp = next(it, _END)
                            if dp is _END:
                                done = True
                                break
                            cache.set(count, _encode(dp, count, who), retry=True)
                            count += 1
                            bar.update(1)
            cache.set(HEADER_KEY, codec.encode_header("diskcache", count), retry=True)
            cache.close()
            _publish(tmp, path)
        except BaseException:
            cache.close()
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        logger.info("%s: wrote %d datapoints to %s", who, count, path)

    @staticmethod
    def load(path: str, shuffle: bool = True, *, allow_pickle: bool = False) -> DataFlow:
        """A flow of the datapoints saved in ``path``.

        ``len`` is the number of datapoints; each pass yields each once, in key (= write) order,
        or in a new random order if ``shuffle``. Decoding happens in the flow itself.

        Args:
            path: the directory written by ``save``.
            shuffle: a new random order each pass (tensorpack's default).
            allow_pickle: also read a directory written by tensorpack's DiskCacheSerializer
                (pickled datapoints, no header). Unpickling runs code chosen by the directory's
                author: only for trusted ones.

        Raises:
            DataFlowArgumentError: ``path`` does not exist or is not a directory.
            FormatError: not written by DiskCacheSerializer (or tensorpack's, without
                ``allow_pickle``), naming it; a damaged datapoint raises it when read.
        """
        who = "DiskCacheSerializer.load"
        _diskcache("DiskCacheSerializer")
        path = _check_path(path, who)
        if not os.path.exists(path):
            raise DataFlowArgumentError(f"{who}: {path!r} does not exist")
        if not os.path.isdir(path):
            raise DataFlowArgumentError(
                f"{who}: {path!r} is not a directory (a diskcache is a directory)"
            )
        if not os.path.isfile(os.path.join(path, "cache.db")):
            raise FormatError(f"{path}: not a diskcache directory (no cache.db)")
        try:
            cache = _open(path, allow_pickle, who)
        except Exception as e:  # sqlite3.DatabaseError on a damaged cache.db, ...
            raise FormatError(f"{path}: not a readable diskcache: {type(e).__name__}: {e}") from e
        try:
            try:
                header = cache.get(HEADER_KEY, default=None, retry=True)
                entries = len(cache)
            except _PickledValue:
                raise FormatError(
                    f"{path}: its dataflow header is a pickle (an altered file)"
                ) from None
            except Exception as e:
                raise FormatError(
                    f"{path}: not a readable diskcache: {type(e).__name__}: {e}"
                ) from e
        finally:
            cache.close()
        shuffle = bool(shuffle)
        if header is not None:
            if not isinstance(header, bytes):
                raise FormatError(f"{path}: corrupt dataflow header")
            count = codec.decode_header(header, "diskcache", path)["count"]
            if entries != count + 1:
                raise FormatError(
                    f"{path}: holds {entries - 1} entries besides its header, which says {count} "
                    "(an altered directory)"
                )
            return _DiskCacheData(path, count, allow_pickle, shuffle)
        if not allow_pickle:
            raise FormatError(
                f"{path}: not written by DiskCacheSerializer (no dataflow header). If tensorpack "
                "wrote it, its datapoints are pickles: unpickling runs code chosen by the "
                "directory's author, so pass allow_pickle=True only if you trust it."
            )
        return _DiskCacheData(path, entries, True, shuffle, tensorpack=True)


_END = object()


def _loads_pickle(value: Any) -> Any:
    """tensorpack's values: pickled datapoints (bytes); diskcache unpickled other types itself."""
    return pickle.loads(value) if isinstance(value, (bytes, bytearray, memoryview)) else value

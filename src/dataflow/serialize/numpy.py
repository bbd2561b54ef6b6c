"""NumpySerializer: a whole flow in one ``.npz`` file."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from .. import _state, codec
from ..base import DataFlow, RNGDataFlow
from ..errors import DataFlowArgumentError, FormatError
from ..raw import DataFromList
from ._common import (
    _check_parent,
    _check_path,
    _encode,
    _prepare,
    _progress,
    _publish,
    _remove,
    _temp_path,
)

__all__ = ["NumpySerializer"]


class _NpzData(_state.PositionalPass, RNGDataFlow):
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
        for pos in _state.pass_positions(self, n):
            i = order[pos]
            try:
                dp = decode(buf[offsets[i] : offsets[i + 1]])
            except FormatError as e:
                raise FormatError(f"{self.path}: datapoint {i} cannot be decoded: {e}") from e
            yield dp

    _df_save = _state.PositionalPass._df_save  # its pass: ``pos`` above
    _df_strides = True  # ShardByRank: its pass visits _state.pass_positions


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

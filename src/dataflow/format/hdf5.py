"""HDF5Data: zip datasets of an HDF5 file, read lazily a block at a time; the attributes by which
HDF5Serializer's files say how to restore each component."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from .. import _state, codec
from .._checks import check_flag, check_path
from .._lazy import require
from ..base import RNGDataFlow
from ..errors import DataFlowArgumentError, FormatError

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
        self.filename = check_path(filename, who, "filename")
        if isinstance(data_paths, str) or not isinstance(data_paths, Sequence) or not data_paths:
            raise DataFlowArgumentError(
                f"{who}: data_paths must be a non-empty list of dataset paths, got {data_paths!r}"
            )
        for p in data_paths:
            if not isinstance(p, str):
                raise DataFlowArgumentError(f"{who}: data_paths holds a {type(p).__name__}: {p!r}")
        self.data_paths = list(data_paths)
        self.shuffle = check_flag(shuffle, who, "shuffle")
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
        # A resumed pass's first block begins at the saved position: no row before it is read;
        # under a ShardByRank, the positions are this rank's only (rows of others are not read).
        positions = self._df_positions = _state.pass_positions(self, n)
        step = positions.step
        for first in range(0, len(positions), block):
            last = min(first + block, len(positions))
            start, stop = positions[first], positions[last - 1] + 1
            if order is None:
                sel: Any = slice(start, stop, step)
                pos = None
            else:
                idx = order[start:stop:step]
                sorted_idx = np.sort(idx)
                sel = sorted_idx
                pos = np.searchsorted(sorted_idx, idx).tolist()
            columns = []
            for p, dset, conv in zip(self.data_paths, dsets, convs):
                rows: Any
                try:
                    if dset.size == 0:  # rows without elements: HDF5 cannot select them
                        rows = np.empty((last - first, *dset.shape[1:]), dset.dtype)
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
                out = list(map(list, zip(*columns)))
            else:
                out = [[col[i] for col in columns] for i in pos]
            self._df_block_end = last
            # ``yield from`` a list: the position is read off its iterator (no per-row cost).
            yield from out

    _df_block_end = 0  # how many of the pass's positions the blocks read so far cover
    _df_positions = range(0)

    def _df_save(self) -> dict:
        live_ref = self.__dict__.get("_df_live")
        it = live_ref() if live_ref is not None else None
        left = getattr(it, "gi_yieldfrom", None)
        done = self._df_block_end - (_state.remaining(left) if left is not None else 0)
        positions = self._df_positions
        return {"pos": positions.start + done * positions.step, "len": len(self)}

    _df_strides = True  # ShardByRank: its pass visits _state.pass_positions

    def _df_load(self, state: dict) -> None:
        self._df_start = int(state["pos"])

    def _df_check(self, node: dict) -> str | None:
        return _state.check_len(self, node)


def _h5_is_str(dset: Any) -> bool:
    """Whether an h5py dataset holds variable-length strings."""
    h5py = require("h5py", "hdf5")
    info = h5py.check_string_dtype(dset.dtype)
    return info is not None and info.length is None

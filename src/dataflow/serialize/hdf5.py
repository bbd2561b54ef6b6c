"""HDF5Serializer: one HDF5 dataset per component, rows written in blocks."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import codec
from .._lazy import require
from ..base import DataFlow
from ..errors import DataFlowArgumentError, DatapointError
from ..format import HDF5_DTYPE_ATTR, HDF5_HEADER_ATTR, HDF5_KIND_ATTR, HDF5Data
from ._common import _check_parent, _check_path, _prepare, _progress, _publish, _remove, _temp_path

__all__ = ["HDF5Serializer"]

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

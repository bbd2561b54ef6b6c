"""dataflow.serialize.hdf5: HDF5Serializer keeps every component's type, writes in bounded blocks,
reads lazily and refuses datapoints that do not fit one dataset per component."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import dataflow.serialize.hdf5 as ser_hdf5
from dataflow.errors import (
    DataFlowArgumentError,
    DatapointError,
)
from dataflow.raw import DataFromList
from dataflow.serialize import (
    HDF5Serializer,
)
from test_codec import assert_same
from test_serialize import (
    HDF5_PATHS,
    by_index,
    hdf5_flow,
)


def test_hdf5_round_trip_keeps_values_dtypes_shapes_and_count(tmp_path: Path):
    src = hdf5_flow(300)
    expected = list(src)
    path = str(tmp_path / "data.h5")
    HDF5Serializer.save(src, path, HDF5_PATHS)
    for shuffle in (False, True):
        ds = HDF5Serializer.load(path, HDF5_PATHS, shuffle=shuffle)
        assert len(ds) == 300
        got = list(ds)
        assert len(got) == 300
        if shuffle:
            assert [dp[0] for dp in got] != list(range(300))
            got = by_index(got)
        assert_same(expected, got)


def test_hdf5_writes_in_bounded_blocks_and_reads_lazily(tmp_path: Path, monkeypatch):
    import dataflow.format.hdf5 as fmt

    monkeypatch.setattr(ser_hdf5, "_H5_CHUNK_BYTES", 1024)
    monkeypatch.setattr(fmt, "_HDF5_BLOCK_BYTES", 512)
    rows = [[i, np.full(16, i, np.float64)] for i in range(1000)]
    path = str(tmp_path / "big.h5")
    HDF5Serializer.save(DataFromList(rows, shuffle=False), path, ["y", "x"])
    ds = HDF5Serializer.load(path, ["y", "x"], shuffle=True)
    ds.reset_state()
    dsets, _, block = ds._readers()
    assert block < 10  # a few rows at a time, never whole datasets
    got = by_index(list(ds))
    assert_same(rows, got)


def test_hdf5_refuses_inconsistent_datapoints(tmp_path: Path):
    path = str(tmp_path / "x.h5")
    ragged = DataFromList([[np.zeros((2, 3))], [np.zeros((2, 4))]], shuffle=False)
    with pytest.raises(DatapointError, match=r"datapoint 1, component 'a'.*\(2, 4\).*\(2, 3\)"):
        HDF5Serializer.save(ragged, path, ["a"])
    mixed = DataFromList([[1, "a"], [2, 3]], shuffle=False)
    with pytest.raises(DatapointError, match="datapoint 1, component 'b'"):
        HDF5Serializer.save(mixed, path, ["a", "b"])
    with pytest.raises(DatapointError, match="LMDBSerializer"):
        HDF5Serializer.save(DataFromList([[[1, 2]]], shuffle=False), path, ["a"])
    with pytest.raises(DatapointError, match="2 components"):
        HDF5Serializer.save(DataFromList([[1, 2]], shuffle=False), path, ["a"])
    with pytest.raises(DataFlowArgumentError, match="duplicates"):
        HDF5Serializer.save(DataFromList([[1, 2]], shuffle=False), path, ["a", "a"])
    assert os.listdir(tmp_path) == []  # failed writes leave nothing

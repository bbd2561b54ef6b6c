"""dataflow.format.hdf5: HDF5Data over plain h5py files, lazily, its errors, and the file opened in
reset_state surviving a fork."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from dataflow.errors import DataFlowArgumentError, FormatError
from dataflow.format import HDF5Data
from flows import run_in_child
from test_format import first_components_in_child


def test_hdf5data_reads_a_plain_h5py_file_lazily(tmp_path: Path):
    path = str(tmp_path / "plain.h5")
    with h5py.File(path, "w") as f:  # as tensorpack's HDF5Serializer (or any tool) writes
        f["images"] = np.arange(50 * 6, dtype=np.uint8).reshape(50, 2, 3)
        f["labels"] = np.arange(50, dtype=np.int32)
        f.create_dataset("names", data=[f"n{i}" for i in range(50)], dtype=h5py.string_dtype())
    ds = HDF5Data(path, ["images", "labels", "names"], shuffle=False)
    assert len(ds) == 50
    out = list(ds)
    assert len(out) == 50
    assert np.array_equal(out[7][0], np.arange(42, 48, dtype=np.uint8).reshape(2, 3))
    assert out[7][1] == 7 and out[7][1].dtype == np.int32 and out[7][2] == "n7"
    shuffled = list(HDF5Data(path, ["labels"], shuffle=True))
    assert [int(dp[0]) for dp in shuffled] != list(range(50))
    assert sorted(int(dp[0]) for dp in shuffled) == list(range(50))
    assert ds._file is not None and HDF5Data(path, ["labels"])._file is None


def test_hdf5data_errors(tmp_path: Path):
    path = str(tmp_path / "x.h5")
    with h5py.File(path, "w") as f:
        f["a"] = np.zeros(5)
        f["b"] = np.zeros(6)
        f["s"] = 1.0
    with pytest.raises(DataFlowArgumentError, match="no dataset 'c'"):
        HDF5Data(path, ["c"])
    with pytest.raises(FormatError, match="different lengths"):
        HDF5Data(path, ["a", "b"])
    with pytest.raises(DataFlowArgumentError, match="scalar"):
        HDF5Data(path, ["s"])
    with pytest.raises(DataFlowArgumentError, match="data_paths"):
        HDF5Data(path, "a")
    garbage = tmp_path / "g.h5"
    garbage.write_bytes(os.urandom(4000))
    with pytest.raises(FormatError, match="g.h5"):
        HDF5Data(str(garbage), ["a"])


@pytest.mark.timeout(60)
def test_hdf5data_reset_in_the_parent_works_in_a_forked_child(tmp_path: Path):
    path = str(tmp_path / "f.h5")
    with h5py.File(path, "w") as f:
        f["a"] = np.arange(30)
    ds = HDF5Data(path, ["a"], shuffle=False)
    expected = [int(dp[0]) for dp in ds]
    status, result = run_in_child(first_components_in_child, ds, method="fork", timeout=50)
    assert status == "ok", result
    assert [int(x) for x in result] == expected == list(range(30))

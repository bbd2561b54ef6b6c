"""dataflow._checks: the shared argument checks accept what they promise and name flow and argument
in the error otherwise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dataflow._checks import check_flag, check_path
from dataflow.errors import DataFlowArgumentError


def test_check_flag_takes_bools_numpy_bools_and_ints_and_names_a_bad_argument():
    assert check_flag(True, "X", "shuffle") is True
    assert check_flag(np.bool_(False), "X", "shuffle") is False
    assert check_flag(np.int64(1), "X", "shuffle") is True
    with pytest.raises(DataFlowArgumentError, match=r"^LMDBData: shuffle must be a bool, got str$"):
        check_flag("yes", "LMDBData", "shuffle")


def test_check_path_takes_str_bytes_and_pathlike_and_names_a_bad_argument(tmp_path: Path):
    assert check_path(tmp_path, "X", "filename") == str(tmp_path)

    class BytesPath:
        def __fspath__(self) -> bytes:
            return str(tmp_path).encode()

    assert check_path(BytesPath(), "X", "filename") == str(tmp_path)
    with pytest.raises(
        DataFlowArgumentError, match=r"^HDF5Data: filename must be a path, got int$"
    ):
        check_path(3, "HDF5Data", "filename")

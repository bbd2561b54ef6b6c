"""dataflow.serialize.numpy: NumpySerializer's file name, and tensorpack's pickled .npz only with
allow_pickle."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from dataflow.errors import (
    FormatError,
)
from dataflow.raw import DataFromList
from dataflow.serialize import (
    NumpySerializer,
)
from test_codec import assert_same


def test_numpy_serializer_writes_exactly_the_given_name(tmp_path: Path):
    path = tmp_path / "no_suffix"
    NumpySerializer.save(DataFromList([[1]], shuffle=False), str(path))
    assert os.listdir(tmp_path) == ["no_suffix"]


# -- NumPy ------------------------------------------------------------------------------------


def test_numpy_reads_tensorpack_npz_only_with_allow_pickle(tmp_path: Path):
    path = str(tmp_path / "tp.npz")
    dps = [[i, np.arange(i)] for i in range(5)]
    buffer = np.empty(len(dps), dtype=object)
    for i, dp in enumerate(dps):
        buffer[i] = dp
    np.savez_compressed(path, buffer=buffer)
    with pytest.raises(FormatError, match="tensorpack.*allow_pickle=True"):
        NumpySerializer.load(path)
    assert_same(dps, list(NumpySerializer.load(path, shuffle=False, allow_pickle=True)))

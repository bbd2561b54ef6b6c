"""dataflow.format.svmlight: SVMLightData yields dense rows and labels, shuffles, refuses a bad file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dataflow.errors import FormatError
from dataflow.format import SVMLightData


def test_svmlightdata_yields_dense_rows_and_labels(tmp_path: Path):
    from sklearn.datasets import dump_svmlight_file

    rng = np.random.default_rng(3)
    X = rng.random((20, 7)) * (rng.random((20, 7)) > 0.6)
    y = rng.integers(0, 3, 20).astype(np.float64)
    path = str(tmp_path / "data.svm")
    dump_svmlight_file(X, y, path)
    ds = SVMLightData(path, shuffle=False)
    assert len(ds) == 20
    out = list(ds)
    for i, (row, label) in enumerate(out):
        assert row.shape == (7,) and row.dtype == np.float64
        assert np.allclose(row, X[i]) and label == y[i]
    shuffled = list(SVMLightData(path, shuffle=True))
    assert sorted(float(dp[1]) for dp in shuffled) == sorted(y.tolist())
    bad = tmp_path / "bad.svm"
    bad.write_text("this is not: svmlight\n")
    with pytest.raises(FormatError, match="bad.svm"):
        SVMLightData(str(bad))

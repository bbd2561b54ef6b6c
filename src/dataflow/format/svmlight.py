"""SVMLightData: rows of an SVMlight / libsvm file, parsed with scikit-learn."""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np

from .. import _state
from .._checks import check_flag, check_path
from .._lazy import require
from ..base import RNGDataFlow
from ..errors import DataFlowArgumentError, FormatError


class SVMLightData(_state.PositionalPass, RNGDataFlow):
    """Read ``X, y`` from an SVMlight / libsvm file and yield ``[X_i, y_i]`` pairs.

    ``X_i`` is a dense float64 row (1-D array of the file's number of features), ``y_i`` a float64
    scalar. The file is parsed once at construction (with scikit-learn) and kept as a sparse matrix;
    rows are made dense one at a time (tensorpack densified the whole matrix up front). ``len`` is
    the number of rows; ``shuffle`` permutes them anew each pass.
    """

    def __init__(self, filename: str, shuffle: bool = True) -> None:
        """
        Args:
            filename: the input file.
            shuffle: yield the rows in a random order each pass.
        """
        who = "SVMLightData"
        filename = check_path(filename, who, "filename")
        self.shuffle = check_flag(shuffle, who, "shuffle")
        datasets = require("sklearn.datasets", None, who=who)
        if not os.path.exists(filename):
            raise DataFlowArgumentError(f"{who}: {filename!r} does not exist")
        try:
            X, y = datasets.load_svmlight_file(filename)
        except ValueError as e:
            raise FormatError(f"{filename}: not an SVMlight file ({e})") from e
        X = X.tocsr()
        self._indptr = X.indptr
        self._indices = X.indices
        self._values = X.data
        self._nfeatures = X.shape[1]
        self.y = y

    def __len__(self) -> int:
        return len(self.y)

    def __iter__(self) -> Iterator[list]:
        n = len(self.y)
        idxs = self.rng.permutation(n) if self.shuffle else np.arange(n)
        indptr, indices, values, y = self._indptr, self._indices, self._values, self.y
        order = idxs.tolist()
        for pos in _state.pass_positions(self, n):  # ``pos``: the saved position
            i = order[pos]
            row = np.zeros(self._nfeatures, dtype=np.float64)
            a, b = indptr[i], indptr[i + 1]
            row[indices[a:b]] = values[a:b]
            yield [row, y[i]]

    _df_save = _state.PositionalPass._df_save  # its pass: ``pos`` above
    _df_strides = True  # ShardByRank: its pass visits _state.pass_positions

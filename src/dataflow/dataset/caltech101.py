"""Caltech 101 Silhouettes (Marlin et al.), 28x28 version, split 1.

On-disk format: one MATLAB v5 file, ``caltech101_silhouettes_28_split1.mat``, holding

- ``train_data`` (4100 x 784), ``val_data`` (2264 x 784), ``test_data`` (2307 x 784): one
  silhouette per row, 784 = 28 x 28 binary pixels;
- ``train_labels``, ``val_labels``, ``test_labels``: one column of class numbers 1-101;
- ``classnames``: the 101 class names.

Rows are reshaped to 28x28 in C order exactly as tensorpack does, and class numbers shifted to
0-100. Reading needs scipy; without it the constructor raises an ImportError saying what to
install. The file is downloaded if missing (see :mod:`dataflow.dataset._download`; no checksum is
published for it).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from .. import _state
from ..base import RNGDataFlow
from ..errors import FormatError
from ._common import check_choice, load_mat
from ._download import DatasetSource, RemoteFile, ensure_files, register, resolve_dir

__all__ = ["Caltech101Silhouettes"]

SOURCE_URL = "https://people.cs.umass.edu/~marlin/data/"  # tensorpack's source
DATA_FILE = "caltech101_silhouettes_28_split1.mat"

register(
    DatasetSource(
        name="caltech101_silhouettes",
        subdir="caltech101_data",
        files=(RemoteFile(DATA_FILE, (SOURCE_URL + DATA_FILE,)),),
        description="Caltech 101 Silhouettes, 28x28, split 1 (.mat)",
        homepage="https://people.cs.umass.edu/~marlin/data.shtml",
    )
)


class Caltech101Silhouettes(_state.PositionalPass, RNGDataFlow):
    """Caltech 101 Silhouettes: datapoints ``[image, label]``.

    - ``image``: float32 array of shape (28, 28) with values 0 and 1 (the file's pixels);
    - ``label``: Python int in [0, 100] (the file's class number minus one).

    ``len`` is the size of the split: 4100 train, 2264 val, 2307 test in the published file. One
    pass yields each silhouette once, shuffled (a new order each pass, from ``self.rng``) or in
    file order. Needs scipy. Default folder ``$DATAFLOW_DATASET/caltech101_data``.
    """

    _DIR_NAME = "caltech101_data"

    def __init__(
        self, name: str, shuffle: bool = True, dir: str | os.PathLike[str] | None = None
    ) -> None:
        """
        Args:
            name: ``'train'``, ``'test'`` or ``'val'``.
            shuffle: shuffle every pass.
            dir: the folder holding the .mat file (downloaded there if missing).
        """
        who = type(self).__name__
        self.name = check_choice(name, ("train", "test", "val"), who, "name")
        self.shuffle = bool(shuffle)
        self.dir = resolve_dir(dir, self._DIR_NAME, who)
        path = os.path.join(self.dir, DATA_FILE)
        if not os.path.isfile(path):
            ensure_files("caltech101_silhouettes", self.dir, [DATA_FILE])
        data_key, label_key = f"{name}_data", f"{name}_labels"
        self.data = load_mat(path, (data_key, label_key), who)
        images: Any = np.asarray(self.data[data_key])
        labels: Any = np.asarray(self.data[label_key]).ravel()
        if images.ndim != 2 or images.shape[1] != 28 * 28:
            raise FormatError(
                f"{who}: {path}: {data_key} must have 784 columns, got {images.shape}"
            )
        if labels.shape[0] != images.shape[0]:
            raise FormatError(
                f"{who}: {path}: {images.shape[0]} rows in {data_key} but {labels.shape[0]} labels"
            )
        if labels.size and (labels.min() < 1 or labels.max() > 101):
            raise FormatError(f"{who}: {path}: {label_key} must be class numbers 1-101")
        self.images = images.reshape((-1, 28, 28)).astype(np.float32)
        self.labels = labels.astype(np.int64) - 1

    def __len__(self) -> int:
        return self.images.shape[0]

    _df_save = _state.PositionalPass._df_save  # its pass: ``pos`` below
    _df_strides = True  # ShardByRank: its pass visits _state.pass_positions

    def __iter__(self) -> Iterator[list[Any]]:
        idxs = np.arange(self.images.shape[0])
        if self.shuffle:
            self.rng.shuffle(idxs)
        for pos in _state.pass_positions(self, len(idxs)):  # ``pos``: saved
            k = idxs[pos]
            yield [self.images[k].copy(), int(self.labels[k])]

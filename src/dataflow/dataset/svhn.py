"""SVHN (Street View House Numbers), cropped-digit format, read from the published .mat files.

On-disk format (Netzer et al., format 2): ``train_32x32.mat`` (73257 digits), ``test_32x32.mat``
(26032) and ``extra_32x32.mat`` (531131), MATLAB v5 files holding

- ``X``: uint8 array of shape (32, 32, 3, N), the N RGB images last-axis-stacked;
- ``y``: uint8 array of shape (N, 1), the digit, with **10 standing for digit 0**.

The reader maps label 10 to 0, so labels are the digits 0-9. Reading needs scipy
(``scipy.io.loadmat``); without it the constructor raises an ImportError saying what to install.
Missing files are downloaded (see :mod:`dataflow.dataset._download`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import numpy as np

from .. import _state
from ..base import RNGDataFlow
from ..errors import DataFlowArgumentError, FormatError
from ._common import check_choice, load_mat
from ._download import DatasetSource, RemoteFile, ensure_files, register, resolve_dir

__all__ = ["SVHNDigit"]

SVHN_URL = "http://ufldl.stanford.edu/housenumbers/"  # tensorpack's source
SVHN_FILES = {  # published md5 (also torchvision's)
    "train_32x32.mat": "e26dedcc434d2e4c54c9b2d4a06d8373",
    "test_32x32.mat": "eb5a983be6a315427106f1b164d9cef3",
    "extra_32x32.mat": "a93ce644f1a588dc4d68dda5feec44a7",
}

register(
    DatasetSource(
        name="svhn",
        subdir="svhn_data",
        files=tuple(RemoteFile(f, (SVHN_URL + f,), md5=md5) for f, md5 in SVHN_FILES.items()),
        description="SVHN cropped digits (.mat; train, test and the 1.3 GB extra split)",
        homepage="http://ufldl.stanford.edu/housenumbers/",
    )
)

_SPLITS = ("train", "test", "extra")


class SVHNDigit(_state.PositionalPass, RNGDataFlow):
    """The SVHN cropped-digit dataset: datapoints ``[image, label]``.

    - ``image``: uint8 array of shape (32, 32, 3), RGB, in [0, 255];
    - ``label``: ``numpy.uint8`` scalar, the digit 0-9 (the file's 10 is mapped to 0).

    ``len`` is the number of digits in the split. One pass yields each once, shuffled (a new order
    each pass, from ``self.rng``) or in file order. Loaded splits are cached for the process,
    keyed by the file (so a second reader of the same file, e.g. :meth:`get_per_pixel_mean`, does
    not load it again); each datapoint's image is a fresh array.

    Needs scipy. Default folder ``$DATAFLOW_DATASET/svhn_data``; missing files are downloaded.
    """

    _Cache: ClassVar[dict[tuple[str, int, int], tuple[np.ndarray, np.ndarray]]] = {}

    def __init__(
        self, name: str, data_dir: str | os.PathLike[str] | None = None, shuffle: bool = True
    ) -> None:
        """
        Args:
            name: ``'train'``, ``'test'`` or ``'extra'``.
            data_dir: the folder holding ``{train,test,extra}_32x32.mat``.
            shuffle: shuffle every pass.
        """
        who = type(self).__name__
        self.name = check_choice(name, _SPLITS, who, "name")
        self.shuffle = bool(shuffle)
        data_dir = resolve_dir(data_dir, "svhn_data", who, "data_dir")
        filename = os.path.join(data_dir, name + "_32x32.mat")
        if not os.path.isfile(filename):
            ensure_files("svhn", data_dir, [os.path.basename(filename)])
        self.X, self.Y = self._load(filename, who)

    @classmethod
    def _load(cls, filename: str, who: str) -> tuple[np.ndarray, np.ndarray]:
        stat = os.stat(filename)
        key = (os.path.realpath(filename), stat.st_size, stat.st_mtime_ns)
        cached = cls._Cache.get(key)
        if cached is not None:
            return cached
        data = load_mat(filename, ("X", "y"), who)
        images, labels = data["X"], data["y"]
        if images.ndim != 4 or images.shape[:3] != (32, 32, 3) or images.dtype != np.uint8:
            raise FormatError(
                f"{who}: {filename}: X must be a uint8 array of shape (32, 32, 3, N), got "
                f"{images.dtype} {images.shape}"
            )
        labels = np.asarray(labels).reshape(-1)
        if labels.shape[0] != images.shape[3]:
            raise FormatError(
                f"{who}: {filename} holds {images.shape[3]} images but {labels.shape[0]} labels"
            )
        if labels.size and (labels.min() < 0 or labels.max() > 10):
            raise FormatError(f"{who}: {filename}: labels must be in [0, 10]")
        labels = labels.astype(np.uint8)
        labels[labels == 10] = 0
        # A view, not a copy (the extra split is 1.6 GB); datapoints copy their image.
        result = (images.transpose(3, 0, 1, 2), labels)
        cls._Cache[key] = result
        return result

    def __len__(self) -> int:
        return self.X.shape[0]

    _df_save = _state.PositionalPass._df_save  # its pass: ``pos`` below
    _df_strides = True  # ShardByRank: its pass visits _state.pass_positions

    def __iter__(self) -> Iterator[list[Any]]:
        idxs = np.arange(self.X.shape[0])
        if self.shuffle:
            self.rng.shuffle(idxs)
        for pos in _state.pass_positions(self, len(idxs)):  # ``pos``: saved
            k = idxs[pos]
            yield [self.X[k].copy(), self.Y[k]]

    @staticmethod
    def get_per_pixel_mean(
        names: Sequence[str] = ("train", "test", "extra"),
        data_dir: str | os.PathLike[str] | None = None,
    ) -> np.ndarray:
        """The mean image over the splits ``names``: float64 array of shape (32, 32, 3).

        ``data_dir`` (our addition) is the folder, as in the constructor.
        """
        names = [check_choice(n, _SPLITS, "SVHNDigit.get_per_pixel_mean", "names") for n in names]
        if not names:
            raise DataFlowArgumentError("SVHNDigit.get_per_pixel_mean: names is empty")
        total = np.zeros((32, 32, 3), np.float64)
        count = 0
        for name in names:
            images = SVHNDigit(name, data_dir, shuffle=False).X
            total += images.sum(axis=0, dtype=np.float64)
            count += len(images)
        return total / count

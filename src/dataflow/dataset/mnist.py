"""MNIST and Fashion-MNIST, read from the published IDX files.

On-disk format (IDX, as published by LeCun et al. and reused unchanged by Fashion-MNIST): four
gzip-compressed files per dataset, ``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``,
``t10k-images-idx3-ubyte.gz`` and ``t10k-labels-idx1-ubyte.gz``. Each decompresses to

- a 4-byte magic number, big-endian: two zero bytes, a type code (``0x08`` = unsigned byte; ``0x09``
  int8, ``0x0B`` int16, ``0x0C`` int32, ``0x0D`` float32, ``0x0E`` float64 are also defined) and the
  number of dimensions. Image files therefore start with ``0x00000803`` (2051: ubyte, 3 dims) and
  label files with ``0x00000801`` (2049: ubyte, 1 dim);
- one big-endian uint32 per dimension: ``count, rows, cols`` for images, ``count`` for labels;
- the values in C order, big-endian: pixels 0 (background) to 255 (ink), labels 0 to 9.

The reader checks the magic number, the dimensions and that the data is exactly as long as the
header says; anything else is a :class:`~dataflow.errors.FormatError` naming the file. An
uncompressed copy (the same name without ``.gz``) is read when the ``.gz`` file is absent. Missing
files are downloaded (see :mod:`dataflow.dataset._download`).
"""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from .. import _state
from ..base import RNGDataFlow
from ..errors import FormatError
from ._common import check_choice
from ._download import DatasetSource, RemoteFile, ensure_files, register, resolve_dir

__all__ = ["Mnist", "FashionMnist"]

MNIST_URL = "http://yann.lecun.com/exdb/mnist/"  # tensorpack's source
MNIST_MIRROR = "https://ossci-datasets.s3.amazonaws.com/mnist/"  # torchvision's mirror
FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"

TRAIN_IMAGES = "train-images-idx3-ubyte.gz"
TRAIN_LABELS = "train-labels-idx1-ubyte.gz"
TEST_IMAGES = "t10k-images-idx3-ubyte.gz"
TEST_LABELS = "t10k-labels-idx1-ubyte.gz"

# Published md5 checksums and sizes in bytes.
MNIST_FILES = {
    TRAIN_IMAGES: ("f68b3c2dcbeaaa9fbdd348bbdeb94873", 9912422),
    TRAIN_LABELS: ("d53e105ee54ea40749a09fcbcd1e9432", 28881),
    TEST_IMAGES: ("9fb629c4189551a2d022fa330f9573f3", 1648877),
    TEST_LABELS: ("ec29112dd5afa0611ce80d1b7f02629c", 4542),
}
FASHION_MNIST_FILES = {
    TRAIN_IMAGES: ("8d4fb7e6c68d591d4c3dfef9ec88bf0d", 26421880),
    TRAIN_LABELS: ("25c81989df183df01b3e8a0aad5dffbe", 29515),
    TEST_IMAGES: ("bef4ecab320f06d8554ea6380940ec79", 4422102),
    TEST_LABELS: ("bb300cfdad3c16e7a12a480ee83cd310", 5148),
}

register(
    DatasetSource(
        name="mnist",
        subdir="mnist_data",
        files=tuple(
            RemoteFile(f, (MNIST_URL + f, MNIST_MIRROR + f), size=size, md5=md5)
            for f, (md5, size) in MNIST_FILES.items()
        ),
        description="MNIST handwritten digits (idx, 60k train / 10k test, 28x28)",
        homepage="http://yann.lecun.com/exdb/mnist/",
    )
)
register(
    DatasetSource(
        name="fashion_mnist",
        subdir="fashion_mnist_data",
        files=tuple(
            RemoteFile(f, (FASHION_MNIST_URL + f,), size=size, md5=md5)
            for f, (md5, size) in FASHION_MNIST_FILES.items()
        ),
        description="Fashion-MNIST clothing images (idx, 60k train / 10k test, 28x28)",
        homepage="https://github.com/zalandoresearch/fashion-mnist",
    )
)

_IDX_TYPES: dict[int, np.dtype[Any]] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str, ndim: int | None = None) -> np.ndarray:
    """Read an IDX file (gzip-compressed if its name ends in ``.gz``) into a numpy array.

    ``ndim``, if given, is the number of dimensions the file must have (3 for images, 1 for
    labels). Raises FormatError naming the file for a bad magic number or a truncated file.
    """
    opener: Any = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            content = f.read()
    except (OSError, EOFError, zlib.error) as e:  # a truncated or corrupt gzip stream
        raise FormatError(f"{path}: not a readable IDX file: {e}") from e
    if len(content) < 4 or content[0] != 0 or content[1] != 0 or content[2] not in _IDX_TYPES:
        raise FormatError(
            f"{path}: not an IDX file (magic number {content[:4].hex() or 'missing'}; "
            "expected 0000TTNN with a type code TT and NN dimensions, e.g. 00000803)"
        )
    dtype, dims = _IDX_TYPES[content[2]], content[3]
    if ndim is not None and dims != ndim:
        raise FormatError(
            f"{path}: IDX file with {dims} dimensions (magic number "
            f"{int.from_bytes(content[:4], 'big')}), expected {ndim}"
        )
    header = 4 + 4 * dims
    if len(content) < header:
        raise FormatError(f"{path}: truncated IDX header")
    shape = tuple(int(d) for d in np.frombuffer(content, ">u4", dims, 4))
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(content) - header != expected:
        raise FormatError(
            f"{path}: the header announces shape {shape} ({expected} bytes of data) but the "
            f"file holds {len(content) - header} bytes of data (truncated or corrupt)"
        )
    return np.frombuffer(content, dtype, offset=header).reshape(shape)


def _locate(directory: str, filename: str) -> str | None:
    for candidate in (filename, filename[: -len(".gz")]):
        path = os.path.join(directory, candidate)
        if os.path.isfile(path):
            return path
    return None


class Mnist(_state.PositionalPass, RNGDataFlow):
    """The MNIST handwritten digits: datapoints ``[image, label]``.

    - ``image``: float32 array of shape (28, 28), values in [0, 1] (pixel / 255; 0 is background).
    - ``label``: ``numpy.uint8`` scalar, the digit 0-9.

    ``len`` is the number of images in the split: 60000 for ``'train'``, 10000 for ``'test'`` in
    the published files. One pass yields each image once, in file order or, with ``shuffle``, in
    a new random order each pass drawn from ``self.rng`` (reproducible with
    :func:`dataflow.set_seed`). The whole split is held in memory; each datapoint's image is a
    fresh array, so modifying it in place does not change the dataset.

    The files are read from ``dir`` (default ``$DATAFLOW_DATASET/mnist_data``) and downloaded there
    if missing. The format is described in the module :mod:`dataflow.dataset.mnist`.
    """

    _DIR_NAME = "mnist_data"
    _SOURCE_NAME = "mnist"

    def __init__(
        self, train_or_test: str, shuffle: bool = True, dir: str | os.PathLike[str] | None = None
    ) -> None:
        """
        Args:
            train_or_test: ``'train'`` or ``'test'``.
            shuffle: shuffle the datapoints every pass.
            dir: the folder holding the four IDX files (downloaded there if missing).
        """
        who = type(self).__name__
        self.train_or_test = check_choice(train_or_test, ("train", "test"), who, "train_or_test")
        self.shuffle = bool(shuffle)
        self.dir = resolve_dir(dir, self._DIR_NAME, who)
        image_file, label_file = (
            (TRAIN_IMAGES, TRAIN_LABELS) if train_or_test == "train" else (TEST_IMAGES, TEST_LABELS)
        )
        paths = []
        for filename in (image_file, label_file):
            path = _locate(self.dir, filename)
            if path is None:
                ensure_files(self._SOURCE_NAME, self.dir, [filename])
                path = os.path.join(self.dir, filename)
            paths.append(path)
        images = read_idx(paths[0], ndim=3)
        labels = read_idx(paths[1], ndim=1)
        if images.dtype != np.uint8 or labels.dtype != np.uint8:
            raise FormatError(f"{who}: {paths[0]} and {paths[1]} must hold unsigned bytes")
        if images.shape[0] != labels.shape[0]:
            raise FormatError(
                f"{who}: {paths[0]} holds {images.shape[0]} images but {paths[1]} holds "
                f"{labels.shape[0]} labels"
            )
        # Stored as (N, rows, cols, 1) float32 and (N,) uint8, as tensorpack's attributes are.
        self.images = (images.astype(np.float32) / np.float32(255.0))[..., np.newaxis]
        self.labels = labels.copy()

    def __len__(self) -> int:
        return self.images.shape[0]

    _df_save = _state.PositionalPass._df_save  # its pass: ``pos`` below
    _df_strides = True  # ShardByRank: its pass visits _state.pass_positions

    def __iter__(self) -> Iterator[list[Any]]:
        idxs = np.arange(len(self.images))
        if self.shuffle:
            self.rng.shuffle(idxs)
        for pos in _state.pass_positions(self, len(idxs)):  # ``pos``: saved
            k = idxs[pos]
            yield [self.images[k, :, :, 0].copy(), self.labels[k]]


class FashionMnist(Mnist):
    """Fashion-MNIST (Zalando's clothing images), same interface and datapoints as :class:`Mnist`.

    The label is the class index 0-9; :meth:`get_label_names` gives the names. Default folder:
    ``$DATAFLOW_DATASET/fashion_mnist_data``.
    """

    _DIR_NAME = "fashion_mnist_data"
    _SOURCE_NAME = "fashion_mnist"

    def get_label_names(self) -> list[str]:
        """The name of each class, indexed by label."""
        return [
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ]

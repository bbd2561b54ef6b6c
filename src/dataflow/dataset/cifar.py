"""CIFAR-10 and CIFAR-100, read from the published "python version" batches.

On-disk format (Krizhevsky's ``cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz``): the
archives extract to a folder of Python *pickle* files, which is the dataset's own format:

- CIFAR-10, folder ``cifar-10-batches-py``: ``data_batch_1`` ... ``data_batch_5`` (training,
  10000 images each), ``test_batch`` (10000) and ``batches.meta``.
- CIFAR-100, folder ``cifar-100-python``: ``train`` (50000 images), ``test`` (10000) and ``meta``.

Each batch unpickles (they were written by Python 2; read with ``encoding="bytes"``) to a dict with
``b'data'``, a uint8 numpy array of shape (N, 3072) whose rows hold one 32x32 image as three
1024-byte planes (red, green, blue, each row-major), and the labels as a list of N ints:
``b'labels'`` (0-9) for CIFAR-10, ``b'fine_labels'`` (0-99) and ``b'coarse_labels'`` (0-19, the 20
superclasses) for CIFAR-100; plus ``b'batch_label'`` and ``b'filenames'``. ``batches.meta`` holds
``label_names``; ``meta`` holds ``fine_label_names`` and ``coarse_label_names``.

Safety: unpickling can run arbitrary code, so these files are read with a restricted unpickler that
only rebuilds what a CIFAR batch contains (dicts, lists, strings, numbers, numpy arrays and dtypes)
and refuses every other global with a :class:`~dataflow.errors.FormatError` naming the file. A
tampered file therefore cannot execute code when read. Missing folders are downloaded and
extracted (see :mod:`dataflow.dataset._download`).
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from .. import _state
from ..base import RNGDataFlow
from ..errors import DataFlowArgumentError, FormatError
from ._common import check_choice, shuffle_default
from ._download import DatasetSource, RemoteFile, ensure_files, register, resolve_dir

__all__ = ["CifarBase", "Cifar10", "Cifar100"]

# tensorpack's addresses and sizes; md5 as published with the data (also torchvision's).
DATA_URL_CIFAR_10 = ("http://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", 170498071)
DATA_URL_CIFAR_100 = ("http://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz", 169001437)
CIFAR_10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR_100_MD5 = "eb9058c3a382ffc7106e4002c42a8d85"

_FOLDERS = {10: "cifar-10-batches-py", 100: "cifar-100-python"}

for _classnum, (_url, _size), _md5 in (
    (10, DATA_URL_CIFAR_10, CIFAR_10_MD5),
    (100, DATA_URL_CIFAR_100, CIFAR_100_MD5),
):
    register(
        DatasetSource(
            name=f"cifar{_classnum}",
            subdir=f"cifar{_classnum}_data",
            files=(
                RemoteFile(
                    _url.rsplit("/", 1)[1],
                    (_url, _url.replace("http://", "https://")),
                    size=_size,
                    md5=_md5,
                    extracts_to=_FOLDERS[_classnum],
                ),
            ),
            description=f"CIFAR-{_classnum} 32x32 colour images (python pickle batches)",
            homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
        )
    )


# -- the restricted unpickler ----------------------------------------------------------------------

_SAMPLE = np.zeros(1, np.uint8)


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    # Python 3 writes bytes into protocol-2 pickles as _codecs.encode(text, "latin1").
    if encoding.lower().replace("-", "") not in ("latin1", "iso88591"):
        raise pickle.UnpicklingError(f"unexpected encoding {encoding!r} in a bytes object")
    return text.encode("latin1")


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
}
for _module in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _ALLOWED_GLOBALS[(_module, "_reconstruct")] = _SAMPLE.__reduce__()[0]
    _ALLOWED_GLOBALS[(_module, "scalar")] = np.uint8(0).__reduce__()[0]
for _module in ("numpy.core.numeric", "numpy._core.numeric"):
    _ALLOWED_GLOBALS[(_module, "_frombuffer")] = _SAMPLE.__reduce_ex__(5)[0]


class _CifarUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"it refers to {module}.{name}, which a CIFAR batch never contains; refusing to "
                "load it (unpickling it could execute code)"
            ) from None


def load_pickle_batch(path: str) -> dict[str, Any]:
    """Unpickle a CIFAR file safely; keys (and string values) come back as ``str``.

    Raises FormatError naming the file if it is not a dict of the expected kinds of values.
    """
    try:
        with open(path, "rb") as f:
            obj = _CifarUnpickler(f, encoding="bytes").load()
    except FileNotFoundError:
        raise FormatError(f"CIFAR file {path} does not exist") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as e:
        raise FormatError(f"{path} is not a CIFAR python batch: {e or type(e).__name__}") from e
    if not isinstance(obj, dict):
        raise FormatError(f"{path} is not a CIFAR python batch: it holds a {type(obj).__name__}")
    return {_text(k): v for k, v in obj.items()}


def _text(value: Any) -> Any:
    return value.decode("latin1") if isinstance(value, bytes) else value


def _read_batch(path: str, label_keys: Sequence[str]) -> tuple[np.ndarray, list[list[int]]]:
    batch = load_pickle_batch(path)
    missing = [k for k in ("data", *label_keys) if k not in batch]
    if missing:
        raise FormatError(f"{path} lacks the key(s) {missing}; it has {sorted(batch)}")
    data = batch["data"]
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2):
        raise FormatError(f"{path}: 'data' must be a 2-D uint8 array, got {_describe(data)}")
    if data.shape[1] != 3 * 32 * 32:
        raise FormatError(f"{path}: 'data' rows must hold 3072 bytes, got {data.shape[1]}")
    labels = []
    for key in label_keys:
        values = [int(v) for v in batch[key]]
        if len(values) != data.shape[0]:
            raise FormatError(f"{path}: {data.shape[0]} images but {len(values)} {key!r}")
        labels.append(values)
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"array of dtype {value.dtype} and shape {value.shape}"
    return type(value).__name__


def get_filenames(dir: str, cifar_classnum: int) -> tuple[list[str], list[str], str]:
    """The (train files, test files, meta file) paths of a CIFAR dataset folder."""
    folder = os.path.join(dir, _FOLDERS[cifar_classnum])
    if cifar_classnum == 10:
        train = [os.path.join(folder, f"data_batch_{i}") for i in range(1, 6)]
        return train, [os.path.join(folder, "test_batch")], os.path.join(folder, "batches.meta")
    return (
        [os.path.join(folder, "train")],
        [os.path.join(folder, "test")],
        os.path.join(folder, "meta"),
    )


class CifarBase(_state.PositionalPass, RNGDataFlow):
    """CIFAR-10 or CIFAR-100 (by ``cifar_classnum``); see :class:`Cifar10` and :class:`Cifar100`.

    Datapoints ``[image, label]``: ``image`` a uint8 array of shape (32, 32, 3), RGB, in [0, 255];
    ``label`` a Python int in [0, cifar_classnum). ``len`` is the number of images in the split
    (50000 for ``'train'``, 10000 for ``'test'`` in the published files). One pass yields each
    image once, shuffled (a new order each pass, from ``self.rng``) or in file order. The split is
    held in memory; each datapoint's image is a fresh array that may be modified freely.
    """

    def __init__(
        self,
        train_or_test: str,
        shuffle: bool | None = None,
        dir: str | os.PathLike[str] | None = None,
        cifar_classnum: int = 10,
    ) -> None:
        """
        Args:
            train_or_test: ``'train'`` or ``'test'``.
            shuffle: shuffle every pass; default: shuffle the training split only.
            dir: the folder holding the extracted ``cifar-10-batches-py`` or ``cifar-100-python``
                folder (default ``$DATAFLOW_DATASET/cifar{N}_data``); downloaded if missing.
            cifar_classnum: 10 or 100.
        """
        who = type(self).__name__
        if cifar_classnum not in (10, 100) or isinstance(cifar_classnum, bool):
            raise DataFlowArgumentError(
                f"{who}: cifar_classnum must be 10 or 100, got {cifar_classnum!r}"
            )
        self.cifar_classnum = int(cifar_classnum)
        self.train_or_test = check_choice(train_or_test, ("train", "test"), who, "train_or_test")
        self.shuffle = shuffle_default(shuffle, train_or_test)
        self.dir = resolve_dir(dir, f"cifar{self.cifar_classnum}_data", who)
        if not os.path.isdir(os.path.join(self.dir, _FOLDERS[self.cifar_classnum])):
            ensure_files(f"cifar{self.cifar_classnum}", self.dir)
        train_files, test_files, meta_file = get_filenames(self.dir, self.cifar_classnum)
        self.fs = train_files if train_or_test == "train" else test_files
        for f in self.fs:
            if not os.path.isfile(f):
                raise FormatError(f"{who}: the CIFAR file {f} is missing")
        self._meta_file = meta_file
        self._label_names = self._read_label_names(
            "fine_label_names" if self.cifar_classnum == 100 else "label_names"
        )
        self.images, labels = self._read_split(self.fs)
        self.labels = labels[0]
        self._extra_labels = labels[1:]

    def _label_keys(self) -> tuple[str, ...]:
        return ("labels",) if self.cifar_classnum == 10 else ("fine_labels",)

    def _read_split(self, files: Sequence[str]) -> tuple[np.ndarray, list[list[int]]]:
        keys = self._label_keys()
        images, labels = [], [[] for _ in keys]  # type: ignore[var-annotated]
        for f in files:
            batch_images, batch_labels = _read_batch(f, keys)
            for key, values in zip(keys, batch_labels):
                classes = 20 if key == "coarse_labels" else self.cifar_classnum
                bad = [v for v in values if not 0 <= v < classes]
                if bad:
                    raise FormatError(f"{f}: {key} holds {bad[0]}, outside [0, {classes})")
            images.append(batch_images)
            for acc, values in zip(labels, batch_labels):
                acc.extend(values)
        return np.concatenate(images) if len(images) > 1 else images[0], labels

    def _read_label_names(self, key: str) -> list[str]:
        meta = load_pickle_batch(self._meta_file)
        if key not in meta:
            raise FormatError(f"{self._meta_file} lacks the key {key!r}; it has {sorted(meta)}")
        return [str(_text(name)) for name in meta[key]]

    @property
    def data(self) -> list[list[Any]]:
        """tensorpack's attribute: the split as a list of ``[image, label]`` (images are views)."""
        return [[image, label] for image, label in zip(self.images, self.labels)]

    def __len__(self) -> int:
        return len(self.labels)

    _df_save = _state.PositionalPass._df_save  # its pass: ``pos`` below
    _df_strides = True  # ShardByRank: its pass visits _state.pass_positions

    def __iter__(self) -> Iterator[list[Any]]:
        idxs = np.arange(len(self.labels))
        if self.shuffle:
            self.rng.shuffle(idxs)
        extra = self._extra_labels
        for pos in _state.pass_positions(self, len(idxs)):  # ``pos``: saved
            k = idxs[pos]
            yield [self.images[k].copy(), self.labels[k], *(values[k] for values in extra)]

    def get_per_pixel_mean(self, names: Sequence[str] = ("train", "test")) -> np.ndarray:
        """The mean image over the splits ``names``: float32 array of shape (32, 32, 3)."""
        names = [check_choice(n, ("train", "test"), "get_per_pixel_mean", "names") for n in names]
        if not names:
            raise DataFlowArgumentError("get_per_pixel_mean: names must name at least one split")
        train_files, test_files, _ = get_filenames(self.dir, self.cifar_classnum)
        total = np.zeros((32, 32, 3), np.float64)
        count = 0
        for name in dict.fromkeys(names):
            if name == self.train_or_test:
                images = self.images
            else:
                images = self._read_split(train_files if name == "train" else test_files)[0]
            total += images.sum(axis=0, dtype=np.float64)
            count += len(images)
        return (total / count).astype(np.float32)

    def get_per_channel_mean(self, names: Sequence[str] = ("train", "test")) -> np.ndarray:
        """The mean of each channel over the splits ``names``: float32 array of shape (3,)."""
        return np.mean(self.get_per_pixel_mean(names), axis=(0, 1))

    def get_label_names(self) -> list[str]:
        """The name of each class, indexed by label (``label_names`` / ``fine_label_names``)."""
        return list(self._label_names)


class Cifar10(CifarBase):
    """CIFAR-10: datapoints ``[image, label]``, image uint8 (32, 32, 3) RGB in [0, 255], label an
    int in [0, 9]. 50000 training and 10000 test images; ``len`` is the split's size.

    Shuffled by default for ``'train'`` only. Default folder ``$DATAFLOW_DATASET/cifar10_data``
    (holding ``cifar-10-batches-py/``), downloaded if missing. Format: :mod:`dataflow.dataset.cifar`.
    """

    def __init__(
        self,
        train_or_test: str,
        shuffle: bool | None = None,
        dir: str | os.PathLike[str] | None = None,
    ) -> None:
        """
        Args:
            train_or_test: ``'train'`` or ``'test'``.
            shuffle: shuffle every pass; default: shuffle the training split only.
            dir: the folder holding ``cifar-10-batches-py/`` (downloaded there if missing).
        """
        super().__init__(train_or_test, shuffle, dir, 10)


class Cifar100(CifarBase):
    """CIFAR-100: datapoints ``[image, label]`` with the *fine* label, an int in [0, 99], as
    tensorpack yields them; image as in :class:`Cifar10`.

    With ``coarse_label=True`` (our addition) datapoints are ``[image, fine_label, coarse_label]``,
    the coarse label being the superclass in [0, 19]; :meth:`get_coarse_label_names` names them.
    Default folder ``$DATAFLOW_DATASET/cifar100_data`` (holding ``cifar-100-python/``).
    """

    def __init__(
        self,
        train_or_test: str,
        shuffle: bool | None = None,
        dir: str | os.PathLike[str] | None = None,
        *,
        coarse_label: bool = False,
    ) -> None:
        """
        Args:
            train_or_test: ``'train'`` or ``'test'``.
            shuffle: shuffle every pass; default: shuffle the training split only.
            dir: the folder holding ``cifar-100-python/`` (downloaded there if missing).
            coarse_label: also yield the coarse (superclass) label as a third component.
        """
        self.coarse_label = bool(coarse_label)
        super().__init__(train_or_test, shuffle, dir, 100)

    def _label_keys(self) -> tuple[str, ...]:
        return ("fine_labels", "coarse_labels") if self.coarse_label else ("fine_labels",)

    def get_coarse_label_names(self) -> list[str]:
        """The name of each of the 20 superclasses, indexed by coarse label."""
        return self._read_label_names("coarse_label_names")

"""ILSVRC12 (the 1000-class ImageNet subset) and Tiny ImageNet, read from image folders.

Images (not downloadable: ImageNet requires registration) are expected in the layout the official
tar files extract to, described in :class:`ILSVRC12`. The labels come from the metadata Caffe
published as ``caffe_ilsvrc12.tar.gz``, which is downloaded when missing and extracts to plain
text files (the ``meta_dir``):

- ``synsets.txt``: 1000 lines, the WordNet id of class ``i`` on line ``i`` (``n01440764``...);
- ``synset_words.txt``: the same order, each id followed by its human-readable names;
- ``train.txt``: ``<wnid>/<file>.JPEG <label>`` per training image;
- ``val.txt``: ``<file>.JPEG <label>`` per validation image;
- ``test.txt``: ``<file>.JPEG 0`` per test image (the labels are placeholders);
- ``imagenet_mean.binaryproto``: the mean training image, a Caffe ``BlobProto`` message (protobuf
  wire format: ``channels``, ``height``, ``width`` or a ``shape``, and packed float ``data``),
  read by :meth:`ILSVRCMeta.get_per_pixel_mean` without needing protobuf or Caffe.

Images are decoded with OpenCV (BGR, uint8); without it the readers that decode raise an
ImportError saying what to install. :class:`ILSVRC12Files` yields file names instead and needs
nothing beyond numpy.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from .. import _state
from ..base import RNGDataFlow
from ..errors import FormatError
from ._common import check_choice, check_dir, import_cv2, imread, shuffle_default
from ._download import DatasetSource, RemoteFile, ensure_files, register, resolve_dir

__all__ = ["ILSVRCMeta", "ILSVRC12", "ILSVRC12Files", "TinyImageNet"]

logger = logging.getLogger(__name__)

CAFFE_ILSVRC12_URL = ("http://dl.caffe.berkeleyvision.org/caffe_ilsvrc12.tar.gz", 17858008)
CAFFE_ILSVRC12_MIRROR = (
    "https://download.openmmlab.com/mmclassification/datasets/imagenet/meta/caffe_ilsvrc12.tar.gz"
)

register(
    DatasetSource(
        name="ilsvrc12_meta",
        subdir="ilsvrc_metadata",
        files=(
            RemoteFile(
                "caffe_ilsvrc12.tar.gz",
                (CAFFE_ILSVRC12_URL[0], CAFFE_ILSVRC12_MIRROR),
                size=CAFFE_ILSVRC12_URL[1],
                extracts_to="synsets.txt",
            ),
        ),
        description="ILSVRC12 label metadata from Caffe (synsets, train/val/test lists, mean)",
        homepage="https://github.com/BVLC/caffe/tree/master/data/ilsvrc12",
    )
)


# -- Caffe BlobProto, read from the protobuf wire format -------------------------------------------


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, value) of a protobuf message; length-delimited values as bytes."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        value: Any
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + length], pos + length
        elif wire == 5:
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if pos > len(buf):
            raise ValueError("truncated message")
        yield number, wire, value


def parse_blob_proto(buf: bytes) -> np.ndarray:
    """Decode a Caffe ``BlobProto`` (float data) into an array of its shape."""
    dims: dict[int, int] = {}
    shape: list[int] = []
    chunks: list[np.ndarray] = []
    for number, wire, value in _fields(buf):
        if number in (1, 2, 3, 4) and wire == 0:  # num, channels, height, width (legacy)
            dims[number] = value
        elif number == 5 and wire == 2:  # data, packed
            chunks.append(np.frombuffer(value, "<f4"))
        elif number == 5 and wire == 5:  # data, one value
            chunks.append(np.frombuffer(value, "<f4"))
        elif number == 7 and wire == 2:  # shape: BlobShape { repeated int64 dim = 1 [packed] }
            for n, w, v in _fields(value):
                if n == 1 and w == 0:
                    shape.append(v)
                elif n == 1 and w == 2:
                    pos = 0
                    while pos < len(v):
                        d, pos = _varint(v, pos)
                        shape.append(d)
    data = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    if not shape:
        shape = [dims.get(k, 1) for k in (1, 2, 3, 4)]
    if int(np.prod(shape)) != data.size:
        raise ValueError(f"shape {shape} does not match {data.size} values")
    return data.reshape(shape)


class ILSVRCMeta:
    """The ILSVRC12 metadata (class ids and names, image lists, mean image) in ``dir``.

    ``dir`` defaults to ``$DATAFLOW_DATASET/ilsvrc_metadata``; if ``synsets.txt`` is missing there,
    Caffe's ``caffe_ilsvrc12.tar.gz`` is downloaded and extracted into it. The files are described
    in the module :mod:`dataflow.dataset.ilsvrc`.
    """

    def __init__(self, dir: str | os.PathLike[str] | None = None) -> None:
        self.dir = resolve_dir(dir, "ilsvrc_metadata", "ILSVRCMeta")
        os.makedirs(self.dir, exist_ok=True)
        if not os.path.isfile(os.path.join(self.dir, "synsets.txt")):
            ensure_files("ilsvrc12_meta", self.dir)

    def _lines(self, filename: str) -> list[str]:
        path = os.path.join(self.dir, filename)
        if not os.path.isfile(path):
            raise FormatError(f"ILSVRCMeta: the metadata file {path} is missing")
        with open(path, encoding="utf-8") as f:
            return [line.strip() for line in f if line.strip()]

    def get_synset_words_1000(self) -> dict[int, str]:
        """``{class number: "wnid names..."}`` from ``synset_words.txt``."""
        return dict(enumerate(self._lines("synset_words.txt")))

    def get_synset_1000(self) -> dict[int, str]:
        """``{class number: wnid}`` from ``synsets.txt``."""
        return dict(enumerate(self._lines("synsets.txt")))

    def get_image_list(self, name: str, dir_structure: str = "original") -> list[tuple[str, int]]:
        """The ``(relative image path, label)`` pairs of split ``name`` (``'train'``, ``'val'`` or
        ``'test'``), in the list file's order.

        With ``dir_structure='train'`` the val/test paths are prefixed by the class's wnid folder
        (``n01440764/ILSVRC2012_val_00000293.JPEG``); train paths always have it.
        """
        check_choice(name, ("train", "val", "test"), "ILSVRCMeta.get_image_list", "name")
        check_choice(
            dir_structure, ("original", "train"), "ILSVRCMeta.get_image_list", "dir_structure"
        )
        add_label_to_fname = name != "train" and dir_structure != "original"
        synset = self.get_synset_1000() if add_label_to_fname else {}
        fname = os.path.join(self.dir, name + ".txt")
        ret = []
        for lineno, line in enumerate(self._lines(name + ".txt"), 1):
            parts = line.split()
            try:
                path, cls = parts[0], int(parts[1])
            except (IndexError, ValueError):
                raise FormatError(
                    f"{fname}:{lineno}: expected '<image> <label>', got {line!r}"
                ) from None
            if add_label_to_fname:
                if cls not in synset:
                    raise FormatError(f"{fname}:{lineno}: label {cls} is not in synsets.txt")
                path = os.path.join(synset[cls], path)
            ret.append((path, cls))
        if not ret:
            raise FormatError(f"{fname} lists no image")
        return ret

    def get_per_pixel_mean(self, size: Sequence[int] | None = None) -> np.ndarray:
        """The mean training image: float32 array (h, w, 3), BGR, in [0, 255].

        Args:
            size: ``(h, w)`` to resize it to (needs OpenCV); default: as stored, (256, 256).
        """
        path = os.path.join(self.dir, "imagenet_mean.binaryproto")
        try:
            with open(path, "rb") as f:
                arr = parse_blob_proto(f.read())
        except FileNotFoundError:
            raise FormatError(f"ILSVRCMeta: the metadata file {path} is missing") from None
        except ValueError as e:
            raise FormatError(f"{path} is not a Caffe BlobProto: {e}") from e
        arr = arr.reshape(arr.shape[-3:]) if arr.ndim >= 3 else arr
        if arr.ndim != 3 or arr.shape[0] != 3:
            raise FormatError(f"{path}: expected a 3-channel blob, got shape {arr.shape}")
        arr = np.transpose(arr.astype(np.float32), (1, 2, 0))
        if size is not None:
            cv2 = import_cv2("ILSVRCMeta.get_per_pixel_mean")
            h, w = (int(s) for s in size)
            arr = cv2.resize(arr, (w, h))
        return arr

    @staticmethod
    def guess_dir_structure(dir: str | os.PathLike[str]) -> str:
        """``'train'`` if ``dir`` holds wnid class folders (``n01440764/``...), else ``'original'``.

        Decided from the first entry (sorted, hidden ones skipped), as tensorpack does.
        """
        dir = os.fspath(dir)
        entries = sorted(e for e in os.listdir(dir) if not e.startswith("."))
        if not entries:
            raise FormatError(f"ILSVRC12: {dir} is empty")
        first = entries[0]
        structure = (
            "train"
            if first.startswith("n") and os.path.isdir(os.path.join(dir, first))
            else "original"
        )
        logger.info("ILSVRC12: assuming %s has the '%s' structure", dir, structure)
        return structure


class ILSVRC12Files(_state.PositionalPass, RNGDataFlow):
    """Like :class:`ILSVRC12`, but datapoints are ``[filename, label]`` instead of decoded images:
    ``filename`` the image's full path (str), ``label`` an int in [0, 999].

    Useful to decode elsewhere (in parallel workers, with another decoder). Same arguments, len and
    order as :class:`ILSVRC12`.
    """

    def __init__(
        self,
        dir: str | os.PathLike[str],
        name: str,
        meta_dir: str | os.PathLike[str] | None = None,
        shuffle: bool | None = None,
        dir_structure: str | None = None,
    ) -> None:
        """See :class:`ILSVRC12`."""
        who = type(self).__name__
        check_choice(name, ("train", "test", "val"), who, "name")
        if dir_structure is not None:
            check_choice(dir_structure, ("original", "train"), who, "dir_structure")
        dir = check_dir(os.path.expanduser(os.fspath(dir)), who)
        self.full_dir = check_dir(os.path.join(dir, name), who, "dir/name")
        self.name = name
        if meta_dir is not None:
            meta_dir = check_dir(os.path.expanduser(os.fspath(meta_dir)), who, "meta_dir")
        self.shuffle = shuffle_default(shuffle, name)
        if name == "train":
            dir_structure = "train"
        if dir_structure is None:
            dir_structure = ILSVRCMeta.guess_dir_structure(self.full_dir)
        self.dir_structure = dir_structure
        meta = ILSVRCMeta(meta_dir)
        self.imglist = meta.get_image_list(name, dir_structure)
        for fname, _ in self.imglist[:10]:
            path = os.path.join(self.full_dir, fname)
            if not os.path.isfile(path):
                raise FormatError(
                    f"{who}: {path}, listed in {os.path.join(meta.dir, name + '.txt')}, does not "
                    f"exist (with dir_structure={dir_structure!r})"
                )

    def __len__(self) -> int:
        return len(self.imglist)

    def _files(self) -> Iterator[tuple[int, str, int]]:
        """(position in the pass, path, label), from the saved position of a resumed pass."""
        idxs = np.arange(len(self.imglist))
        if self.shuffle:
            self.rng.shuffle(idxs)
        for pos in _state.pass_positions(self, len(idxs)):
            fname, label = self.imglist[idxs[pos]]
            yield pos, os.path.join(self.full_dir, fname), label

    _df_save = _state.PositionalPass._df_save  # its pass: ``pos`` below
    _df_strides = True  # ShardByRank: its pass visits _state.pass_positions

    def __iter__(self) -> Iterator[list[Any]]:
        for pos, fname, label in self._files():  # noqa: B007  # ``pos``: the saved position
            yield [fname, label]


class ILSVRC12(ILSVRC12Files):
    """The ILSVRC12 classification images: datapoints ``[image, label]``.

    - ``image``: uint8 array of shape (h, w, 3), BGR, as decoded by OpenCV (sizes vary);
    - ``label``: int in [0, 999], the class's line in ``synsets.txt`` of Caffe's metadata
      (:class:`ILSVRCMeta`). For ``'test'`` the labels are placeholders (0).

    ``len`` is the number of images the split's list file names (1281167 train, 50000 val,
    100000 test). One pass yields each image once, shuffled (default for ``'train'`` only; a new
    order each pass from ``self.rng``) or in list-file order. A file that cannot be decoded raises
    :class:`~dataflow.errors.FormatError` naming it. Decoding is the slow part: for training, read
    :class:`ILSVRC12Files` and decode in parallel workers, or convert once to an LMDB.

    Folder layouts. ``dir`` holds one sub-folder per split. With ``dir_structure='original'``
    (the official tar files extracted as they are)::

        dir/
          train/n01440764/n01440764_10026.JPEG ...   one folder per class (wnid)
          val/ILSVRC2012_val_00000001.JPEG ...       all images in one folder
          test/ILSVRC2012_test_00000001.JPEG ...

    With ``dir_structure='train'``, ``val/`` (and ``test/``) are organised like ``train/``, one
    folder per wnid (``val/n01440764/ILSVRC2012_val_00000293.JPEG``). ``train/`` always has that
    structure. By default the structure of ``dir/name`` is guessed from its first entry
    (:meth:`ILSVRCMeta.guess_dir_structure`).
    """

    def __init__(
        self,
        dir: str | os.PathLike[str],
        name: str,
        meta_dir: str | os.PathLike[str] | None = None,
        shuffle: bool | None = None,
        dir_structure: str | None = None,
    ) -> None:
        """
        Args:
            dir: the folder holding the sub-folder ``name``.
            name: ``'train'``, ``'val'`` or ``'test'``.
            meta_dir: the folder of Caffe's metadata (default ``$DATAFLOW_DATASET/ilsvrc_metadata``,
                downloaded if missing).
            shuffle: shuffle every pass; default: only for ``'train'``.
            dir_structure: ``'original'`` or ``'train'`` (see above); default: guessed.
        """
        import_cv2(type(self).__name__)
        super().__init__(dir, name, meta_dir, shuffle, dir_structure)

    _df_save = _state.PositionalPass._df_save
    _df_strides = True  # ShardByRank: its pass visits _state.pass_positions

    def __iter__(self) -> Iterator[list[Any]]:
        who = type(self).__name__
        for pos, fname, label in self._files():  # noqa: B007  # ``pos``: the saved position
            yield [imread(fname, who), label]

    @staticmethod
    def get_training_bbox(
        bbox_dir: str | os.PathLike[str], imglist: Sequence[tuple[str, int]]
    ) -> list[np.ndarray | None]:
        """The bounding box of each training image, from the ILSVRC12 bounding-box XML files.

        Args:
            bbox_dir: the extracted ``ILSVRC2012_bbox_train_v2`` folder (``<wnid>/<image>.xml``).
            imglist: ``(relative path, label)`` pairs, as from :meth:`ILSVRCMeta.get_image_list`.

        Returns:
            for each image, a float32 array ``[xmin, ymin, xmax, ymax]`` of its first object, or
            ``None`` where there is no (readable) annotation.
        """
        import xml.etree.ElementTree as ET

        bbox_dir = os.fspath(bbox_dir)
        ret: list[np.ndarray | None] = []
        found = 0
        for fname, _ in imglist:
            xml_file = os.path.join(bbox_dir, os.path.splitext(fname)[0] + ".xml")
            if not os.path.isfile(xml_file):
                ret.append(None)
                continue
            try:
                box = ET.parse(xml_file).getroot().find("object/bndbox")
                if box is None:
                    raise ValueError("no object/bndbox element")
                coords = [float(box.findtext(k, "")) for k in ("xmin", "ymin", "xmax", "ymax")]
            except (ET.ParseError, ValueError) as e:
                logger.warning("Unreadable bounding box %s: %s", xml_file, e)
                ret.append(None)
                continue
            ret.append(np.asarray(coords, dtype=np.float32))
            found += 1
        logger.info("%d/%d images have a bounding box", found, len(imglist))
        return ret


class TinyImageNet(_state.PositionalPass, RNGDataFlow):
    """Tiny ImageNet (200 classes, 64x64 images): datapoints ``[image, label]``.

    ``image`` a uint8 array (64, 64, 3), BGR; ``label`` an int, the class's line in ``wnids.txt``
    (0-199). Layout as published (``tiny-imagenet-200.zip`` extracted)::

        dir/wnids.txt
        dir/train/<wnid>/images/<wnid>_<k>.JPEG
        dir/val/val_annotations.txt     lines "<file>\\t<wnid>\\t<x0>\\t<y0>\\t<x1>\\t<y1>"
        dir/val/images/<file>

    ``len`` is the number of images of the split (100000 train, 10000 val). Shuffled by default
    for ``'train'`` only (a new order each pass); otherwise sorted by file name within each class
    (train) or in annotation-file order (val).
    """

    def __init__(self, dir: str | os.PathLike[str], name: str, shuffle: bool | None = None) -> None:
        """
        Args:
            dir: the extracted ``tiny-imagenet-200`` folder.
            name: ``'train'`` or ``'val'``.
            shuffle: shuffle every pass; default: only for ``'train'``.
        """
        who = type(self).__name__
        check_choice(name, ("train", "val"), who, "name")
        import_cv2(who)
        root = check_dir(os.path.expanduser(os.fspath(dir)), who)
        self.full_dir = os.path.join(root, name)
        self.shuffle = shuffle_default(shuffle, name)
        wnids_file = os.path.join(root, "wnids.txt")
        if not os.path.isfile(wnids_file):
            raise FormatError(f"{who}: {wnids_file} is missing")
        with open(wnids_file, encoding="utf-8") as f:
            wnids = [x.strip() for x in f if x.strip()]
        if not wnids:
            raise FormatError(f"{who}: {wnids_file} lists no class")
        cls_to_id = {wnid: i for i, wnid in enumerate(wnids)}
        self.imglist: list[tuple[str, int]] = []
        if name == "train":
            for clsid, wnid in enumerate(wnids):
                cls_dir = os.path.join(self.full_dir, wnid, "images")
                if not os.path.isdir(cls_dir):
                    raise FormatError(f"{who}: {cls_dir} is missing")
                for img in sorted(os.listdir(cls_dir)):
                    self.imglist.append((os.path.join(cls_dir, img), clsid))
        else:
            annotations = os.path.join(self.full_dir, "val_annotations.txt")
            if not os.path.isfile(annotations):
                raise FormatError(f"{who}: {annotations} is missing")
            with open(annotations, encoding="utf-8") as f:
                for lineno, line in enumerate(f, 1):
                    parts = line.split()
                    if not parts:
                        continue
                    if len(parts) < 2 or parts[1] not in cls_to_id:
                        raise FormatError(f"{annotations}:{lineno}: unknown class in {line!r}")
                    path = os.path.join(self.full_dir, "images", parts[0])
                    self.imglist.append((path, cls_to_id[parts[1]]))

    def __len__(self) -> int:
        return len(self.imglist)

    _df_save = _state.PositionalPass._df_save  # its pass: ``pos`` below
    _df_strides = True  # ShardByRank: its pass visits _state.pass_positions

    def __iter__(self) -> Iterator[list[Any]]:
        who = type(self).__name__
        idxs = np.arange(len(self.imglist))
        if self.shuffle:
            self.rng.shuffle(idxs)
        for pos in _state.pass_positions(self, len(idxs)):  # ``pos``: saved
            k = idxs[pos]
            fname, label = self.imglist[k]
            yield [imread(fname, who), label]

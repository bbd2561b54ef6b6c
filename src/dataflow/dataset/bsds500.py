"""BSDS500, the Berkeley Segmentation Data Set, for edge detection.

On-disk format (``BSR_bsds500.tgz`` as published): it extracts to ``BSR/BSDS500/data/`` with

- ``images/{train,val,test}/<id>.jpg``: 200 / 100 / 200 JPEG images of 481x321 or 321x481 pixels;
- ``groundTruth/{train,val,test}/<id>.mat``: MATLAB v5 files holding ``groundTruth``, a 1xK cell
  array (one cell per human annotator, usually 5-7), each a struct with ``Segmentation`` (region
  ids) and ``Boundaries`` (a binary edge map the size of the image).

The label the reader makes of an image is the fraction of annotators who marked each pixel as an
edge. Portrait images (and their labels) are transposed so that every datapoint is landscape.
Reading needs scipy and OpenCV; without them the constructor raises an ImportError saying what to
install. The archive is downloaded and extracted when ``BSR/`` is missing (see
:mod:`dataflow.dataset._download`; no checksum is published for it, its size is checked).
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from .. import _state
from ..base import RNGDataFlow
from ..errors import FormatError
from ._common import check_choice, import_cv2, import_scipy_io, imread, load_mat
from ._download import DatasetSource, RemoteFile, ensure_files, register, resolve_dir

__all__ = ["BSDS500"]

DATA_URL = "http://www.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/BSR/BSR_bsds500.tgz"
DATA_SIZE = 70763455
IMG_W, IMG_H = 481, 321

register(
    DatasetSource(
        name="bsds500",
        subdir="bsds500_data",
        files=(RemoteFile("BSR_bsds500.tgz", (DATA_URL,), size=DATA_SIZE, extracts_to="BSR"),),
        description="Berkeley Segmentation Data Set 500 (images + edge annotations)",
        homepage="https://www2.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/resources.html",
    )
)


def _edge_fraction(gt_file: str, who: str) -> np.ndarray:
    """The per-pixel fraction of annotators marking an edge, float32 in [0, 1]."""
    cells = np.asarray(load_mat(gt_file, ("groundTruth",), who)["groundTruth"]).ravel()
    if cells.size == 0:
        raise FormatError(f"{who}: {gt_file}: groundTruth holds no annotation")
    total: np.ndarray | None = None
    for k, cell in enumerate(cells):
        try:
            boundaries = np.asarray(np.asarray(cell)["Boundaries"].ravel()[0], dtype=np.float32)
        except (ValueError, IndexError, KeyError) as e:
            raise FormatError(f"{who}: {gt_file}: annotation {k} has no Boundaries map") from e
        if total is not None and boundaries.shape != total.shape:
            raise FormatError(f"{who}: {gt_file}: annotations of different shapes")
        total = boundaries if total is None else total + boundaries
    assert total is not None
    return total * np.float32(1.0 / cells.size)


class BSDS500(_state.PositionalPass, RNGDataFlow):
    """BSDS500 for edge detection: datapoints ``[image, label]``.

    - ``image``: uint8 array of shape (321, 481, 3), BGR (as OpenCV decodes), in [0, 255];
    - ``label``: float32 array of shape (321, 481) in [0, 1]: for each pixel, the number of
      annotators who marked it as an edge divided by the number of annotators of the image.

    ``len`` is the number of images in the split (200 train, 100 val, 200 test). One pass yields
    each once, shuffled (a new order each pass, from ``self.rng``) or sorted by file name. The split
    is decoded into memory at construction; each datapoint holds fresh arrays.

    Needs scipy and OpenCV. Default folder ``$DATAFLOW_DATASET/bsds500_data`` (holding ``BSR/``).
    """

    def __init__(
        self, name: str, data_dir: str | os.PathLike[str] | None = None, shuffle: bool = True
    ) -> None:
        """
        Args:
            name: ``'train'``, ``'test'`` or ``'val'``.
            data_dir: a folder holding the extracted ``BSR`` folder (downloaded if missing).
            shuffle: shuffle every pass.
        """
        who = type(self).__name__
        self.name = check_choice(name, ("train", "test", "val"), who, "name")
        import_scipy_io(who)
        import_cv2(who)
        data_dir = resolve_dir(data_dir, "bsds500_data", who, "data_dir")
        if not os.path.isdir(os.path.join(data_dir, "BSR")):
            ensure_files("bsds500", data_dir)
        self.data_root = os.path.join(data_dir, "BSR", "BSDS500", "data")
        if not os.path.isdir(self.data_root):
            raise FormatError(f"{who}: {self.data_root} is missing (not a BSDS500 folder)")
        self.shuffle = bool(shuffle)
        self._load(name)

    def _load(self, name: str) -> None:
        who = type(self).__name__
        image_files = sorted(glob.glob(os.path.join(self.data_root, "images", name, "*.jpg")))
        if not image_files:
            raise FormatError(
                f"{who}: no .jpg image in {os.path.join(self.data_root, 'images', name)}"
            )
        gt_dir = os.path.join(self.data_root, "groundTruth", name)
        self.data = np.zeros((len(image_files), IMG_H, IMG_W, 3), dtype=np.uint8)
        self.label = np.zeros((len(image_files), IMG_H, IMG_W), dtype=np.float32)
        for idx, f in enumerate(image_files):
            im = imread(f, who)
            if im.shape[0] > im.shape[1]:
                im = np.transpose(im, (1, 0, 2))
            if im.shape[:2] != (IMG_H, IMG_W):
                raise FormatError(
                    f"{who}: {f} is {im.shape[1]}x{im.shape[0]} pixels, expected {IMG_W}x{IMG_H}"
                )
            imgid = os.path.splitext(os.path.basename(f))[0]
            gt_file = os.path.join(gt_dir, imgid + ".mat")
            if not os.path.isfile(gt_file):
                raise FormatError(f"{who}: the annotation {gt_file} of {f} is missing")
            gt = _edge_fraction(gt_file, who)
            if gt.shape[0] > gt.shape[1]:
                gt = gt.transpose()
            if gt.shape != (IMG_H, IMG_W):
                raise FormatError(f"{who}: {gt_file}: boundary maps of shape {gt.shape}")
            self.data[idx] = im
            self.label[idx] = gt

    def __len__(self) -> int:
        return self.data.shape[0]

    _df_save = _state.PositionalPass._df_save  # its pass: ``pos`` below
    _df_strides = True  # ShardByRank: its pass visits _state.pass_positions

    def __iter__(self) -> Iterator[list[Any]]:
        idxs = np.arange(self.data.shape[0])
        if self.shuffle:
            self.rng.shuffle(idxs)
        for pos in _state.pass_positions(self, len(idxs)):  # ``pos``: saved
            k = idxs[pos]
            yield [self.data[k].copy(), self.label[k].copy()]

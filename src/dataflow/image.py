"""Image flows: read image files, and apply augmentors to image components.

Needs OpenCV (``pip install 'pydataflow[image]'``), imported only when one of these is constructed
or called, so ``import dataflow`` does not import it.

- :func:`imdecode` decodes image bytes (JPEG, PNG, ...) to a numpy array: the one decode path the
  library's readers use.
- :class:`ImageFromFile` reads image files.
- :class:`AugmentImageComponent`, :class:`AugmentImageComponents`, :class:`AugmentImageCoordinates`
  apply :mod:`dataflow.imgaug` augmentors to one image, to several images (and coordinates) with
  shared random parameters, or to an image and its coordinates.

Augmentors in these flows draw from streams keyed by the flow's place in the pipeline (see
:mod:`dataflow.imgaug.base`): reproducible with :func:`dataflow.set_seed`, distinct per worker,
and fresh for each pass.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Hashable, Iterator, Sequence
from typing import Any

import numpy as np

from . import _state
from ._engine import seeding
from ._lazy import require
from .base import RNGDataFlow
from .common import MapData, MapDataComponent
from .errors import DataFlowArgumentError, DatapointError, FormatError

__all__ = [
    "ImageFromFile",
    "AugmentImageComponent",
    "AugmentImageComponents",
    "AugmentImageCoordinates",
    "imdecode",
]

logger = logging.getLogger(__name__)

_cv2: Any = None


def _import_cv2() -> Any:
    global _cv2
    if _cv2 is None:
        _cv2 = require("cv2", "image", who="dataflow.image")
    return _cv2


# -- decoding ---------------------------------------------------------------------------------
def imdecode(
    data: bytes | bytearray | memoryview | np.ndarray, channel: int = 3, rgb: bool = False
) -> np.ndarray:
    """Decode an encoded image (JPEG, PNG, BMP, WebP, ... anything OpenCV reads) to uint8 pixels.

    This is the decode path of the library's readers (:class:`ImageFromFile`, the datasets and
    the LMDB examples). It uses OpenCV's ``imdecode`` (libjpeg-turbo for JPEG): on this project's
    benchmark JPEGs it was as fast as simplejpeg (within 2%) and about 25% faster than Pillow, and
    unlike those it applies the EXIF orientation as ``cv2.imread`` does.

    Args:
        data: the encoded bytes (``bytes``, ``bytearray``, ``memoryview`` or a 1-D uint8 array).
        channel: 3 for a color image (grayscale files are expanded), 1 for grayscale.
        rgb: with ``channel=3``, return RGB; the default is BGR, OpenCV's order, which tensorpack's
            readers (ILSVRC12, LMDB examples) yield.

    Returns:
        uint8 array of shape HxWx3 (``channel=3``) or HxWx1 (``channel=1``). Alpha is dropped.

    Raises:
        FormatError: the bytes are not an image OpenCV can decode.
    """
    cv2 = _import_cv2()
    if channel not in (1, 3):
        raise DataFlowArgumentError(f"imdecode: channel must be 1 or 3, got {channel!r}")
    if isinstance(data, np.ndarray):
        buf = data if data.dtype == np.uint8 else data.view(np.uint8)
        buf = buf.reshape(-1)
    else:
        buf = np.frombuffer(data, dtype=np.uint8)
    img = None
    detail = ""
    if buf.size:
        try:
            if channel == 1:
                img = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
            elif rgb and hasattr(cv2, "IMREAD_COLOR_RGB"):  # OpenCV >= 4.10: straight to RGB
                img = cv2.imdecode(buf, cv2.IMREAD_COLOR_RGB)
            else:
                img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
                if img is not None and rgb:
                    img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        except cv2.error as e:  # OpenCV rejected the data: reported below as a FormatError
            detail = ": " + str(e).strip().splitlines()[-1]
    if img is None:
        head = bytes(buf[:8]).hex()
        raise FormatError(
            f"imdecode: {buf.size} bytes (starting {head}) are not an image OpenCV can decode"
            + detail
        )
    if channel == 1:
        img = img[:, :, np.newaxis]
    return img


# -- reading files ----------------------------------------------------------------------------
class ImageFromFile(_state.PositionalPass, RNGDataFlow):
    """Read image files: each datapoint is ``[image]``, a uint8 HxWx3 RGB or HxWx1 array.

    ``len`` is the number of files; each pass yields every file once, in the given order or
    shuffled (a new order each pass). A file that does not exist raises ``FileNotFoundError``, one
    that is not an image :class:`~dataflow.errors.FormatError`, both naming the file.
    Unlike tensorpack, shuffling does not reorder the caller's list.
    """

    def __init__(
        self,
        files: Sequence[str | os.PathLike],
        channel: int = 3,
        resize: int | tuple[int, int] | None = None,
        shuffle: bool = False,
    ) -> None:
        """
        Args:
            files: paths of image files (any format OpenCV reads).
            channel: 3 for RGB (grayscale files are expanded), 1 for grayscale as HxWx1.
            resize: an int or (h, w): resize every image to this size.
            shuffle: read the files in a random order each pass.
        """
        _import_cv2()
        from .imgaug.base import shape2d

        if isinstance(files, (str, bytes)) or not isinstance(files, (Sequence, np.ndarray)):
            raise DataFlowArgumentError(
                f"ImageFromFile: files must be a list of paths, got {type(files).__name__}"
            )
        if not len(files):
            raise DataFlowArgumentError("ImageFromFile: no image files given (files is empty)")
        for i, f in enumerate(files):
            if not isinstance(f, (str, os.PathLike)):
                raise DataFlowArgumentError(
                    f"ImageFromFile: files[{i}] must be a path, got {type(f).__name__}"
                )
        if channel not in (1, 3):
            raise DataFlowArgumentError(f"ImageFromFile: channel must be 1 or 3, got {channel!r}")
        self.files = files
        self.channel = int(channel)
        self.resize = None if resize is None else shape2d(resize, "ImageFromFile: resize")
        self.shuffle = bool(shuffle)

    def __len__(self) -> int:
        return len(self.files)

    _df_save = _state.PositionalPass._df_save  # its pass: ``pos`` below
    _df_strides = True  # ShardByRank: its pass visits _state.pass_positions

    def __iter__(self) -> Iterator[list[np.ndarray]]:
        cv2 = _import_cv2()
        order = np.arange(len(self.files))
        if self.shuffle:
            self.rng.shuffle(order)
        for pos in _state.pass_positions(self, len(order)):
            path = self.files[order[pos]]
            try:
                data = np.fromfile(path, dtype=np.uint8)
            except FileNotFoundError:
                raise FileNotFoundError(
                    f"ImageFromFile: no such file: {os.fspath(path)!r}"
                ) from None
            try:
                im = imdecode(data, self.channel, rgb=True)
            except FormatError:
                raise FormatError(
                    f"ImageFromFile: {os.fspath(path)!r} is not an image OpenCV can decode"
                ) from None
            if self.resize is not None:
                im = cv2.resize(im, (self.resize[1], self.resize[0]))
                if im.ndim == 2:
                    im = im[:, :, np.newaxis]
            yield [im]


# -- augmenting -------------------------------------------------------------------------------
class _ExceptionHandler:
    """Counts augmentation errors; re-raises them unless ``catch_exceptions``."""

    def __init__(self, catch_exceptions: bool, who: str) -> None:
        self.catch_exceptions = bool(catch_exceptions)
        self.who = who
        self.num_errors = 0

    def swallow(self) -> bool:
        """Count the exception being handled; True (after logging it) if it is to be dropped."""
        self.num_errors += 1
        if not self.catch_exceptions:
            return False
        n = self.num_errors
        if n < 10 or n % 100 == 0:
            logger.error(
                "%s: augmentation failed, datapoint dropped (%d so far)", self.who, n, exc_info=True
            )
        return True


def _as_augmentor_list(augmentors: Any, who: str) -> Any:
    from .imgaug.base import AugmentorList, ImageAugmentor

    if isinstance(augmentors, AugmentorList):
        return augmentors
    if isinstance(augmentors, ImageAugmentor):
        augmentors = [augmentors]
    if not isinstance(augmentors, (list, tuple)):
        raise DataFlowArgumentError(
            f"{who}: augmentors must be a list of augmentors or an AugmentorList, got "
            f"{type(augmentors).__name__}"
        )
    try:
        return AugmentorList(augmentors)
    except DataFlowArgumentError as e:
        raise DataFlowArgumentError(f"{who}: {e}") from None


_MASK_DTYPES = tuple(
    np.dtype(t) for t in (np.uint8, np.uint16, np.int16, np.int32, np.float32, np.float64)
)


def _check_secondary_image(img: Any, who: str) -> None:
    """Masks may also have the other dtypes OpenCV handles (int16/uint16/int32 label maps)."""
    if not isinstance(img, np.ndarray):
        raise DatapointError(f"{who}: an image must be a numpy array, got {type(img).__name__}")
    if img.dtype not in _MASK_DTYPES or img.ndim not in (2, 3):
        raise DatapointError(
            f"{who}: got an array of shape {img.shape} and dtype {img.dtype}; masks must be HxW or "
            "HxWxC with dtype uint8, uint16, int16, int32, float32 or float64"
        )


def _check_coords(coords: Any, who: str) -> None:
    if not isinstance(coords, np.ndarray) or coords.ndim != 2 or coords.shape[1] != 2:
        shape = getattr(coords, "shape", None)
        raise DatapointError(
            f"{who}: coordinates must be an Nx2 float array of (x, y) rows, got "
            f"{type(coords).__name__}" + (f" of shape {shape}" if shape is not None else "")
        )
    if coords.dtype.kind != "f":
        raise DatapointError(
            f"{who}: coordinates must be floating point, got dtype {coords.dtype} "
            "(convert with coords.astype(np.float32))"
        )


def _component(dp: Any, index: Any, who: str) -> Any:
    if not isinstance(dp, (list, tuple, dict)):
        raise DatapointError(
            f"{who}: a datapoint must be a list, tuple or dict, got {type(dp).__name__}"
        )
    try:
        return dp[index]
    except (IndexError, KeyError, TypeError):
        have = f"keys {sorted(map(str, dp))}" if isinstance(dp, dict) else f"{len(dp)} components"
        raise DatapointError(
            f"{who}: the datapoint has no component {index!r} (it has {have})"
        ) from None


class _AugmentingFlow:
    """Seeding and error counting shared by the three augmenting flows (a mixin)."""

    augs: Any
    _exception_handler: _ExceptionHandler
    _df_position: str | None
    _df_epoch: int

    ds: Any

    def reset_state(self) -> None:
        self.ds.reset_state()
        self._df_epoch = 0
        self.augs._set_seed_key(f"{self._df_position}.augs", 0)
        self.augs.reset_state()

    def _on_new_pass(self) -> None:
        super()._on_new_pass()  # type: ignore[misc]  # DataFlow's, next in the MRO
        # DataFlow._on_new_pass has counted the pass: pass k draws stream k.
        if self._df_epoch > 1:
            self.augs._set_seed_key(f"{self._df_position}.augs", self._df_epoch - 1)

    @property
    def num_errors(self) -> int:
        """How many datapoints failed to augment in this process (dropped if catch_exceptions)."""
        return self._exception_handler.num_errors

    # Resume: a mapping stage (the upstream's position is the position) whose augmentors draw
    # from random streams: the state names each augmentor's stream and, mid-pass, where it stands,
    # so that a resumed pass augments the rest identically, and later passes too.
    def _augmentors(self) -> list[Any]:
        found, stack = [], [self.augs]
        while stack:
            aug = stack.pop(0)
            found.append(aug)
            stack[:0] = [child for _, child in aug._child_augmentors()]
        return found

    def _df_carries_over(self) -> bool:
        return True  # the streams' names hold for every later pass

    def _df_save(self) -> dict:
        specs, now = [], []
        for aug in self._augmentors():
            spec = aug.__dict__.get("_seed_spec") or seeding.stream_spec(aug._key())
            specs.append([int(v) for v in spec])
            now.append(_state.rng_to_plain(aug.rng))
        state: dict[str, Any] = {"specs": specs}
        if self._df_in_pass():  # type: ignore[attr-defined]
            state["pass"] = {"now": now}
        return state

    def _df_load(self, state: dict) -> None:
        now = state.get("pass", {}).get("now")
        for i, (aug, spec) in enumerate(zip(self._augmentors(), state["specs"])):
            aug.__dict__["_seed_spec"] = tuple(int(v) for v in spec)
            aug.__dict__.pop("_rngs", None)
            aug.__dict__.pop("_rng_last", None)
            if now is not None:
                _state.rng_from_plain(aug.rng, now[i])


class AugmentImageComponent(_AugmentingFlow, MapDataComponent):
    """Apply augmentors to one image component of each datapoint.

    In: list/tuple or dict datapoints whose component ``index`` is an image (uint8 or
    float32/float64, HxW or HxWxC). Out: the same datapoint (a new list/dict) with the image
    augmented; other components untouched. ``len`` is ``len(ds)`` (smaller in practice when
    ``catch_exceptions`` drops datapoints).

    An image of another dtype or shape raises :class:`~dataflow.errors.DatapointError` naming the
    component, whether or not exceptions are caught. With ``catch_exceptions=True``, an exception
    raised by an augmentor is counted (:attr:`num_errors`), logged (the first 9 and every 100th)
    and the datapoint is dropped.
    """

    def __init__(
        self,
        ds: Any,
        augmentors: Any,
        index: Hashable = 0,
        copy: bool = True,
        catch_exceptions: bool = False,
    ) -> None:
        """
        Args:
            ds: the input flow.
            augmentors: a list of :class:`~dataflow.imgaug.ImageAugmentor` applied in order, or an
                :class:`~dataflow.imgaug.AugmentorList`.
            index: the position or key of the image component.
            copy: copy the image before augmenting, so that augmentors that write into their input
                never change the upstream's data. Turn off to save a copy when that is safe.
            catch_exceptions: drop datapoints whose augmentation raises (counted and logged)
                instead of raising.
        """
        _import_cv2()
        self.augs = _as_augmentor_list(augmentors, "AugmentImageComponent")
        self._copy = bool(copy)
        self._exception_handler = _ExceptionHandler(catch_exceptions, "AugmentImageComponent")
        self._who = f"AugmentImageComponent (component {index!r})"
        super().__init__(ds, self._aug_mapper, index)

    def _aug_mapper(self, img: Any) -> Any:
        from .imgaug.base import check_image

        check_image(img, self._who)
        try:
            if self._copy:
                img = img.copy()
            return self.augs.augment(img)
        except Exception:
            if not self._exception_handler.swallow():
                raise
            return None


class AugmentImageCoordinates(_AugmentingFlow, MapData):
    """Apply augmentors to an image and to coordinates in the same datapoint.

    In: datapoints with an image at ``img_index`` and an Nx2 float array of (x, y) rows at
    ``coords_index`` (continuous pixel coordinates: pixel (row i, column j) spans [j, j+1) x
    [i, i+1)). Out: both transformed alike. Errors, ``copy`` and ``catch_exceptions`` as in
    :class:`AugmentImageComponent`; non-float or non-Nx2 coordinates raise DatapointError.
    """

    def __init__(
        self,
        ds: Any,
        augmentors: Any,
        img_index: Hashable = 0,
        coords_index: Hashable = 1,
        copy: bool = True,
        catch_exceptions: bool = False,
    ) -> None:
        """
        Args:
            ds: the input flow.
            augmentors: a list of augmentors applied in order, or an AugmentorList.
            img_index: the position or key of the image.
            coords_index: the position or key of the coordinates.
            copy, catch_exceptions: as in :class:`AugmentImageComponent`.
        """
        _import_cv2()
        self.augs = _as_augmentor_list(augmentors, "AugmentImageCoordinates")
        self._img_index = img_index
        self._coords_index = coords_index
        self._copy = bool(copy)
        self._exception_handler = _ExceptionHandler(catch_exceptions, "AugmentImageCoordinates")
        super().__init__(ds, self._aug_mapper)

    def _aug_mapper(self, dp: Any) -> Any:
        from .imgaug.base import check_image

        who = "AugmentImageCoordinates"
        img = _component(dp, self._img_index, who)
        coords = _component(dp, self._coords_index, who)
        check_image(img, f"{who} (component {self._img_index!r})")
        _check_coords(coords, f"{who} (component {self._coords_index!r})")
        if isinstance(dp, tuple):
            dp = list(dp)
        try:
            if self._copy:
                img = img.copy()
            tfms = self.augs.get_transform(img)
            dp[self._img_index] = tfms.apply_image(img)
            dp[self._coords_index] = tfms.apply_coords(coords.copy() if self._copy else coords)
        except Exception:
            if not self._exception_handler.swallow():
                raise
            return None
        return dp


class AugmentImageComponents(_AugmentingFlow, MapData):
    """Apply the same random augmentation to several images and coordinates of a datapoint.

    The parameters are drawn from the first image (``index[0]``); the same transform is then
    applied to the other images in ``index`` (e.g. segmentation masks: they must have the first
    image's height and width) and to the coordinates in ``coords_index``. Every transform applies
    to every image in ``index``, photometric ones included. Masks may also be uint16, int16 or
    int32 arrays. Errors, ``copy`` and ``catch_exceptions`` as in :class:`AugmentImageComponent`.

    Example::

        ds = MyDataFlow()   # [image (HxWx3), mask (HxW), keypoints (Nx2)]
        ds = AugmentImageComponents(ds, augs, index=(0, 1), coords_index=(2,))
    """

    def __init__(
        self,
        ds: Any,
        augmentors: Any,
        index: Sequence[Hashable] = (0, 1),
        coords_index: Sequence[Hashable] = (),
        copy: bool = True,
        catch_exceptions: bool = False,
    ) -> None:
        """
        Args:
            ds: the input flow.
            augmentors: a list of augmentors applied in order, or an AugmentorList.
            index: positions or keys of the image components; the first one drives the draws.
            coords_index: positions or keys of Nx2 coordinate components.
            copy, catch_exceptions: as in :class:`AugmentImageComponent`.
        """
        _import_cv2()
        who = "AugmentImageComponents"
        if not isinstance(index, (list, tuple)) or not index:
            raise DataFlowArgumentError(f"{who}: index must be a non-empty tuple of image indices")
        if not isinstance(coords_index, (list, tuple)):
            raise DataFlowArgumentError(f"{who}: coords_index must be a tuple of indices")
        self.augs = _as_augmentor_list(augmentors, who)
        self._index = tuple(index)
        self._coords_index = tuple(coords_index)
        self._copy = bool(copy)
        self._exception_handler = _ExceptionHandler(catch_exceptions, who)
        super().__init__(ds, self._aug_mapper)

    def _aug_mapper(self, dp: Any) -> Any:
        from .imgaug.base import check_image

        who = "AugmentImageComponents"
        major = self._index[0]
        check_image(_component(dp, major, who), f"{who} (component {major!r})")
        for idx in self._index[1:]:
            _check_secondary_image(_component(dp, idx, who), f"{who} (component {idx!r})")
        for idx in self._coords_index:
            _check_coords(_component(dp, idx, who), f"{who} (component {idx!r})")
        if isinstance(dp, tuple):
            dp = list(dp)
        copy = self._copy
        try:
            im = dp[major].copy() if copy else dp[major]
            tfms = self.augs.get_transform(im)
            dp[major] = tfms.apply_image(im)
            for idx in self._index[1:]:
                dp[idx] = tfms.apply_image(dp[idx].copy() if copy else dp[idx])
            for idx in self._coords_index:
                dp[idx] = tfms.apply_coords(dp[idx].copy() if copy else dp[idx])
        except Exception:
            if not self._exception_handler.swallow():
                raise
            return None
        return dp

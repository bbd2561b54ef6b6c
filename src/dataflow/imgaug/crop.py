"""Crops: random, centered, random-shaped, GoogleNet-style crop-and-resize, and cutout."""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np

from ..errors import DataFlowArgumentError, DatapointError
from .base import ImageAugmentor, ImagePlaceholder, _warn_once, shape2d
from .misc import ResizeShortestEdge
from .transform import (
    BaseTransform,
    CropTransform,
    PhotometricTransform,
    ResizeTransform,
    TransformList,
)

__all__ = [
    "RandomCrop",
    "CenterCrop",
    "RandomCropRandomShape",
    "GoogleNetRandomCropAndResize",
    "RandomCutout",
]


def _check_fits(img: Any, crop_shape: tuple[int, int], who: str) -> None:
    if img.shape[0] < crop_shape[0] or img.shape[1] < crop_shape[1]:
        raise DatapointError(
            f"{who}: cannot crop {crop_shape[0]}x{crop_shape[1]} from an image of shape {img.shape}"
        )


class RandomCrop(ImageAugmentor):
    """Crop a window of ``crop_shape`` at a uniformly random position.

    In: an image at least as large as ``crop_shape``. Out: ``crop_shape[0] x crop_shape[1]``.
    """

    def __init__(self, crop_shape: int | tuple[int, int]) -> None:
        """
        Args:
            crop_shape: (h, w), or an int for a square.
        """
        self.crop_shape = shape2d(crop_shape, "RandomCrop: crop_shape")
        super().__init__()

    def get_transform(self, img: np.ndarray) -> BaseTransform:
        _check_fits(img, self.crop_shape, "RandomCrop")
        h0 = self.rng.randint(img.shape[0] - self.crop_shape[0] + 1)
        w0 = self.rng.randint(img.shape[1] - self.crop_shape[1] + 1)
        return CropTransform(h0, w0, self.crop_shape[0], self.crop_shape[1])


class CenterCrop(ImageAugmentor):
    """Crop a window of ``crop_shape`` at the center (rounding the offsets down)."""

    def __init__(self, crop_shape: int | tuple[int, int]) -> None:
        """
        Args:
            crop_shape: (h, w), or an int for a square.
        """
        self.crop_shape = shape2d(crop_shape, "CenterCrop: crop_shape")

    def get_transform(self, img: Any) -> BaseTransform:
        _check_fits(img, self.crop_shape, "CenterCrop")
        h0 = int((img.shape[0] - self.crop_shape[0]) * 0.5)
        w0 = int((img.shape[1] - self.crop_shape[1]) * 0.5)
        return CropTransform(h0, w0, self.crop_shape[0], self.crop_shape[1])


class RandomCropRandomShape(ImageAugmentor):
    """Crop a window whose size is random: h in [hmin, hmax], w in [wmin, wmax] (inclusive).

    ``hmax``/``wmax`` default to the image's size. The position is uniform over all windows of
    that size (tensorpack never chose the last row/column offset).
    """

    def __init__(
        self,
        wmin: int,
        hmin: int,
        wmax: int | None = None,
        hmax: int | None = None,
        max_aspect_ratio: float | None = None,
    ) -> None:
        """
        Args:
            wmin, hmin, wmax, hmax: the range of the window's size.
            max_aspect_ratio: ignored (tensorpack never implemented it; kept for compatibility).
        """
        if max_aspect_ratio is not None:
            _warn_once(
                "RandomCropRandomShape.max_aspect_ratio",
                "RandomCropRandomShape(max_aspect_ratio=) has no effect (it never had)",
            )
        for name, v in (("wmin", wmin), ("hmin", hmin)):
            if int(v) <= 0:
                raise DataFlowArgumentError(f"RandomCropRandomShape: {name} must be positive")
        self.wmin, self.hmin, self.wmax, self.hmax = wmin, hmin, wmax, hmax
        self.max_aspect_ratio = max_aspect_ratio
        super().__init__()

    def get_transform(self, img: np.ndarray) -> BaseTransform:
        hmax = self.hmax or img.shape[0]
        wmax = self.wmax or img.shape[1]
        h = self.rng.randint(self.hmin, hmax + 1)
        w = self.rng.randint(self.wmin, wmax + 1)
        diffh, diffw = img.shape[0] - h, img.shape[1] - w
        if diffh < 0 or diffw < 0:
            raise DatapointError(
                f"RandomCropRandomShape: cannot crop {h}x{w} from an image of shape {img.shape}"
            )
        y0 = self.rng.randint(diffh + 1)
        x0 = self.rng.randint(diffw + 1)
        return CropTransform(y0, x0, h, w)


class GoogleNetRandomCropAndResize(ImageAugmentor):
    """The random-resized crop of "Going Deeper with Convolutions" (as in fb.resnet.torch).

    Tries up to 10 times to crop a rectangle covering a random fraction of the area in
    ``crop_area_fraction`` with an aspect ratio in ``aspect_ratio_range`` (swapped with probability
    0.5), and resizes it to ``target_shape`` x ``target_shape``. If no try fits, resizes the shortest
    edge to ``target_shape`` and center-crops instead. Out: always target_shape x target_shape.
    """

    def __init__(
        self,
        crop_area_fraction: tuple[float, float] = (0.08, 1.0),
        aspect_ratio_range: tuple[float, float] = (0.75, 1.333),
        target_shape: int = 224,
        interp: int = cv2.INTER_LINEAR,
    ) -> None:
        """
        Args:
            crop_area_fraction: the range of the crop's area as a fraction of the image's.
            aspect_ratio_range: the range of the crop's width/height.
            target_shape: the output's side.
            interp: OpenCV interpolation flag for the resize.
        """
        if len(crop_area_fraction) != 2 or not 0 < crop_area_fraction[0] <= crop_area_fraction[1]:
            raise DataFlowArgumentError(
                f"GoogleNetRandomCropAndResize: crop_area_fraction must be (low, high) with "
                f"0 < low <= high, got {crop_area_fraction!r}"
            )
        if len(aspect_ratio_range) != 2 or not 0 < aspect_ratio_range[0] <= aspect_ratio_range[1]:
            raise DataFlowArgumentError(
                "GoogleNetRandomCropAndResize: aspect_ratio_range must be (low, high) with "
                f"0 < low <= high, got {aspect_ratio_range!r}"
            )
        if int(target_shape) <= 0:
            raise DataFlowArgumentError(
                "GoogleNetRandomCropAndResize: target_shape must be positive"
            )
        self.crop_area_fraction = crop_area_fraction
        self.aspect_ratio_range = aspect_ratio_range
        self.target_shape = int(target_shape)
        self.interp = interp
        super().__init__()

    def get_transform(self, img: Any) -> BaseTransform:
        h, w = img.shape[:2]
        area = h * w
        rng = self.rng
        target = self.target_shape
        for _ in range(10):
            target_area = rng.uniform(*self.crop_area_fraction) * area
            aspect = rng.uniform(*self.aspect_ratio_range)
            ww = int(math.sqrt(target_area * aspect) + 0.5)
            hh = int(math.sqrt(target_area / aspect) + 0.5)
            if rng.uniform() < 0.5:
                ww, hh = hh, ww
            if hh <= h and ww <= w:
                x1 = rng.randint(0, w - ww + 1)
                y1 = rng.randint(0, h - hh + 1)
                return TransformList(
                    [
                        CropTransform(y1, x1, hh, ww),
                        ResizeTransform(hh, ww, target, target, interp=self.interp),
                    ]
                )
        resize = ResizeShortestEdge(target, interp=self.interp).get_transform(img)
        crop = CenterCrop(target).get_transform(
            ImagePlaceholder(shape=(resize.new_h, resize.new_w))
        )
        return TransformList([resize, crop])


def _cutout(img: np.ndarray, y0: int, x0: int, h: int, w: int, fill: float) -> np.ndarray:
    img[y0 : y0 + h, x0 : x0 + w] = fill
    return img


class _Cutout:
    """Picklable ``img -> img with a filled rectangle`` (writes into its input)."""

    __slots__ = ("y0", "x0", "h", "w", "fill")

    def __init__(self, y0: int, x0: int, h: int, w: int, fill: float) -> None:
        self.y0, self.x0, self.h, self.w, self.fill = y0, x0, h, w, fill

    def __call__(self, img: np.ndarray) -> np.ndarray:
        return _cutout(img, self.y0, self.x0, self.h, self.w, self.fill)

    def __repr__(self) -> str:
        return f"cutout {self.h}x{self.w} at (y0={self.y0}, x0={self.x0})"


def _check_range(value: Any, name: str) -> None:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        if value <= 0:
            raise DataFlowArgumentError(f"RandomCutout: {name} must be positive, got {value}")
        return
    if (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and all(isinstance(v, (int, np.integer)) for v in value)
        and 0 < value[0] < value[1]
    ):
        return
    raise DataFlowArgumentError(
        f"RandomCutout: {name} must be a positive int or a (low, high) pair with 0 < low < high, "
        f"got {value!r}"
    )


class RandomCutout(ImageAugmentor):
    """Cutout (https://arxiv.org/abs/1708.04552): fill a random rectangle with ``fill``.

    Pixels only (coordinates unchanged). Writes into the image it is applied to.
    """

    def __init__(
        self, h_range: int | tuple[int, int], w_range: int | tuple[int, int], fill: float = 0.0
    ) -> None:
        """
        Args:
            h_range: the rectangle's height, or a [low, high) range to draw it from.
            w_range: likewise for the width.
            fill: the value written into the rectangle.
        """
        _check_range(h_range, "h_range")
        _check_range(w_range, "w_range")
        self.h_range, self.w_range, self.fill = h_range, w_range, fill
        super().__init__()

    def _get_cutout_shape(self) -> tuple[int, int]:
        h = (
            self.h_range
            if isinstance(self.h_range, (int, np.integer))
            else self.rng.randint(*self.h_range)
        )
        w = (
            self.w_range
            if isinstance(self.w_range, (int, np.integer))
            else self.rng.randint(*self.w_range)
        )
        return int(h), int(w)

    def get_transform(self, img: np.ndarray) -> BaseTransform:
        h, w = self._get_cutout_shape()
        h, w = min(h, img.shape[0]), min(w, img.shape[1])
        x0 = self.rng.randint(0, img.shape[1] + 1 - w)
        y0 = self.rng.randint(0, img.shape[0] + 1 - h)
        return PhotometricTransform(_Cutout(y0, x0, h, w, self.fill), "cutout")

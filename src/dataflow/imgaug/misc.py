"""Flip, resizes and transpose."""

from __future__ import annotations

import logging
from typing import Any

import cv2
import numpy as np

from ..errors import DataFlowArgumentError
from .base import ImageAugmentor, shape2d
from .transform import (
    BaseTransform,
    FlipTransform,
    NoOpTransform,
    ResizeTransform,
    TransposeTransform,
)

__all__ = ["Flip", "Resize", "RandomResize", "ResizeShortestEdge", "Transpose"]

logger = logging.getLogger(__name__)


def _check_prob(prob: Any, who: str) -> None:
    if not 0 <= prob <= 1:
        raise DataFlowArgumentError(f"{who}: prob must be in [0, 1], got {prob!r}")


class Flip(ImageAugmentor):
    """Flip horizontally or vertically with probability ``prob``. Returns a view of the input."""

    def __init__(self, horiz: bool = False, vert: bool = False, prob: float = 0.5) -> None:
        """
        Args:
            horiz: flip left-right.
            vert: flip top-bottom (use two Flip augmentors for both).
            prob: the probability to flip.
        """
        if horiz and vert:
            raise DataFlowArgumentError(
                "Flip: cannot do both horiz and vert; use two Flip augmentors"
            )
        if not horiz and not vert:
            raise DataFlowArgumentError("Flip: one of horiz or vert must be True")
        _check_prob(prob, "Flip")
        self.horiz, self.vert, self.prob = horiz, vert, prob
        super().__init__()

    def get_transform(self, img: np.ndarray) -> BaseTransform:
        if self.rng.uniform() < self.prob:
            return FlipTransform(img.shape[0], img.shape[1], self.horiz)
        return NoOpTransform()


class Resize(ImageAugmentor):
    """Resize to a fixed (h, w)."""

    def __init__(self, shape: int | tuple[int, int], interp: int = cv2.INTER_LINEAR) -> None:
        """
        Args:
            shape: (h, w), or an int for a square.
            interp: OpenCV interpolation flag.
        """
        self.shape = shape2d(shape, "Resize: shape")
        self.interp = interp

    def get_transform(self, img: Any) -> BaseTransform:
        return ResizeTransform(
            img.shape[0], img.shape[1], self.shape[0], self.shape[1], self.interp
        )


class ResizeShortestEdge(ImageAugmentor):
    """Resize so that the shorter side is ``size``, keeping the aspect ratio (rounded)."""

    def __init__(self, size: int, interp: int = cv2.INTER_LINEAR) -> None:
        """
        Args:
            size: the length of the shorter side after resizing.
            interp: OpenCV interpolation flag.
        """
        if int(size) <= 0:
            raise DataFlowArgumentError(f"ResizeShortestEdge: size must be positive, got {size!r}")
        self.size = int(size)
        self.interp = interp

    def get_transform(self, img: Any) -> ResizeTransform:  # type: ignore[override]
        h, w = img.shape[:2]
        scale = self.size / min(h, w)
        if h < w:
            newh, neww = self.size, int(scale * w + 0.5)
        else:
            newh, neww = int(scale * h + 0.5), self.size
        return ResizeTransform(h, w, newh, neww, self.interp)


class RandomResize(ImageAugmentor):
    """Resize to a random width and height.

    Floats in ``xrange``/``yrange`` are scale factors, ints are sizes in pixels. Draws whose aspect
    ratio changes by ``aspect_ratio_thres`` or more are redrawn (up to 50 times, then the size is
    kept); ``aspect_ratio_thres=0`` keeps the aspect ratio exactly.
    """

    def __init__(
        self,
        xrange: tuple[float, float],
        yrange: tuple[float, float] | None = None,
        minimum: tuple[int, int] = (0, 0),
        aspect_ratio_thres: float = 0.15,
        interp: int = cv2.INTER_LINEAR,
    ) -> None:
        """
        Args:
            xrange: (min, max) of the new width: scale factors if floats, pixels if ints.
            yrange: likewise for the height (None when ``aspect_ratio_thres == 0``).
            minimum: (xmin, ymin) in pixels, the smallest size.
            aspect_ratio_thres: the largest relative change of aspect ratio allowed.
            interp: OpenCV interpolation flag.
        """
        if not aspect_ratio_thres >= 0:
            raise DataFlowArgumentError("RandomResize: aspect_ratio_thres must be >= 0")
        if not (isinstance(xrange, (list, tuple)) and len(xrange) == 2):
            raise DataFlowArgumentError(
                f"RandomResize: xrange must be a (min, max) pair, got {xrange!r}"
            )
        if yrange is not None and not (isinstance(yrange, (list, tuple)) and len(yrange) == 2):
            raise DataFlowArgumentError(
                f"RandomResize: yrange must be a (min, max) pair, got {yrange!r}"
            )

        def is_float(tp: Any) -> bool:
            return isinstance(tp[0], float) or isinstance(tp[1], float)

        self._is_scale = is_float(xrange)
        if yrange is not None and is_float(xrange) != is_float(yrange):
            raise DataFlowArgumentError(
                "RandomResize: xrange and yrange must both be floats or ints"
            )
        if aspect_ratio_thres == 0:
            if self._is_scale and yrange is not None and tuple(xrange) != tuple(yrange):
                raise DataFlowArgumentError(
                    "RandomResize: with aspect_ratio_thres=0 the scale is xrange's; yrange must be None"
                )
            if not self._is_scale and yrange is not None:
                logger.warning("RandomResize: aspect_ratio_thres == 0, yrange is not used")
        elif yrange is None:
            raise DataFlowArgumentError(
                "RandomResize: yrange is needed when aspect_ratio_thres > 0"
            )
        self.xrange, self.yrange, self.minimum = xrange, yrange, minimum
        self.aspect_ratio_thres, self.interp = aspect_ratio_thres, interp
        super().__init__()

    def _dest_size(self, h: int, w: int) -> tuple[int, int]:
        if self._is_scale:
            sx = self._rand_range(*self.xrange)
            sy = sx if self.aspect_ratio_thres == 0 else self._rand_range(*self.yrange)  # type: ignore[misc]
            dest_x = max(sx * w, self.minimum[0])
            dest_y = max(sy * h, self.minimum[1])
        else:
            sx = self._rand_range(*self.xrange)
            if self.aspect_ratio_thres == 0:
                sy = sx * 1.0 / w * h
            else:
                sy = self._rand_range(*self.yrange)  # type: ignore[misc]
            dest_x = max(sx, self.minimum[0])
            dest_y = max(sy, self.minimum[1])
        return max(int(dest_x + 0.5), 1), max(int(dest_y + 0.5), 1)

    def get_transform(self, img: np.ndarray) -> BaseTransform:
        h, w = img.shape[:2]
        for _ in range(51):
            dest_x, dest_y = self._dest_size(h, w)
            if self.aspect_ratio_thres > 0:
                old_ratio = w / h
                diff = abs(dest_x / dest_y - old_ratio) / old_ratio
                if diff >= self.aspect_ratio_thres + 1e-5:
                    continue
            return ResizeTransform(h, w, dest_y, dest_x, self.interp)
        logger.warning(
            "RandomResize: no size within the aspect-ratio threshold in 51 draws; size kept"
        )
        return ResizeTransform(h, w, h, w, self.interp)


class Transpose(ImageAugmentor):
    """Transpose (swap rows and columns) with probability ``prob``."""

    def __init__(self, prob: float = 0.5) -> None:
        """
        Args:
            prob: the probability to transpose.
        """
        _check_prob(prob, "Transpose")
        self.prob = prob
        super().__init__()

    def get_transform(self, _: np.ndarray) -> BaseTransform:
        if self.rng.rand() < self.prob:
            return TransposeTransform()
        return NoOpTransform()

"""Affine warps: shift, rotation, rotation with a valid crop, general affine."""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np

from ..errors import DataFlowArgumentError
from .base import ImageAugmentor
from .transform import BaseTransform, CropTransform, TransformList, WarpAffineTransform

__all__ = ["Shift", "Rotation", "RotationAndCropValid", "Affine"]


def _check_step(max_deg: float, step_deg: float | None, who: str) -> None:
    if step_deg is not None and not (max_deg == 180 and step_deg > 0 and max_deg % step_deg == 0):
        raise DataFlowArgumentError(
            f"{who}: step_deg requires max_deg == 180 and a step that divides 180, "
            f"got max_deg={max_deg!r}, step_deg={step_deg!r}"
        )


class Shift(ImageAugmentor):
    """Shift by a random whole number of pixels, up to a fraction of the size each way.

    Out: same shape; the uncovered border is filled by ``border`` (OpenCV border mode).
    """

    def __init__(
        self,
        horiz_frac: float = 0,
        vert_frac: float = 0,
        border: int = cv2.BORDER_REPLICATE,
        border_value: Any = 0,
    ) -> None:
        """
        Args:
            horiz_frac: the largest shift left or right, as a fraction of the width (< 1).
            vert_frac: likewise vertically, as a fraction of the height (< 1).
            border: OpenCV border mode for the uncovered area.
            border_value: the fill value when ``border`` is ``cv2.BORDER_CONSTANT``.
        """
        if not (0 <= horiz_frac < 1 and 0 <= vert_frac < 1):
            raise DataFlowArgumentError(
                f"Shift: horiz_frac and vert_frac must be in [0, 1), got {horiz_frac!r}, {vert_frac!r}"
            )
        self.horiz_frac, self.vert_frac = horiz_frac, vert_frac
        self.border, self.border_value = border, border_value
        super().__init__()

    def get_transform(self, img: np.ndarray) -> BaseTransform:
        max_dx = self.horiz_frac * img.shape[1]
        max_dy = self.vert_frac * img.shape[0]
        dx = np.round(self._rand_range(-max_dx, max_dx))
        dy = np.round(self._rand_range(-max_dy, max_dy))
        mat = np.array([[1, 0, dx], [0, 1, dy]], dtype=np.float64)
        return WarpAffineTransform(
            mat, img.shape[1::-1], borderMode=self.border, borderValue=self.border_value
        )


class Rotation(ImageAugmentor):
    """Rotate by a random angle in [-max_deg, max_deg] around a random center.

    Out: same shape; corners uncovered by the rotated image are filled by ``border``.
    """

    def __init__(
        self,
        max_deg: float,
        center_range: tuple[float, float] = (0, 1),
        interp: int = cv2.INTER_LINEAR,
        border: int = cv2.BORDER_REPLICATE,
        step_deg: float | None = None,
        border_value: Any = 0,
    ) -> None:
        """
        Args:
            max_deg: the largest rotation, in degrees, either way.
            center_range: the range of the center's position, as a fraction of width and height.
            interp: OpenCV interpolation flag.
            border: OpenCV border mode.
            step_deg: if given, the angle is a multiple of it (requires ``max_deg == 180`` and
                a step that divides 180).
            border_value: the fill value when ``border`` is ``cv2.BORDER_CONSTANT``.
        """
        _check_step(max_deg, step_deg, "Rotation")
        self.max_deg, self.center_range, self.interp = max_deg, center_range, interp
        self.border, self.step_deg, self.border_value = border, step_deg, border_value
        super().__init__()

    def get_transform(self, img: np.ndarray) -> BaseTransform:
        center = img.shape[1::-1] * self._rand_range(
            self.center_range[0], self.center_range[1], (2,)
        )
        deg = self._rand_range(-self.max_deg, self.max_deg)
        if self.step_deg:
            deg = deg // self.step_deg * self.step_deg
        # OpenCV's pixel centers are integers: the continuous point c is at c - 0.5.
        mat = cv2.getRotationMatrix2D(
            (float(center[0]) - 0.5, float(center[1]) - 0.5), float(deg), 1
        )
        return WarpAffineTransform(
            mat,
            img.shape[1::-1],
            interp=self.interp,
            borderMode=self.border,
            borderValue=self.border_value,
        )


class RotationAndCropValid(ImageAugmentor):
    """Rotate around the center, then crop the largest axis-aligned rectangle without border.

    Out: a smaller image whose size depends on the angle.
    """

    def __init__(
        self, max_deg: float, interp: int = cv2.INTER_LINEAR, step_deg: float | None = None
    ) -> None:
        """
        Args:
            max_deg, interp, step_deg: as in :class:`Rotation`.
        """
        _check_step(max_deg, step_deg, "RotationAndCropValid")
        self.max_deg, self.interp, self.step_deg = max_deg, interp, step_deg
        super().__init__()

    def _get_deg(self, img: np.ndarray) -> float:
        deg = self._rand_range(-self.max_deg, self.max_deg)
        if self.step_deg:
            deg = deg // self.step_deg * self.step_deg
        return float(deg)

    def get_transform(self, img: np.ndarray) -> BaseTransform:
        deg = self._get_deg(img)
        h, w = img.shape[:2]
        center = (w * 0.5, h * 0.5)
        rot = cv2.getRotationMatrix2D((center[0] - 0.5, center[1] - 0.5), deg, 1)
        warp = WarpAffineTransform(rot, (w, h), interp=self.interp)
        neww, newh = RotationAndCropValid.largest_rotated_rect(w, h, deg)
        neww, newh = max(min(neww, w), 1), max(min(newh, h), 1)
        crop = CropTransform(int(center[1] - newh * 0.5), int(center[0] - neww * 0.5), newh, neww)
        return TransformList([warp, crop])

    @staticmethod
    def largest_rotated_rect(w: int, h: int, angle: float) -> tuple[int, int]:
        """The (width, height) of the largest axis-aligned rectangle inside a w x h rectangle
        rotated by ``angle`` degrees."""
        angle = angle / 180.0 * math.pi
        if w <= 0 or h <= 0:
            return 0, 0
        width_is_longer = w >= h
        side_long, side_short = (w, h) if width_is_longer else (h, w)
        # The answer is the same for angle, -angle and 180 - angle: work in the first quadrant.
        sin_a, cos_a = abs(math.sin(angle)), abs(math.cos(angle))
        if side_short <= 2.0 * sin_a * cos_a * side_long or abs(sin_a - cos_a) < 1e-10:
            # Two corners touch the longer side; the other two lie on its parallel mid-line.
            x = 0.5 * side_short
            wr, hr = (x / sin_a, x / cos_a) if width_is_longer else (x / cos_a, x / sin_a)
        else:
            # All four corners touch the sides.
            cos_2a = cos_a * cos_a - sin_a * sin_a
            wr, hr = (w * cos_a - h * sin_a) / cos_2a, (h * cos_a - w * sin_a) / cos_2a
        return int(np.round(wr)), int(np.round(hr))


class Affine(ImageAugmentor):
    """A random affine warp around the image center: scale, translation, rotation and shear.

    Out: same shape; uncovered areas are filled by ``border``.
    """

    def __init__(
        self,
        scale: tuple[float, float] | None = None,
        translate_frac: tuple[float, float] | None = None,
        rotate_max_deg: float = 0.0,
        shear: float = 0.0,
        interp: int = cv2.INTER_LINEAR,
        border: int = cv2.BORDER_REPLICATE,
        border_value: Any = 0,
    ) -> None:
        """
        Args:
            scale: (a, b): the scale factor is drawn from [a, b]; None keeps the scale.
            translate_frac: (a, b): the largest shift as a fraction of width (a) and height (b),
                either way; None does not translate.
            rotate_max_deg: the largest rotation in degrees, either way.
            shear: the largest shear angle in degrees, either way (0 to 180).
            interp: OpenCV interpolation flag.
            border: OpenCV border mode.
            border_value: the fill value when ``border`` is ``cv2.BORDER_CONSTANT``.
        """
        if scale is not None and not (isinstance(scale, tuple) and len(scale) == 2):
            raise DataFlowArgumentError(
                f"Affine: scale must be a tuple of two floats, got {scale!r}"
            )
        if translate_frac is not None and not (
            isinstance(translate_frac, tuple) and len(translate_frac) == 2
        ):
            raise DataFlowArgumentError(
                f"Affine: translate_frac must be a tuple of two floats, got {translate_frac!r}"
            )
        if not 0.0 <= shear <= 180.0:
            raise DataFlowArgumentError(f"Affine: shear must be between 0 and 180, got {shear!r}")
        self.scale, self.translate_frac = scale, translate_frac
        self.rotate_max_deg, self.shear = rotate_max_deg, shear
        self.interp, self.border, self.border_value = interp, border, border_value
        super().__init__()

    def get_transform(self, img: np.ndarray) -> BaseTransform:
        scale = self._rand_range(self.scale[0], self.scale[1]) if self.scale is not None else 1.0
        if self.translate_frac is not None:
            max_dx = self.translate_frac[0] * img.shape[1]
            max_dy = self.translate_frac[1] * img.shape[0]
            dx = np.round(self._rand_range(-max_dx, max_dx))
            dy = np.round(self._rand_range(-max_dy, max_dy))
        else:
            dx = dy = 0
        if self.shear > 0.0:
            shear = self._rand_range(-self.shear, self.shear)
            sin_shear, cos_shear = math.sin(math.radians(shear)), math.cos(math.radians(shear))
        else:
            sin_shear, cos_shear = 0.0, 1.0

        center = (img.shape[1] * 0.5 - 0.5, img.shape[0] * 0.5 - 0.5)
        deg = self._rand_range(-self.rotate_max_deg, self.rotate_max_deg)
        mat = cv2.getRotationMatrix2D(center, float(deg), float(scale))
        if self.shear > 0.0:
            m00, m01, m10, m11 = mat[0, 0], mat[0, 1], mat[1, 0], mat[1, 1]
            mat[0, 1] = m01 * cos_shear + m00 * sin_shear
            mat[1, 1] = m11 * cos_shear + m10 * sin_shear
            # Move the translation so that the center stays in place.
            mat[0, 2] = center[0] * (1.0 - m00) - center[1] * mat[0, 1]
            mat[1, 2] = -center[0] * m10 + center[1] * (1.0 - mat[1, 1])
        mat[0, 2] += dx
        mat[1, 2] += dy
        return WarpAffineTransform(
            mat, img.shape[1::-1], self.interp, self.border, self.border_value
        )

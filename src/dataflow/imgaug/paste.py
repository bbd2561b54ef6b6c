"""Paste the image onto a larger background canvas."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import numpy as np

from ..errors import DataFlowArgumentError, DatapointError
from .base import ImageAugmentor, shape2d
from .transform import BaseTransform, Transform

__all__ = ["CenterPaste", "BackgroundFiller", "ConstantBackgroundFiller", "RandomPaste"]


class BackgroundFiller:
    """Makes the background canvas for the paste augmentors. Subclasses implement ``_fill``."""

    def fill(self, background_shape: tuple[int, int], img: np.ndarray) -> np.ndarray:
        """A background of ``background_shape`` (h, w) with ``img``'s channels and dtype."""
        return self._fill(tuple(background_shape), img)  # type: ignore[arg-type]

    @abstractmethod
    def _fill(self, background_shape: tuple[int, int], img: np.ndarray) -> np.ndarray:
        pass

    def __repr__(self) -> str:
        return f"imgaug.{type(self).__name__}()"


class ConstantBackgroundFiller(BackgroundFiller):
    """A background of one constant value."""

    def __init__(self, value: float) -> None:
        """
        Args:
            value: the background's value.
        """
        self.value = value

    def _fill(self, background_shape: tuple[int, int], img: np.ndarray) -> np.ndarray:
        shape = background_shape + img.shape[2:] if img.ndim == 3 else background_shape
        return np.full(shape, self.value, dtype=img.dtype)

    def __repr__(self) -> str:
        return f"imgaug.ConstantBackgroundFiller({self.value!r})"


class _PasteTransform(Transform):
    """Paste onto a canvas of ``background_shape`` with the image's top-left pixel at (y0, x0)."""

    def __init__(
        self, background_shape: tuple[int, int], y0: int, x0: int, filler: BackgroundFiller
    ) -> None:
        self.background_shape, self.y0, self.x0, self.filler = background_shape, y0, x0, filler

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        h, w = img.shape[:2]
        bh, bw = self.background_shape
        if self.y0 + h > bh or self.x0 + w > bw:
            raise DatapointError(
                f"cannot paste an image of shape {img.shape} at (y0={self.y0}, x0={self.x0}) onto a "
                f"{bh}x{bw} background"
            )
        background = self.filler.fill(self.background_shape, img)
        background[self.y0 : self.y0 + h, self.x0 : self.x0 + w] = img
        return background

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        coords = np.array(coords, dtype=coords.dtype if coords.dtype.kind == "f" else np.float32)
        coords[:, 0] += self.x0
        coords[:, 1] += self.y0
        return coords


class CenterPaste(ImageAugmentor):
    """Paste the image onto the center of a background canvas.

    Out: ``background_shape`` (h, w) with the input's channels and dtype. The image must fit.
    Coordinates move with the image (tensorpack did not implement them for pastes).
    """

    def __init__(
        self, background_shape: tuple[int, int], background_filler: BackgroundFiller | None = None
    ) -> None:
        """
        Args:
            background_shape: (h, w) of the canvas.
            background_filler: how to make the canvas; default a constant 0.
        """
        self.background_shape = shape2d(
            background_shape, f"{type(self).__name__}: background_shape"
        )
        if background_filler is None:
            background_filler = ConstantBackgroundFiller(0)
        if not isinstance(background_filler, BackgroundFiller):
            raise DataFlowArgumentError(
                f"{type(self).__name__}: background_filler must be a BackgroundFiller, got "
                f"{type(background_filler).__name__}"
            )
        self.background_filler = background_filler
        super().__init__()

    def _check_fits(self, img: Any) -> tuple[int, int]:
        h, w = img.shape[:2]
        if self.background_shape[0] < h or self.background_shape[1] < w:
            raise DatapointError(
                f"{type(self).__name__}: an image of shape {img.shape} does not fit the background "
                f"{self.background_shape}"
            )
        return self.background_shape[0] - h, self.background_shape[1] - w

    def get_transform(self, img: np.ndarray) -> BaseTransform:
        dh, dw = self._check_fits(img)
        return _PasteTransform(
            self.background_shape, int(dh * 0.5), int(dw * 0.5), self.background_filler
        )


class RandomPaste(CenterPaste):
    """Paste the image at a uniformly random position of a background canvas."""

    def get_transform(self, img: np.ndarray) -> BaseTransform:
        dh, dw = self._check_fits(img)
        y0 = int(self.rng.randint(dh + 1))
        x0 = int(self.rng.randint(dw + 1))
        return _PasteTransform(self.background_shape, y0, x0, self.background_filler)

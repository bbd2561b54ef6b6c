"""Color-space and dtype conversions."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from ..errors import DataFlowArgumentError, DatapointError
from .base import PhotometricAugmentor

__all__ = ["ColorSpace", "Grayscale", "ToUint8", "ToFloat32"]


def cvt_color(img: np.ndarray, code: int, who: str) -> np.ndarray:
    """``cv2.cvtColor`` that also takes float64 (computed in float32) and names the caller on error."""
    src = img.astype(np.float32) if img.dtype == np.float64 else img
    try:
        ret = cv2.cvtColor(src, code)
    except cv2.error as e:
        raise DatapointError(
            f"{who}: cannot convert an image of shape {img.shape} and dtype {img.dtype} "
            f"(color conversion code {code}): {str(e).strip().splitlines()[-1]}"
        ) from None
    return ret.astype(np.float64) if img.dtype == np.float64 else ret


def require_channels(img: np.ndarray, channels: int, who: str) -> None:
    if img.ndim != 3 or img.shape[2] != channels:
        raise DatapointError(f"{who} needs HxWx{channels} images, got one of shape {img.shape}")


class ColorSpace(PhotometricAugmentor):
    """Convert to another color space with ``cv2.cvtColor``.

    In: an image with the channels the conversion expects (e.g. HxWx3 for ``COLOR_BGR2HSV``),
    uint8 or float. Out: the converted image, same dtype; with ``keepdims`` a conversion that
    drops the channel axis (to grayscale) returns HxWx1.
    """

    def __init__(self, mode: int, keepdims: bool = True) -> None:
        """
        Args:
            mode: an OpenCV conversion code, e.g. ``cv2.COLOR_BGR2HSV``.
            keepdims: keep a channel axis when the conversion removes it.
        """
        super().__init__()
        if not isinstance(mode, (int, np.integer)) or isinstance(mode, bool):
            raise DataFlowArgumentError(
                f"ColorSpace: mode must be a cv2.COLOR_* code, got {mode!r}"
            )
        self.mode = int(mode)
        self.keepdims = bool(keepdims)

    def _augment(self, img: np.ndarray, _: Any) -> np.ndarray:
        ret = cvt_color(img, self.mode, type(self).__name__)
        if self.keepdims and ret.ndim != img.ndim and ret.ndim == 2:
            ret = ret[:, :, np.newaxis]
        return ret


class Grayscale(ColorSpace):
    """Convert an HxWx3 RGB or BGR image to grayscale.

    Out: HxWx1 (``keepdims``, the default), HxW, or HxWx3 with the gray values repeated
    (``keepshape``); same dtype as the input.
    """

    def __init__(self, keepdims: bool = True, rgb: bool = False, keepshape: bool = False) -> None:
        """
        Args:
            keepdims: return HxWx1 rather than HxW.
            rgb: the input is RGB (default: BGR, OpenCV's order).
            keepshape: repeat the gray image into 3 channels (requires ``keepdims``).
        """
        if keepshape and not keepdims:
            raise DataFlowArgumentError("Grayscale: keepshape=True requires keepdims=True")
        super().__init__(cv2.COLOR_RGB2GRAY if rgb else cv2.COLOR_BGR2GRAY, keepdims)
        self.rgb = bool(rgb)
        self.keepshape = bool(keepshape)

    def _augment(self, img: np.ndarray, _: Any) -> np.ndarray:
        require_channels(img, 3, "Grayscale")
        ret = super()._augment(img, _)
        if self.keepshape:
            return np.concatenate([ret] * 3, axis=2)
        return ret


class ToUint8(PhotometricAugmentor):
    """Clip to [0, 255] and convert to uint8 (e.g. to make images cheaper to send)."""

    def _augment(self, img: np.ndarray, _: Any) -> np.ndarray:
        if img.dtype == np.uint8:
            return img
        return np.clip(img, 0, 255).astype(np.uint8)


class ToFloat32(PhotometricAugmentor):
    """Convert to float32 (values unchanged), e.g. before augmentors that lose precision on uint8."""

    def _augment(self, img: np.ndarray, _: Any) -> np.ndarray:
        return img.astype(np.float32)

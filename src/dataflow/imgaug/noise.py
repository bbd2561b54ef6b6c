"""Noise: JPEG re-compression, Gaussian noise, salt and pepper."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from ..errors import DataFlowArgumentError, DatapointError
from .base import PhotometricAugmentor

__all__ = ["JpegNoise", "GaussianNoise", "SaltPepperNoise"]


class JpegNoise(PhotometricAugmentor):
    """Re-encode as JPEG at a random quality and decode again.

    Works on HxW, HxWx1 and HxWx3 images (3 channels are taken as BGR, OpenCV's order; the
    round trip is the same for RGB up to the encoder's chroma handling). Float images are clipped
    to [0, 255] and rounded for the round trip; the result has the input's shape and dtype
    (tensorpack always returned 3 channels).
    """

    def __init__(self, quality_range: tuple[int, int] = (40, 100)) -> None:
        """
        Args:
            quality_range: [low, high) of the JPEG quality.
        """
        if not (isinstance(quality_range, (list, tuple)) and len(quality_range) == 2):
            raise DataFlowArgumentError(
                f"JpegNoise: quality_range must be a (low, high) pair, got {quality_range!r}"
            )
        if not 0 <= quality_range[0] < quality_range[1] <= 101:
            raise DataFlowArgumentError(
                f"JpegNoise: quality_range must satisfy 0 <= low < high <= 101, got {quality_range!r}"
            )
        self.quality_range = quality_range
        super().__init__()

    def _get_augment_params(self, img: np.ndarray) -> Any:
        return int(self.rng.randint(*self.quality_range))

    def _augment(self, img: np.ndarray, q: Any) -> np.ndarray:
        if img.ndim == 3 and img.shape[2] not in (1, 3):
            raise DatapointError(
                f"JpegNoise needs 1 or 3 channels, got an image of shape {img.shape}"
            )
        src = img if img.dtype == np.uint8 else np.clip(np.rint(img), 0, 255).astype(np.uint8)
        ok, enc = cv2.imencode(".jpg", src, [cv2.IMWRITE_JPEG_QUALITY, int(q)])
        if not ok:
            raise DatapointError(
                f"JpegNoise: OpenCV could not encode an image of shape {img.shape}"
            )
        flag = cv2.IMREAD_GRAYSCALE if src.ndim == 2 or src.shape[2] == 1 else cv2.IMREAD_COLOR
        dec = cv2.imdecode(enc, flag)
        if dec is None:
            raise DatapointError(f"JpegNoise: OpenCV could not decode its own JPEG of {img.shape}")
        return np.reshape(dec, img.shape).astype(img.dtype, copy=False)


class GaussianNoise(PhotometricAugmentor):
    """Add noise drawn from N(0, sigma^2) to every value."""

    def __init__(self, sigma: float = 1, clip: bool = True) -> None:
        """
        Args:
            sigma: the noise's standard deviation.
            clip: clip to [0, 255] also for float images (uint8 images are always clipped).
        """
        self.sigma, self.clip = sigma, clip
        super().__init__()

    def _get_augment_params(self, img: np.ndarray) -> Any:
        return self.rng.randn(*img.shape)

    def _augment(self, img: np.ndarray, noise: Any) -> np.ndarray:
        old_dtype = img.dtype
        ret = img + noise * self.sigma
        if self.clip or old_dtype == np.uint8:
            ret = np.clip(ret, 0, 255)
        return ret.astype(old_dtype, copy=False)


class SaltPepperNoise(PhotometricAugmentor):
    """Set random values to 255 (probability ``white_prob``) or 0 (``black_prob``), per channel.

    Writes into the image it is applied to.
    """

    def __init__(self, white_prob: float = 0.05, black_prob: float = 0.05) -> None:
        """
        Args:
            white_prob: the probability for a value to become 255.
            black_prob: the probability for a value to become 0.
        """
        if not (white_prob >= 0 and black_prob >= 0 and white_prob + black_prob <= 1):
            raise DataFlowArgumentError(
                "SaltPepperNoise: probabilities must be >= 0 and sum to at most 1, got "
                f"white_prob={white_prob!r}, black_prob={black_prob!r}"
            )
        self.white_prob, self.black_prob = white_prob, black_prob
        super().__init__()

    def _get_augment_params(self, img: np.ndarray) -> Any:
        return self.rng.uniform(low=0, high=1, size=img.shape)

    def _augment(self, img: np.ndarray, param: Any) -> np.ndarray:
        img[param > (1 - self.white_prob)] = 255
        img[param < self.black_prob] = 0
        return img

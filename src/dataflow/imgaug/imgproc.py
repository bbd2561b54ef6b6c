"""Pixel-value augmentors: hue, brightness, contrast, blur, gamma, saturation, lighting, ...

All keep the input's shape and dtype unless they say otherwise. ``clip`` arguments clip to
[0, 255]; uint8 images are always clipped before being cast back.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from ..errors import DataFlowArgumentError
from .base import PhotometricAugmentor, _warn_once
from .convert import cvt_color, require_channels

__all__ = [
    "Hue",
    "Brightness",
    "BrightnessScale",
    "Contrast",
    "MeanVarianceNormalize",
    "GaussianBlur",
    "Gamma",
    "Clip",
    "Saturation",
    "Lighting",
    "MinMaxNormalize",
]


def _check_pair(value: Any, who: str, name: str) -> None:
    if not (isinstance(value, (list, tuple)) and len(value) == 2):
        raise DataFlowArgumentError(f"{who}: {name} must be a (low, high) pair, got {value!r}")


def _finish(img: np.ndarray, old_dtype: np.dtype, clip: bool) -> np.ndarray:
    if clip or old_dtype == np.uint8:
        img = np.clip(img, 0, 255)
    return img.astype(old_dtype, copy=False)


class Hue(PhotometricAugmentor):
    """Rotate the hue by a random offset (in OpenCV's 0-180 hue units). In: HxWx3 RGB or BGR."""

    def __init__(self, range: tuple[float, float] = (0, 180), rgb: bool = True) -> None:  # noqa: A002
        """
        Args:
            range: the range of the hue offset (at most [-90, 90] is meaningful).
            rgb: the input is RGB (False: BGR).
        """
        _check_pair(range, "Hue", "range")
        self.range = range
        self.rgb = bool(rgb)
        super().__init__()

    def _get_augment_params(self, _: np.ndarray) -> Any:
        return self._rand_range(*self.range)

    def _augment(self, img: np.ndarray, hue: Any) -> np.ndarray:
        require_channels(img, 3, "Hue")
        hsv = cvt_color(img, cv2.COLOR_RGB2HSV if self.rgb else cv2.COLOR_BGR2HSV, "Hue")
        if hsv.dtype == np.uint8:
            # OpenCV keeps 8-bit hue in [0, 180).
            hsv[..., 0] = (hsv[..., 0].astype(np.float32) + hue) % 180
        else:
            hsv[..., 0] = (hsv[..., 0] + 2 * hue) % 360  # float hue is in degrees
        return cvt_color(hsv, cv2.COLOR_HSV2RGB if self.rgb else cv2.COLOR_HSV2BGR, "Hue")


class Brightness(PhotometricAugmentor):
    """Add a random value in [-delta, delta] to every pixel."""

    def __init__(self, delta: float, clip: bool = True) -> None:
        """
        Args:
            delta: the largest change (> 0).
            clip: clip to [0, 255] also for float images.
        """
        if not delta > 0:
            raise DataFlowArgumentError(f"Brightness: delta must be > 0, got {delta!r}")
        self.delta, self.clip = delta, clip
        super().__init__()

    def _get_augment_params(self, _: np.ndarray) -> Any:
        return self._rand_range(-self.delta, self.delta)

    def _augment(self, img: np.ndarray, v: Any) -> np.ndarray:
        old_dtype = img.dtype
        out = img.astype(np.float32)
        out += v
        return _finish(out, old_dtype, self.clip)


class BrightnessScale(PhotometricAugmentor):
    """Multiply every pixel by a random factor in [range[0], range[1])."""

    def __init__(self, range: tuple[float, float], clip: bool = True) -> None:  # noqa: A002
        """
        Args:
            range: the range of the factor.
            clip: clip to [0, 255] also for float images.
        """
        _check_pair(range, "BrightnessScale", "range")
        self.range, self.clip = range, clip
        super().__init__()

    def _get_augment_params(self, _: np.ndarray) -> Any:
        return self._rand_range(*self.range)

    def _augment(self, img: np.ndarray, v: Any) -> np.ndarray:
        old_dtype = img.dtype
        out = img.astype(np.float32)
        out *= v
        return _finish(out, old_dtype, self.clip)


class Contrast(PhotometricAugmentor):
    """``x = (x - mean) * factor + mean`` with a random factor.

    The mean is per channel (``rgb=None``), or the mean of the gray image (``rgb`` True/False:
    an HxWx3 input is RGB/BGR); for HxW images (and HxWxC with C != 3 when ``rgb`` is given) it is
    the mean of the whole image.
    """

    def __init__(
        self, factor_range: tuple[float, float], rgb: bool | None = None, clip: bool = True
    ) -> None:
        """
        Args:
            factor_range: the range of the contrast factor.
            rgb: None for per-channel means; True/False for the gray mean of an RGB/BGR image.
            clip: clip to [0, 255] also for float images.
        """
        _check_pair(factor_range, "Contrast", "factor_range")
        self.factor_range, self.rgb, self.clip = factor_range, rgb, clip
        super().__init__()

    def _get_augment_params(self, _: np.ndarray) -> Any:
        return self._rand_range(*self.factor_range)

    def _augment(self, img: np.ndarray, r: Any) -> np.ndarray:
        old_dtype = img.dtype
        if img.ndim == 3 and self.rgb is None:
            mean = np.mean(img, axis=(0, 1), keepdims=True)
        elif img.ndim == 3 and img.shape[2] == 3:
            code = cv2.COLOR_RGB2GRAY if self.rgb else cv2.COLOR_BGR2GRAY
            mean = np.mean(cv2.cvtColor(img.astype(np.float32), code))
        else:  # a gray image (or channels that are not a color image): its own mean
            mean = np.mean(img)
        out = img * r + mean * (1 - r)
        return _finish(out, old_dtype, self.clip)


class MeanVarianceNormalize(PhotometricAugmentor):
    """``x = (x - mean) / max(std, 1 / sqrt(number of values))``. Always returns float32."""

    def __init__(self, all_channel: bool = True) -> None:
        """
        Args:
            all_channel: one mean and std for the whole image (False: per channel).
        """
        self.all_channel = all_channel

    def _augment(self, img: np.ndarray, _: Any) -> np.ndarray:
        img = img.astype(np.float32)
        if self.all_channel or img.ndim == 2:
            mean, std = np.mean(img), np.std(img)
        else:
            mean = np.mean(img, axis=(0, 1), keepdims=True)
            std = np.std(img, axis=(0, 1), keepdims=True)
        std = np.maximum(std, 1.0 / np.sqrt(np.prod(img.shape)))
        return ((img - mean) / std).astype(np.float32, copy=False)


class GaussianBlur(PhotometricAugmentor):
    """Gaussian blur with a random odd window size ``2 * size + 1``."""

    def __init__(
        self,
        size_range: int | tuple[int, int] = (0, 3),
        sigma_range: tuple[float, float] = (0, 0),
        symmetric: bool = True,
        max_size: int | None = None,
    ) -> None:
        """
        Args:
            size_range: ``size`` is drawn from [low, high); an int n means (0, n).
            sigma_range: the range of sigma; 0 lets OpenCV derive it from the window size.
            symmetric: the same size and sigma for x and y.
            max_size: deprecated, same as ``size_range=(0, max_size)``.
        """
        if not isinstance(size_range, (list, tuple)):
            size_range = (0, size_range)
        if max_size is not None:
            _warn_once(
                "GaussianBlur.max_size", "GaussianBlur(max_size=) is deprecated: use size_range="
            )
            size_range = (0, max_size)
        _check_pair(size_range, "GaussianBlur", "size_range")
        _check_pair(sigma_range, "GaussianBlur", "sigma_range")
        if not 0 <= size_range[0] < size_range[1]:
            raise DataFlowArgumentError(
                f"GaussianBlur: size_range must satisfy 0 <= low < high, got {size_range!r}"
            )
        self.size_range, self.sigma_range = size_range, sigma_range
        self.symmetric, self.max_size = symmetric, max_size
        super().__init__()

    def _get_augment_params(self, _: np.ndarray) -> Any:
        size_xy = self.rng.randint(self.size_range[0], self.size_range[1], size=(2,)) * 2 + 1
        sigma_xy = self._rand_range(*self.sigma_range, size=(2,))
        if self.symmetric:
            size_xy[1] = size_xy[0]
            sigma_xy[1] = sigma_xy[0]
        return (int(size_xy[0]), int(size_xy[1])), (float(sigma_xy[0]), float(sigma_xy[1]))

    def _augment(self, img: np.ndarray, prm: Any) -> np.ndarray:
        size, sigma = prm
        out = cv2.GaussianBlur(
            img, size, sigmaX=sigma[0], sigmaY=sigma[1], borderType=cv2.BORDER_REPLICATE
        )
        return np.reshape(out, img.shape)


class Gamma(PhotometricAugmentor):
    """``x = 255 * (x / 255) ** (1 / (1 + gamma))`` with a random gamma; clips to [0, 255] first.

    uint8 images go through a lookup table; float images are computed exactly (tensorpack rounded
    them to uint8 first).
    """

    def __init__(self, range: tuple[float, float] = (-0.5, 0.5)) -> None:  # noqa: A002
        """
        Args:
            range: the range of gamma (> -1).
        """
        _check_pair(range, "Gamma", "range")
        if not range[0] > -1:
            raise DataFlowArgumentError(f"Gamma: range must be above -1, got {range!r}")
        self.range = range
        super().__init__()

    def _get_augment_params(self, _: np.ndarray) -> Any:
        return self._rand_range(*self.range)

    def _augment(self, img: np.ndarray, gamma: Any) -> np.ndarray:
        exponent = 1.0 / (1.0 + float(gamma))
        if img.dtype == np.uint8:
            lut = ((np.arange(256, dtype=np.float32) / 255) ** exponent * 255).astype(np.uint8)
            return np.reshape(cv2.LUT(img, lut), img.shape)
        out = np.clip(img, 0, 255) / 255.0
        return (out**exponent * 255).astype(img.dtype, copy=False)


class Clip(PhotometricAugmentor):
    """Clip pixel values to [min, max]."""

    def __init__(self, min: float = 0, max: float = 255) -> None:  # noqa: A002
        """
        Args:
            min, max: the clip range.
        """
        self.min, self.max = min, max

    def _augment(self, img: np.ndarray, _: Any) -> np.ndarray:
        return np.clip(img, self.min, self.max).astype(img.dtype, copy=False)


class Saturation(PhotometricAugmentor):
    """Blend with the gray image by a random factor in [1 - alpha, 1 + alpha] (fb.resnet.torch).

    In: HxWx3 RGB or BGR.
    """

    def __init__(self, alpha: float = 0.4, rgb: bool = True, clip: bool = True) -> None:
        """
        Args:
            alpha: the largest change of saturation (< 1).
            rgb: the input is RGB (False: BGR).
            clip: clip to [0, 255] also for float images.
        """
        if not alpha < 1:
            raise DataFlowArgumentError(f"Saturation: alpha must be < 1, got {alpha!r}")
        self.alpha, self.rgb, self.clip = alpha, bool(rgb), clip
        super().__init__()

    def _get_augment_params(self, _: np.ndarray) -> Any:
        return 1 + self._rand_range(-self.alpha, self.alpha)

    def _augment(self, img: np.ndarray, v: Any) -> np.ndarray:
        require_channels(img, 3, "Saturation")
        old_dtype = img.dtype
        grey = cvt_color(img, cv2.COLOR_RGB2GRAY if self.rgb else cv2.COLOR_BGR2GRAY, "Saturation")
        out = img * v + (grey * (1 - v))[:, :, np.newaxis]
        return _finish(out, old_dtype, self.clip)


class Lighting(PhotometricAugmentor):
    """AlexNet's PCA lighting noise (as in fb.resnet.torch). In: HxWx3."""

    def __init__(self, std: float, eigval: Any, eigvec: Any, clip: bool = True) -> None:
        """
        Args:
            std: the standard deviation of the random weights.
            eigval: the 3 eigenvalues of the pixel covariance.
            eigvec: 3x3, one eigenvector per column.
            clip: clip to [0, 255] also for float images.
        """
        eigval = np.asarray(eigval, dtype=np.float32)
        eigvec = np.asarray(eigvec, dtype=np.float32)
        if eigval.shape != (3,) or eigvec.shape != (3, 3):
            raise DataFlowArgumentError(
                f"Lighting: eigval must have shape (3,) and eigvec (3, 3), got {eigval.shape} "
                f"and {eigvec.shape}"
            )
        self.std, self.eigval, self.eigvec, self.clip = std, eigval, eigvec, clip
        super().__init__()

    def _get_augment_params(self, img: np.ndarray) -> Any:
        require_channels(img, 3, "Lighting")
        return (self.rng.randn(3) * self.std).astype(np.float32)

    def _augment(self, img: np.ndarray, v: Any) -> np.ndarray:
        require_channels(img, 3, "Lighting")
        old_dtype = img.dtype
        inc = np.dot(self.eigvec, (v * self.eigval).reshape((3, 1))).reshape((3,))
        return _finish(np.add(img, inc), old_dtype, self.clip)


class MinMaxNormalize(PhotometricAugmentor):
    """Scale linearly to [min, max]. Always returns float32; a constant image becomes ``min``."""

    def __init__(self, min: float = 0, max: float = 255, all_channel: bool = True) -> None:  # noqa: A002
        """
        Args:
            min, max: the new range.
            all_channel: one range for the whole image (False: per channel).
        """
        self.min, self.max, self.all_channel = min, max, all_channel

    def _augment(self, img: np.ndarray, _: Any) -> np.ndarray:
        img = img.astype(np.float32)
        if self.all_channel or img.ndim == 2:
            lo, hi = np.min(img), np.max(img)
        else:
            lo = np.min(img, axis=(0, 1), keepdims=True)
            hi = np.max(img, axis=(0, 1), keepdims=True)
        span = np.where(hi > lo, hi - lo, 1.0)
        return ((self.max - self.min) * (img - lo) / span + self.min).astype(np.float32, copy=False)

"""Wrappers for augmentors of other libraries: imgaug (aleju/imgaug) and Albumentations.

Neither library is a dependency: constructing a wrapper imports it and raises a clear
ImportError when it is missing.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._lazy import require
from .base import ImageAugmentor
from .transform import BaseTransform, Transform

__all__ = ["IAAugmentor", "Albumentations"]


def _import(module: str, who: str) -> Any:
    # Neither library is in an extra: the message names the pip package itself.
    try:
        return require(module, None, who=who)
    except ImportError:
        raise
    except Exception as e:  # installed but broken (imgaug 0.4 fails on numpy 2 with AttributeError)
        raise ImportError(
            f"{who}: {module} is installed but fails to import ({type(e).__name__}: {e})",
            name=module,
        ) from e


class IAATransform(Transform):
    """A deterministic (``to_deterministic()``) imgaug augmenter applied to images and points."""

    def __init__(self, aug: Any, img_shape: tuple[int, ...]) -> None:
        self.aug, self.img_shape = aug, img_shape

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        return self.aug.augment_image(img)

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        ia = _import("imgaug", "IAAugmentor")
        points = ia.KeypointsOnImage(
            [ia.Keypoint(x=float(x), y=float(y)) for x, y in coords], shape=self.img_shape
        )
        augmented = self.aug.augment_keypoints([points])[0].keypoints
        return np.asarray([[p.x, p.y] for p in augmented], dtype=np.float32).reshape(-1, 2)


class IAAugmentor(ImageAugmentor):
    """Wrap an augmenter of the imgaug library (https://github.com/aleju/imgaug).

    Images and coordinates are supported; imgaug handles coordinates only approximately, supports
    uint8 images only, and its augmenters must keep the image's shape. imgaug draws from its own
    random state, not from this library's seeding scheme.

    Example::

        from imgaug import augmenters as iaa  # aleju/imgaug, not dataflow.imgaug
        from dataflow import imgaug
        aug = imgaug.IAAugmentor(iaa.Sequential([iaa.Sharpen(alpha=(0, 1)), iaa.Fliplr(0.5)]))
    """

    def __init__(self, augmentor: Any) -> None:
        """
        Args:
            augmentor: an ``imgaug.augmenters.Augmenter``.
        """
        _import("imgaug", "IAAugmentor")
        self._aug = augmentor
        super().__init__()

    def __repr__(self) -> str:
        return f"imgaug.IAAugmentor({self._aug!r})"

    __str__ = __repr__

    def get_transform(self, img: np.ndarray) -> BaseTransform:
        return IAATransform(self._aug.to_deterministic(), img.shape)


class AlbumentationsTransform(Transform):
    """An Albumentations transform with fixed parameters, applied to images only."""

    def __init__(self, aug: Any, param: dict[str, Any]) -> None:
        self.aug, self.param = aug, param

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        if hasattr(self.aug, "apply_with_params"):
            return self.aug.apply_with_params(dict(self.param), image=img)["image"]
        return self.aug.apply(img, **self.param)


class Albumentations(ImageAugmentor):
    """Wrap a transform of the Albumentations library (https://github.com/albumentations-team).

    Images only: Albumentations does not expose coordinate transforms through this interface, so
    ``apply_coords`` raises NotImplementedError. The wrapped transform's own probability ``p`` is
    not used (set it to 1); Albumentations draws from its own random state.

    Example::

        import albumentations as A
        from dataflow import imgaug
        aug = imgaug.Albumentations(A.RandomRotate90(p=1))
    """

    def __init__(self, augmentor: Any) -> None:
        """
        Args:
            augmentor: an ``albumentations`` transform (a ``BasicTransform``).
        """
        _import("albumentations", "Albumentations")
        self._aug = augmentor
        super().__init__()

    def __repr__(self) -> str:
        return f"imgaug.Albumentations({self._aug!r})"

    __str__ = __repr__

    def get_transform(self, img: np.ndarray) -> BaseTransform:
        # Draw the parameters the way Albumentations' own __call__ does, without applying them.
        aug = self._aug
        data = {"image": img}
        params = dict(aug.get_params())
        if hasattr(aug, "update_transform_params"):  # Albumentations >= 1.4: adds the shape etc.
            params = aug.update_transform_params(params=params, data=data)
        else:
            params.setdefault("shape", img.shape)
        if hasattr(aug, "get_params_dependent_on_data"):  # parameters that depend on the image
            params.update(aug.get_params_dependent_on_data(params=params, data=data))
        return AlbumentationsTransform(aug, params)

"""Deterministic transforms: what an augmentor's random draw turns into.

A :class:`Transform` applies one fixed operation to an image (``apply_image``) and to coordinates
(``apply_coords``), so masks and keypoints move exactly as the image's pixels do.

Coordinates are an Nx2 float array of (x, y) rows in continuous pixel coordinates: pixel ``(row i,
column j)`` covers ``[j, j+1) x [i, i+1)``, so its center is ``(j + 0.5, i + 0.5)``. This is the
convention of tensorpack's flip and resize; tensorpack's affine warps used OpenCV's
integer-centered convention for coordinates instead, which put rotated keypoints off their pixel by
``(I - A) @ (0.5, 0.5)`` for the warp's linear part ``A``: 1 px at 90 degrees, 1.4 px at 180.
Coordinates keep their float dtype (other dtypes become float32).
``apply_coords`` returns a new array and never modifies its input; ``apply_image`` may modify its
input in place where the transform says so (cutout, salt-and-pepper noise).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .._lazy import require
from ..errors import DataFlowArgumentError, DataFlowError, DatapointError
from ._repr import default_repr

# The first module of the package to run (base.py imports it): without OpenCV, name the extra.
cv2 = require("cv2", "image", who="dataflow.imgaug")

__all__ = [
    "Transform",
    "ResizeTransform",
    "CropTransform",
    "WarpAffineTransform",
    "FlipTransform",
    "TransposeTransform",
    "NoOpTransform",
    "PhotometricTransform",
    "TransformFactory",
    "TransformList",
    "LazyTransform",
]


def _float_coords(coords: Any) -> np.ndarray:
    """A float copy of ``coords`` (float dtypes kept, anything else as float32)."""
    coords = np.asarray(coords)
    dtype = coords.dtype if coords.dtype.kind == "f" else np.float32
    return np.array(coords, dtype=dtype, copy=True)


def _keep_channel_axis(img: np.ndarray, ret: np.ndarray) -> np.ndarray:
    # OpenCV drops a trailing axis of length 1; put it back.
    if img.ndim == 3 and ret.ndim == 2:
        return ret[:, :, np.newaxis]
    return ret


class BaseTransform:
    """Base class of every transform, for ``isinstance`` checks."""

    def _init(self, params: dict[str, Any] | None = None) -> None:
        if params:
            for k, v in params.items():
                if k != "self" and not k.startswith("_"):
                    setattr(self, k, v)


class Transform(BaseTransform):
    """A deterministic image transformation.

    Subclasses implement ``apply_image(img)`` and, where it makes sense, ``apply_coords(coords)``
    (Nx2 float (x, y) rows; see the module docstring for the convention). Any other
    ``apply_<name>`` that a subclass lacks raises ``NotImplementedError`` when called.
    """

    def __init__(self) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        if name.startswith("apply_"):

            def missing(x: Any) -> Any:
                raise NotImplementedError(f"{type(self).__name__} does not implement {name}")

            return missing
        raise AttributeError(f"{type(self).__name__} object has no attribute {name!r}")

    def __repr__(self) -> str:
        return default_repr(self)

    __str__ = __repr__


class ResizeTransform(Transform):
    """Resize an HxW image to new_h x new_w with OpenCV."""

    def __init__(self, h: int, w: int, new_h: int, new_w: int, interp: int) -> None:
        """
        Args:
            h, w: the size of the images it applies to.
            new_h, new_w: the size after resizing.
            interp: an OpenCV interpolation flag (``cv2.INTER_*``).
        """
        self.h, self.w, self.new_h, self.new_w = int(h), int(w), int(new_h), int(new_w)
        self.interp = interp

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        if img.shape[:2] != (self.h, self.w):
            raise DatapointError(
                f"ResizeTransform made for {self.h}x{self.w} images got one of shape {img.shape}"
            )
        ret = cv2.resize(img, (self.new_w, self.new_h), interpolation=self.interp)
        return _keep_channel_axis(img, ret)

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        coords = _float_coords(coords)
        coords[:, 0] *= self.new_w / self.w
        coords[:, 1] *= self.new_h / self.h
        return coords


class CropTransform(Transform):
    """Crop the h x w window whose top-left pixel is (y0, x0). Returns a view of the input."""

    def __init__(self, y0: int, x0: int, h: int, w: int) -> None:
        self.y0, self.x0, self.h, self.w = int(y0), int(x0), int(h), int(w)

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        y0, x0, h, w = self.y0, self.x0, self.h, self.w
        if y0 < 0 or x0 < 0 or y0 + h > img.shape[0] or x0 + w > img.shape[1]:
            raise DatapointError(
                f"CropTransform of {h}x{w} at (y0={y0}, x0={x0}) does not fit an image of shape "
                f"{img.shape}"
            )
        return img[y0 : y0 + h, x0 : x0 + w]

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        coords = _float_coords(coords)
        coords[:, 0] -= self.x0
        coords[:, 1] -= self.y0
        return coords


class WarpAffineTransform(Transform):
    """``cv2.warpAffine`` with a fixed 2x3 matrix (OpenCV's convention: integer pixel centers).

    ``apply_coords`` maps points with the same matrix, converted to this module's coordinate
    convention, so keypoints land exactly where their pixels go.
    """

    def __init__(
        self,
        mat: np.ndarray,
        dsize: tuple[int, int],
        interp: int = cv2.INTER_LINEAR,
        borderMode: int = cv2.BORDER_CONSTANT,  # noqa: N803  (tensorpack's argument name)
        borderValue: Any = 0,  # noqa: N803
    ) -> None:
        """
        Args:
            mat: a 2x3 affine matrix mapping source to destination pixel positions.
            dsize: the output size as (width, height), as OpenCV takes it.
            interp, borderMode, borderValue: passed to ``cv2.warpAffine``.
        """
        self.mat = np.asarray(mat, dtype=np.float64)
        if self.mat.shape != (2, 3):
            raise DataFlowArgumentError(
                f"WarpAffineTransform: mat must be 2x3, got {self.mat.shape}"
            )
        self.dsize = (int(dsize[0]), int(dsize[1]))
        self.interp = interp
        self.borderMode = borderMode
        self.borderValue = borderValue

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        ret = cv2.warpAffine(
            img,
            self.mat,
            self.dsize,
            flags=self.interp,
            borderMode=self.borderMode,
            borderValue=self.borderValue,
        )
        return _keep_channel_axis(img, ret)

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        coords = _float_coords(coords)
        # To OpenCV's integer-centered positions, through the matrix, and back.
        centered = coords - 0.5
        out = centered @ self.mat[:, :2].T + self.mat[:, 2] + 0.5
        return out.astype(coords.dtype, copy=False)


class FlipTransform(Transform):
    """Flip horizontally (``horiz=True``) or vertically. Returns a view of the input."""

    def __init__(self, h: int, w: int, horiz: bool = True) -> None:
        """
        Args:
            h, w: the size of the images it applies to (needed for coordinates).
            horiz: flip left-right when True, top-bottom when False.
        """
        self.h, self.w, self.horiz = int(h), int(w), bool(horiz)

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        return img[:, ::-1] if self.horiz else img[::-1]

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        coords = _float_coords(coords)
        if self.horiz:
            coords[:, 0] = self.w - coords[:, 0]
        else:
            coords[:, 1] = self.h - coords[:, 1]
        return coords


class TransposeTransform(Transform):
    """Swap the image's rows and columns (HxW -> WxH); (x, y) -> (y, x)."""

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        if img.ndim == 2 or img.shape[2] <= 4:
            return _keep_channel_axis(img, cv2.transpose(img))
        return np.ascontiguousarray(img.swapaxes(0, 1))

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        return _float_coords(coords)[:, ::-1].copy()


class NoOpTransform(Transform):
    """A transform that changes nothing: every ``apply_*`` returns its input."""

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        return img

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        return coords

    def __getattr__(self, name: str) -> Any:
        if name.startswith("apply_"):
            return _identity
        raise AttributeError(f"NoOpTransform object has no attribute {name!r}")


def _identity(x: Any) -> Any:
    return x


class PhotometricTransform(Transform):
    """A transform of pixel values only: ``apply_image`` is ``func``, coordinates are unchanged."""

    def __init__(self, func: Callable[[np.ndarray], np.ndarray], name: str | None = None) -> None:
        """
        Args:
            func: img -> img.
            name: shown by repr.
        """
        self._func = func
        self._name = name

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        return self._func(img)

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        return coords

    def __repr__(self) -> str:
        return f"imgaug.PhotometricTransform({self._name or repr(self._func)})"

    __str__ = __repr__


class TransformFactory(Transform):
    """A transform made of user functions: ``TransformFactory(apply_image=f, apply_coords=g)``."""

    def __init__(self, name: str | None = None, **kwargs: Callable[[Any], Any]) -> None:
        """
        Args:
            name: shown by repr.
            kwargs: ``apply_<what>=function`` pairs.
        """
        for k, v in kwargs.items():
            if not k.startswith("apply_"):
                raise DataFlowArgumentError(
                    f"TransformFactory: unknown argument {k!r} (only apply_* functions)"
                )
            if not callable(v):
                raise DataFlowArgumentError(f"TransformFactory: {k} must be callable")
            setattr(self, k, v)
        self._name = name

    def __repr__(self) -> str:
        return f"imgaug.TransformFactory({self._name or ''})"

    __str__ = __repr__


class TransformList(BaseTransform):
    """Apply transforms in order; ``apply_<what>`` chains each one's ``apply_<what>``."""

    def __init__(self, tfms: list[BaseTransform]) -> None:
        for i, t in enumerate(tfms):
            if not isinstance(t, BaseTransform):
                raise DataFlowArgumentError(f"TransformList: tfms[{i}] is not a Transform: {t!r}")
        self.tfms = list(tfms)

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        for t in self.tfms:
            img = t.apply_image(img)  # type: ignore[attr-defined]
        return img

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        for t in self.tfms:
            coords = t.apply_coords(coords)  # type: ignore[attr-defined]
        return coords

    def _apply(self, x: Any, meth: str) -> Any:
        for t in self.tfms:
            x = getattr(t, meth)(x)
        return x

    def __getattr__(self, name: str) -> Any:
        if name.startswith("apply_"):
            return lambda x: self._apply(x, name)
        raise AttributeError(f"TransformList object has no attribute {name!r}")

    def __repr__(self) -> str:
        inner = ",\n".join("  " + repr(t) for t in self.tfms)
        return f"imgaug.TransformList([\n{inner}])"

    __str__ = __repr__

    def __add__(self, other: BaseTransform) -> TransformList:
        more = other.tfms if isinstance(other, TransformList) else [other]
        return TransformList(self.tfms + more)

    def __iadd__(self, other: BaseTransform) -> TransformList:
        more = other.tfms if isinstance(other, TransformList) else [other]
        self.tfms.extend(more)
        return self

    def __radd__(self, other: BaseTransform) -> TransformList:
        more = other.tfms if isinstance(other, TransformList) else [other]
        return TransformList(more + self.tfms)


class LazyTransform(BaseTransform):
    """A transform created from the first image it is applied to.

    ``get_transform(img)`` runs at the first ``apply_image``; later calls (images or coordinates)
    use the transform it returned. Applying it to coordinates before any image is an error.
    """

    def __init__(self, get_transform: Callable[[np.ndarray], BaseTransform]) -> None:
        self.get_transform = get_transform
        self._transform: Any = None

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        if self._transform is None:
            self._transform = self.get_transform(img)
        return self._transform.apply_image(img)

    def _apply(self, x: Any, meth: str) -> Any:
        if self._transform is None:
            raise DataFlowError(
                f"LazyTransform.{meth} was called before apply_image: the transform is drawn from "
                "the image, so apply it to the image first"
            )
        return getattr(self._transform, meth)(x)

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        return self._apply(coords, "apply_coords")

    def __getattr__(self, name: str) -> Any:
        if name.startswith("apply_"):
            return lambda x: self._apply(x, name)
        raise AttributeError(f"LazyTransform object has no attribute {name!r}")

    def __repr__(self) -> str:
        if self._transform is None:
            return f"imgaug.LazyTransform(get_transform={self.get_transform!r})"
        return repr(self._transform)

    __str__ = __repr__

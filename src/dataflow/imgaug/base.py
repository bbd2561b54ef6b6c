"""ImageAugmentor, AugmentorList and PhotometricAugmentor: the augmentor base classes.

An augmentor draws its random parameters once per image in :meth:`ImageAugmentor.get_transform`
and returns a deterministic :class:`~dataflow.imgaug.Transform`; the transform can then be applied
to the image, to other images of the same size (masks) and to coordinates, all moved alike.

Randomness follows the library's seeding scheme (:mod:`dataflow._engine.seeding`): an augmentor's
``rng`` is derived from the pipeline seed (:func:`dataflow.set_seed`), a key naming the augmentor,
the worker it runs in and the epoch. Inside :class:`~dataflow.image.AugmentImageComponent` and its
siblings the key is the flow's place in the pipeline, so two augmentors never share a stream; an
augmentor used on its own is keyed by its ``repr`` (two standalone augmentors with equal arguments
therefore draw equal streams under a seed; put them in one :class:`AugmentorList` to tell them
apart). Each process and each worker thread gets its own stream automatically, so nothing needs to
be re-seeded after ``fork`` (tensorpack re-seeded in an at-fork hook).
"""

from __future__ import annotations

import logging
import os
import re
from collections import namedtuple
from typing import Any

import numpy as np

from .._engine import context as _context
from .._engine import seeding
from ..errors import DataFlowArgumentError, DatapointError
from ._repr import default_repr
from .transform import BaseTransform, LazyTransform, PhotometricTransform, Transform, TransformList

__all__ = ["Augmentor", "ImageAugmentor", "AugmentorList", "PhotometricAugmentor"]

logger = logging.getLogger(__name__)

ImagePlaceholder = namedtuple("ImagePlaceholder", ["shape"])
"""Stands in for an image where only its shape matters (``get_transform`` of a crop, a resize)."""

_SUPPORTED_DTYPES = (np.dtype(np.uint8), np.dtype(np.float32), np.dtype(np.float64))
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_warned: set[str] = set()


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        logger.warning(message)


def check_image(img: Any, who: str = "augmentor") -> None:
    """Raise :class:`~dataflow.errors.DatapointError` unless ``img`` is an image augmentors accept.

    Accepted: a numpy array of shape HxW or HxWxC with dtype uint8 (range [0, 255]) or
    float32/float64 (range [0, 1] or [0, 255], as the augmentors' docs say).
    """
    if not isinstance(img, np.ndarray):
        raise DatapointError(f"{who}: an image must be a numpy array, got {type(img).__name__}")
    if img.dtype not in _SUPPORTED_DTYPES:
        raise DatapointError(
            f"{who}: image dtype {img.dtype} is not supported; augmentors take uint8 images in "
            "[0, 255] or float32/float64 images (convert with img.astype(np.float32))"
        )
    if img.ndim not in (2, 3):
        raise DatapointError(f"{who}: an image must be HxW or HxWxC, got shape {img.shape}")


def shape2d(value: Any, name: str = "shape") -> tuple[int, int]:
    """``n`` -> ``(n, n)``; ``(h, w)`` -> ``(h, w)`` (tensorpack's ``shape2d``), validated."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        pair: tuple[Any, ...] = (value, value)
    elif isinstance(value, (list, tuple, np.ndarray)) and len(value) == 2:
        pair = tuple(value)
    else:
        raise DataFlowArgumentError(f"{name} must be an int or an (h, w) pair, got {value!r}")
    try:
        h, w = int(pair[0]), int(pair[1])
    except (TypeError, ValueError):
        raise DataFlowArgumentError(f"{name} must hold integers, got {value!r}") from None
    if h <= 0 or w <= 0:
        raise DataFlowArgumentError(f"{name} must be positive, got {value!r}")
    return h, w


# Forked children must not continue their parent's streams. os.getpid() is a system call (slow in
# sandboxes), so a counter bumped in every forked child tells processes apart instead.
_process_generation = 0


def _bump_generation() -> None:
    global _process_generation
    _process_generation += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_bump_generation)


def _current_worker() -> Any:
    """``get_worker_info()`` without its cost on the hot path (a missing thread-local attribute
    raises and catches an AttributeError on every call)."""
    info = _context._thread_info.__dict__.get("info")
    return info if info is not None else _context._process_info


class _AugmentorRNG:
    """Descriptor for ``ImageAugmentor.rng``: the stream of the calling process/worker."""

    def __get__(self, aug: Any, owner: type | None = None) -> Any:
        if aug is None:
            return self
        d = aug.__dict__
        generation = _process_generation
        fixed = d.get("_fixed_rng")
        if fixed is not None and fixed[0] == generation:
            return fixed[1]
        info = _current_worker()
        last = d.get("_rng_last")  # the stream used last, checked first
        if last is not None and last[0] == generation and last[1] is info:
            return last[2]
        return aug._stream_for(generation, info)

    def __set__(self, aug: Any, value: np.random.RandomState) -> None:
        # A user-assigned generator is honoured in the process that assigned it only: a forked or
        # spawned worker that inherited it derives its own stream instead of repeating this one.
        aug.__dict__["_fixed_rng"] = (_process_generation, value)


class ImageAugmentor:
    """Base class of augmentors. Subclasses implement :meth:`get_transform`.

    Images are numpy arrays of shape HxW or HxWxC, dtype uint8 in [0, 255] or float32/float64 in
    [0, 1] or [0, 255] (each augmentor says which it assumes). Other dtypes raise
    :class:`~dataflow.errors.DatapointError`.

    Attributes:
        rng: a ``numpy.random.RandomState`` (see the module docstring for how it is seeded). Every
            process and worker thread reads its own stream from the same attribute. Assigning
            ``self.rng = ...`` replaces the stream in this process until :meth:`reset_state`.

    Subclasses written for the pre-0.10 tensorpack interface (``_get_augment_params(img)``,
    ``_augment(img, params)`` and optionally ``_augment_coords(coords, params)``) keep working:
    the default :meth:`get_transform` wraps them in a transform.
    """

    rng = _AugmentorRNG()

    # Seeding state, as class defaults so that subclasses that never call __init__ work too.
    _seed_key: str | None = None
    _seed_epoch: int = 0
    _seed_resets: int = 0

    def __init__(self) -> None:
        self.reset_state()

    def _init(self, params: dict[str, Any] | None = None) -> None:
        """Store constructor arguments as attributes: ``self._init(locals())`` (tensorpack)."""
        if params:
            for k, v in params.items():
                if k != "self" and not k.startswith("_"):
                    setattr(self, k, v)

    # -- randomness ----------------------------------------------------------------------------
    def reset_state(self) -> None:
        """Restart the augmentor's random stream in this process.

        With a seed set, the stream restarts from the same derived seed (so the same calls give
        the same results again); without one, every call draws a fresh stream. A generator
        assigned to ``self.rng`` is dropped. Augmentors holding other augmentors (AugmentorList,
        RandomApplyAug, ...) give them keys derived from their own and reset them too.

        You rarely need to call it: the image flows call it in their ``reset_state``, and each
        process or worker gets its own stream anyway.
        """
        d = self.__dict__
        d.pop("_rngs", None)
        d.pop("_rng_last", None)
        d.pop("_fixed_rng", None)
        self._seed_resets = self._seed_resets + 1
        children = self._child_augmentors()
        if children:
            key = self._key()
            for name, child in children:
                child._set_seed_key(f"{key}/{name}", self._seed_epoch)
                child.reset_state()

    def _key(self) -> str:
        key = self._seed_key
        if key is None:
            key = "imgaug:" + _ADDRESS.sub("", repr(self))
        return key

    def _stream_for(self, generation: int, info: Any) -> np.random.RandomState:
        # One stream per (process, worker): worker threads sharing this augmentor each keep theirs.
        d = self.__dict__
        rngs = d.get("_rngs")
        if rngs is None:
            rngs = d["_rngs"] = {}
        entry = rngs.get((generation, id(info)))
        if entry is None or entry[0] is not info:
            spec = d.get("_seed_spec")  # a resumed pipeline's: the saved stream, not the seed's
            if spec is not None:
                entry = (info, seeding.rng_from_spec(spec, self._seed_epoch))
                rngs[(generation, id(info))] = entry
                d["_rng_last"] = (generation, info, entry[1])
                return entry[1]
            key = self._key()
            if seeding.get_seed() is None:
                key = f"{key}#{self._seed_resets}"  # fresh per reset when nothing is reproducible
            entry = (info, seeding.make_rng(key, self._seed_epoch))
            rngs[(generation, id(info))] = entry
        d["_rng_last"] = (generation, info, entry[1])
        return entry[1]

    def _child_augmentors(self) -> list[tuple[str, ImageAugmentor]]:
        """Augmentors held in attributes (directly or in a list/tuple), with their names."""
        found: list[tuple[str, ImageAugmentor]] = []
        for name, value in vars(self).items():
            if name.startswith("_seed") or name in ("_rngs", "_rng_last", "_fixed_rng"):
                continue
            if isinstance(value, ImageAugmentor):
                if value is not self:
                    found.append((name, value))
            elif isinstance(value, (list, tuple)):
                found.extend(
                    (f"{name}[{i}]", v)
                    for i, v in enumerate(value)
                    if isinstance(v, ImageAugmentor) and v is not self
                )
        return found

    def _set_seed_key(self, key: str | None, epoch: int = 0) -> None:
        """Name this augmentor's stream (and its children's) and choose the epoch.

        The image flows call it with their place in the pipeline, and again at each new pass.
        """
        if key == self._seed_key and epoch == self._seed_epoch:
            return
        self._seed_key = key
        self._seed_epoch = int(epoch)
        self.__dict__.pop("_rngs", None)
        self.__dict__.pop("_rng_last", None)
        if key is not None:
            for name, child in self._child_augmentors():
                child._set_seed_key(f"{key}/{name}", epoch)

    def _rand_range(self, low: float = 1.0, high: float | None = None, size: Any = None) -> Any:
        """A float32 drawn uniformly from [low, high) (from [0, low) when ``high`` is None)."""
        if high is None:
            low, high = 0, low
        if size is None:
            size = []
        return self.rng.uniform(low, high, size).astype("float32")

    def __getstate__(self) -> dict[str, Any]:
        # Streams are per process: a pickled augmentor (spawn, forkserver) derives its own.
        state = self.__dict__.copy()
        state.pop("_rngs", None)
        state.pop("_rng_last", None)
        state.pop("_fixed_rng", None)
        return state

    def __repr__(self) -> str:
        return default_repr(self)

    __str__ = __repr__

    # -- the interface -------------------------------------------------------------------------
    def get_transform(self, img: np.ndarray) -> BaseTransform:
        """Draw the random parameters for ``img`` and return them as a deterministic Transform.

        All randomness happens here; the returned transform's ``apply_image`` and
        ``apply_coords`` are deterministic, so it can be applied to the image, to masks of the
        same size and to coordinates, and gives the same result each time.

        Subclasses implement this method. The default implementation serves subclasses written
        for tensorpack's old interface (``_get_augment_params``/``_augment``/``_augment_coords``).
        """
        if not hasattr(self, "_augment"):
            raise NotImplementedError(
                f"{type(self).__name__} must implement get_transform(img) (or the old "
                "_get_augment_params/_augment pair)"
            )
        _warn_once(
            "legacy:" + type(self).__qualname__,
            f"{type(self).__name__} uses the old augmentor interface (_get_augment_params/"
            "_augment); it still works, but consider implementing get_transform instead",
        )
        params = self._legacy_params(img)
        if isinstance(params, BaseTransform):  # some old augmentors returned a Transform already
            return params
        return _LegacyTransform(self, params)

    def _legacy_params(self, img: np.ndarray) -> Any:
        get_params = getattr(self, "_get_augment_params", None)
        if get_params is None:
            get_params = getattr(self, "get_augment_params", None)
        return get_params(img) if get_params is not None else None

    def _legacy_augment_coords(self, coords: np.ndarray, params: Any) -> np.ndarray:
        fn = getattr(self, "_augment_coords", None)
        if fn is not None:
            return fn(coords, params)
        if type(self).augment_coords is not ImageAugmentor.augment_coords:
            return self.augment_coords(coords, params)  # a subclass overrode the old public name
        return coords  # the old default: coordinates unchanged

    def augment(self, img: np.ndarray) -> np.ndarray:
        """Draw a transform for ``img`` and apply it; returns the augmented image.

        Use :meth:`get_transform` instead when masks or coordinates must move with the image.
        The input may be modified in place by some augmentors (pass a copy to keep it).
        """
        check_image(img, type(self).__name__)
        return self.get_transform(img).apply_image(img)  # type: ignore[attr-defined]

    # -- tensorpack's legacy calls ---------------------------------------------------------------
    def augment_return_params(self, d: np.ndarray) -> tuple[np.ndarray, Transform]:
        """Deprecated: ``t = get_transform(d); return t.apply_image(d), t``."""
        _warn_once(
            "augment_return_params", "augment_return_params is deprecated: use get_transform"
        )
        check_image(d, type(self).__name__)
        t: Any = self.get_transform(d)
        return t.apply_image(d), t

    def augment_with_params(self, d: np.ndarray, param: Any) -> np.ndarray:
        """Deprecated: ``param.apply_image(d)`` (``param`` from :meth:`augment_return_params`).

        ``param`` may also be the parameters of an old-style augmentor's ``_get_augment_params``.
        """
        _warn_once("augment_with_params", "augment_with_params is deprecated: use apply_image")
        if isinstance(param, BaseTransform):
            return param.apply_image(d)  # type: ignore[attr-defined]
        return self._augment(d, param)  # type: ignore[attr-defined]

    def augment_coords(self, coords: np.ndarray, param: Any) -> np.ndarray:
        """Deprecated: ``param.apply_coords(coords)`` (``param`` from augment_return_params).

        ``coords`` is an Nx2 float array of (x, y) rows.
        """
        _warn_once("augment_coords", "augment_coords is deprecated: use apply_coords")
        if isinstance(param, BaseTransform):
            return param.apply_coords(coords)  # type: ignore[attr-defined]
        fn = getattr(self, "_augment_coords", None)
        return fn(coords, param) if fn is not None else coords


TransformAugmentorBase = ImageAugmentor
"""tensorpack's legacy alias (it lived in ``imgaug.transform``, which still has it); use ImageAugmentor."""


class _LegacyTransform(Transform):
    """Wraps an old-style augmentor's ``_augment``/``_augment_coords`` with fixed parameters."""

    def __init__(self, aug: ImageAugmentor, params: Any) -> None:
        self._aug = aug
        self._params = params

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        return self._aug._augment(img, self._params)  # type: ignore[attr-defined]

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        return self._aug._legacy_augment_coords(coords, self._params)

    def __repr__(self) -> str:
        return f"imgaug.TransformFactory(LegacyConversion -- {self._aug!r})"

    __str__ = __repr__


Augmentor = ImageAugmentor
"""tensorpack's legacy name: ``Augmentor`` and ``ImageAugmentor`` are the same class."""


class AugmentorList(ImageAugmentor):
    """Apply a list of augmentors in order.

    Each augmentor draws its parameters from the output of the previous one, so
    :meth:`get_transform` returns a :class:`~dataflow.imgaug.TransformList` whose later entries are
    :class:`~dataflow.imgaug.LazyTransform` s: apply it to the image first, then to masks and
    coordinates.
    """

    def __init__(self, augmentors: list[ImageAugmentor] | tuple[ImageAugmentor, ...]) -> None:
        """
        Args:
            augmentors: :class:`ImageAugmentor` instances, applied in this order.
        """
        if not isinstance(augmentors, (list, tuple)):
            raise DataFlowArgumentError(
                f"AugmentorList: augmentors must be a list of augmentors, got {type(augmentors).__name__}"
            )
        for i, a in enumerate(augmentors):
            if not callable(getattr(a, "get_transform", None)):
                raise DataFlowArgumentError(
                    f"AugmentorList: augmentors[{i}] is not an augmentor (no get_transform): {a!r}"
                )
        self.augmentors = list(augmentors)
        super().__init__()

    def get_transform(self, img: np.ndarray) -> BaseTransform:
        check_image(img, "AugmentorList")
        tfms: list[Any] = []
        for idx, a in enumerate(self.augmentors):
            t = a.get_transform(img) if idx == 0 else LazyTransform(a.get_transform)
            if isinstance(t, TransformList):
                tfms.extend(t.tfms)
            else:
                tfms.append(t)
        return TransformList(tfms)

    def augment(self, img: np.ndarray) -> np.ndarray:
        # Same draws in the same order as get_transform(img).apply_image(img), without the
        # LazyTransform bookkeeping.
        check_image(img, "AugmentorList")
        for a in self.augmentors:
            img = a.get_transform(img).apply_image(img)  # type: ignore[attr-defined]
        return img

    def __repr__(self) -> str:
        inner = ",\n".join("  " + repr(a) for a in self.augmentors)
        return f"imgaug.AugmentorList([\n{inner}])"

    __str__ = __repr__


class _BoundAugment:
    """``img -> aug._augment(img, params)`` as a picklable callable."""

    __slots__ = ("aug", "params")

    def __init__(self, aug: Any, params: Any) -> None:
        self.aug = aug
        self.params = params

    def __call__(self, img: np.ndarray) -> np.ndarray:
        return self.aug._augment(img, self.params)

    def __repr__(self) -> str:
        return f"from {self.aug!r}"


class PhotometricAugmentor(ImageAugmentor):
    """Base class of augmentors that change pixel values only (coordinates stay where they are).

    Subclasses implement ``_get_augment_params(img)`` (draw the random parameters; the default
    returns None) and ``_augment(img, params)`` (apply them).
    """

    def get_transform(self, img: np.ndarray) -> BaseTransform:
        return PhotometricTransform(_BoundAugment(self, self._get_augment_params(img)))

    def _get_augment_params(self, img: np.ndarray) -> Any:
        return None

    def _augment(self, img: np.ndarray, params: Any) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} must implement _augment(img, params)")

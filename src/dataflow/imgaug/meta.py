"""Augmentors that combine others: identity, random apply, random choice, random order, map."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..errors import DataFlowArgumentError
from .base import ImageAugmentor
from .transform import BaseTransform, NoOpTransform, TransformFactory, TransformList

__all__ = ["RandomChooseAug", "MapImage", "Identity", "RandomApplyAug", "RandomOrderAug"]


def _check_aug(aug: Any, who: str, name: str) -> None:
    if not callable(getattr(aug, "get_transform", None)):
        raise DataFlowArgumentError(
            f"{who}: {name} is not an augmentor (no get_transform): {aug!r}"
        )


class Identity(ImageAugmentor):
    """Changes nothing."""

    def get_transform(self, img: np.ndarray) -> BaseTransform:
        return NoOpTransform()


class RandomApplyAug(ImageAugmentor):
    """Apply ``aug`` with probability ``prob``, otherwise change nothing."""

    def __init__(self, aug: ImageAugmentor, prob: float) -> None:
        """
        Args:
            aug: an augmentor.
            prob: the probability to apply it.
        """
        _check_aug(aug, "RandomApplyAug", "aug")
        if not 0 <= prob <= 1:
            raise DataFlowArgumentError(f"RandomApplyAug: prob must be in [0, 1], got {prob!r}")
        self.aug, self.prob = aug, prob
        super().__init__()

    def get_transform(self, img: np.ndarray) -> BaseTransform:
        if self.rng.rand() < self.prob:
            return self.aug.get_transform(img)
        return NoOpTransform()


class RandomChooseAug(ImageAugmentor):
    """Apply one augmentor drawn from a list (uniformly, or with the given probabilities)."""

    def __init__(
        self, aug_lists: Sequence[ImageAugmentor] | Sequence[tuple[ImageAugmentor, float]]
    ) -> None:
        """
        Args:
            aug_lists: augmentors, or (augmentor, probability) pairs; probabilities are
                normalized to sum to 1.
        """
        if not isinstance(aug_lists, (list, tuple)) or not aug_lists:
            raise DataFlowArgumentError("RandomChooseAug: aug_lists must be a non-empty list")
        if isinstance(aug_lists[0], (tuple, list)):
            augs = []
            prob = []
            for i, item in enumerate(aug_lists):
                if not (isinstance(item, (tuple, list)) and len(item) == 2):
                    raise DataFlowArgumentError(
                        f"RandomChooseAug: aug_lists[{i}] must be an (augmentor, probability) pair"
                    )
                augs.append(item[0])
                prob.append(float(item[1]))
            total = sum(prob)
            if any(p < 0 for p in prob) or not total > 0:
                raise DataFlowArgumentError(
                    f"RandomChooseAug: probabilities must be >= 0 with a positive sum, got {prob}"
                )
            prob = [p / total for p in prob]
        else:
            augs = list(aug_lists)
            prob = [1.0 / len(augs)] * len(augs)
        for i, a in enumerate(augs):
            _check_aug(a, "RandomChooseAug", f"aug_lists[{i}]")
        self.aug_lists = augs
        self.prob = prob
        super().__init__()

    def __repr__(self) -> str:
        pairs = ", ".join(f"({a!r}, {p!r})" for a, p in zip(self.aug_lists, self.prob))
        return f"imgaug.RandomChooseAug([{pairs}])"

    __str__ = __repr__

    def get_transform(self, img: np.ndarray) -> BaseTransform:
        idx = self.rng.choice(len(self.aug_lists), p=self.prob)
        return self.aug_lists[idx].get_transform(img)


class RandomOrderAug(ImageAugmentor):
    """Apply all augmentors, in a random order.

    Every augmentor draws its parameters from the input image, so they must not change its shape.
    """

    def __init__(self, aug_lists: Sequence[ImageAugmentor]) -> None:
        """
        Args:
            aug_lists: augmentors that keep the image's shape.
        """
        if not isinstance(aug_lists, (list, tuple)):
            raise DataFlowArgumentError("RandomOrderAug: aug_lists must be a list of augmentors")
        for i, a in enumerate(aug_lists):
            _check_aug(a, "RandomOrderAug", f"aug_lists[{i}]")
        self.aug_lists = list(aug_lists)
        super().__init__()

    def get_transform(self, img: np.ndarray) -> BaseTransform:
        idxs = self.rng.permutation(len(self.aug_lists))
        tfms = [a.get_transform(img) for a in self.aug_lists]
        return TransformList([tfms[k] for k in idxs])


class MapImage(ImageAugmentor):
    """Apply fixed functions: ``func`` to images and ``coord_func`` (if given) to coordinates.

    Without ``coord_func``, applying the transform to coordinates raises NotImplementedError.
    The functions must pickle (module-level functions, not lambdas) for spawn-started workers.
    """

    def __init__(
        self,
        func: Callable[[np.ndarray], np.ndarray],
        coord_func: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        """
        Args:
            func: image -> image.
            coord_func: Nx2 (x, y) coordinates -> coordinates.
        """
        if not callable(func):
            raise DataFlowArgumentError("MapImage: func must be callable")
        if coord_func is not None and not callable(coord_func):
            raise DataFlowArgumentError("MapImage: coord_func must be callable or None")
        self.func, self.coord_func = func, coord_func
        super().__init__()

    def get_transform(self, img: np.ndarray) -> BaseTransform:
        if self.coord_func is not None:
            return TransformFactory(
                name="MapImage", apply_image=self.func, apply_coords=self.coord_func
            )
        return TransformFactory(name="MapImage", apply_image=self.func)

"""Image augmentation: tensorpack's ``imgaug`` Transform API and every one of its augmentors.

``from tensorpack.dataflow import imgaug`` becomes ``from dataflow import imgaug``; names, arguments
and defaults are tensorpack's. Needs OpenCV (``pip install 'pydataflow[image]'``); ``import dataflow``
does not import it.

An augmentor's :meth:`~ImageAugmentor.get_transform` draws its random parameters and returns a
deterministic :class:`Transform`, which moves the image, masks of the same size and Nx2 (x, y)
coordinates alike.
"""

from __future__ import annotations

from . import transform as _transform
from .base import (
    Augmentor,
    AugmentorList,
    ImageAugmentor,
    PhotometricAugmentor,
    TransformAugmentorBase,
)
from .convert import ColorSpace, Grayscale, ToFloat32, ToUint8
from .crop import (
    CenterCrop,
    GoogleNetRandomCropAndResize,
    RandomCrop,
    RandomCropRandomShape,
    RandomCutout,
)
from .external import Albumentations, IAAugmentor
from .geometry import Affine, Rotation, RotationAndCropValid, Shift
from .imgproc import (
    Brightness,
    BrightnessScale,
    Clip,
    Contrast,
    Gamma,
    GaussianBlur,
    Hue,
    Lighting,
    MeanVarianceNormalize,
    MinMaxNormalize,
    Saturation,
)
from .meta import Identity, MapImage, RandomApplyAug, RandomChooseAug, RandomOrderAug
from .misc import Flip, RandomResize, Resize, ResizeShortestEdge, Transpose
from .noise import GaussianNoise, JpegNoise, SaltPepperNoise
from .paste import BackgroundFiller, CenterPaste, ConstantBackgroundFiller, RandomPaste
from .transform import (
    CropTransform,
    FlipTransform,
    LazyTransform,
    NoOpTransform,
    PhotometricTransform,
    ResizeTransform,
    Transform,
    TransformFactory,
    TransformList,
    TransposeTransform,
    WarpAffineTransform,
)

# tensorpack's legacy alias lived in imgaug.transform; transform.py cannot import base.py (base.py
# imports it), so the package puts it there, where old code imports it from.
vars(_transform)["TransformAugmentorBase"] = TransformAugmentorBase

__all__ = [
    # base
    "Augmentor",
    "ImageAugmentor",
    "AugmentorList",
    "PhotometricAugmentor",
    # convert
    "ColorSpace",
    "Grayscale",
    "ToUint8",
    "ToFloat32",
    # crop
    "RandomCrop",
    "CenterCrop",
    "RandomCropRandomShape",
    "GoogleNetRandomCropAndResize",
    "RandomCutout",
    # geometry
    "Shift",
    "Rotation",
    "RotationAndCropValid",
    "Affine",
    # imgproc
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
    # meta
    "RandomChooseAug",
    "MapImage",
    "Identity",
    "RandomApplyAug",
    "RandomOrderAug",
    # misc
    "Flip",
    "Resize",
    "RandomResize",
    "ResizeShortestEdge",
    "Transpose",
    # noise
    "JpegNoise",
    "GaussianNoise",
    "SaltPepperNoise",
    # paste
    "CenterPaste",
    "BackgroundFiller",
    "ConstantBackgroundFiller",
    "RandomPaste",
    # transform
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
    # external
    "IAAugmentor",
    "Albumentations",
]

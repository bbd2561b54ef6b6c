"""dataflow.imgaug: every augmentor's shapes and dtypes, determinism of transforms, coordinates
that move with the pixels, pickling, repr, and the legacy (pre-0.10 tensorpack) interface."""

from __future__ import annotations

import functools
import logging
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import pytest

from dataflow import imgaug
from dataflow._engine import seeding
from dataflow.errors import DataFlowArgumentError, DataFlowError, DatapointError
from dataflow.imgaug.transform import BaseTransform

H, W = 40, 48
EIGVAL = [0.2175, 0.0188, 0.0045]
EIGVEC = [[-0.5675, 0.7192, 0.4009], [-0.5808, -0.0045, -0.8140], [-0.5836, -0.6948, 0.4203]]


def flip_lr(img: np.ndarray) -> np.ndarray:
    return img[:, ::-1]


def flip_lr_coords(coords: np.ndarray, width: int = W) -> np.ndarray:
    out = coords.copy()
    out[:, 0] = width - out[:, 0]
    return out


def same(h: int, w: int) -> tuple[int, int]:
    return h, w


@dataclass
class Case:
    """An augmentor under test and what it does to an HxW image."""

    make: Callable[[], Any]
    geometric: bool = False
    out_hw: Callable[[int, int], tuple[int, int] | None] = same  # None: data-dependent
    color_only: bool = False  # needs HxWx3
    out_dtype: Any = None  # None: the input's
    out_channels: int | None = None  # None: the input's


CASES: dict[str, Case] = {
    # convert
    "ColorSpace": Case(lambda: imgaug.ColorSpace(cv2.COLOR_BGR2HSV), color_only=True),
    "Grayscale": Case(lambda: imgaug.Grayscale(), color_only=True, out_channels=1),
    "Grayscale-keepshape": Case(lambda: imgaug.Grayscale(keepshape=True), color_only=True),
    "ToUint8": Case(lambda: imgaug.ToUint8(), out_dtype=np.uint8),
    "ToFloat32": Case(lambda: imgaug.ToFloat32(), out_dtype=np.float32),
    # crop
    "RandomCrop": Case(lambda: imgaug.RandomCrop(24), True, lambda h, w: (24, 24)),
    "CenterCrop": Case(lambda: imgaug.CenterCrop((20, 30)), True, lambda h, w: (20, 30)),
    "RandomCropRandomShape": Case(
        lambda: imgaug.RandomCropRandomShape(20, 16, 40, 36), True, lambda h, w: None
    ),
    "GoogleNetRandomCropAndResize": Case(
        lambda: imgaug.GoogleNetRandomCropAndResize(target_shape=32), True, lambda h, w: (32, 32)
    ),
    "GoogleNet-fallback": Case(
        lambda: imgaug.GoogleNetRandomCropAndResize((1.5, 2.0), target_shape=32),
        True,
        lambda h, w: (32, 32),
    ),
    "RandomCutout": Case(lambda: imgaug.RandomCutout(6, (4, 10), fill=7)),
    # geometry
    "Shift": Case(lambda: imgaug.Shift(0.2, 0.2), True),
    "Rotation": Case(lambda: imgaug.Rotation(40, center_range=(0.3, 0.7)), True),
    "Rotation-step": Case(lambda: imgaug.Rotation(180, step_deg=90), True),
    "RotationAndCropValid": Case(lambda: imgaug.RotationAndCropValid(30), True, lambda h, w: None),
    "Affine": Case(
        lambda: imgaug.Affine(
            scale=(0.8, 1.2), translate_frac=(0.1, 0.1), rotate_max_deg=20, shear=15
        ),
        True,
    ),
    # imgproc
    "Hue": Case(lambda: imgaug.Hue((-40, 40)), color_only=True),
    "Hue-bgr": Case(lambda: imgaug.Hue(rgb=False), color_only=True),
    "Brightness": Case(lambda: imgaug.Brightness(30)),
    "BrightnessScale": Case(lambda: imgaug.BrightnessScale((0.7, 1.3))),
    "Contrast": Case(lambda: imgaug.Contrast((0.5, 1.5))),
    "Contrast-rgb": Case(lambda: imgaug.Contrast((0.5, 1.5), rgb=True)),
    "MeanVarianceNormalize": Case(lambda: imgaug.MeanVarianceNormalize(), out_dtype=np.float32),
    "MeanVarianceNormalize-per-channel": Case(
        lambda: imgaug.MeanVarianceNormalize(all_channel=False), out_dtype=np.float32
    ),
    "GaussianBlur": Case(lambda: imgaug.GaussianBlur(size_range=(0, 3), sigma_range=(0, 2))),
    "GaussianBlur-asym": Case(lambda: imgaug.GaussianBlur(4, (0.5, 2), symmetric=False)),
    "Gamma": Case(lambda: imgaug.Gamma()),
    "Clip": Case(lambda: imgaug.Clip(10, 200)),
    "Saturation": Case(lambda: imgaug.Saturation(0.5), color_only=True),
    "Lighting": Case(lambda: imgaug.Lighting(30, EIGVAL, EIGVEC), color_only=True),
    "MinMaxNormalize": Case(lambda: imgaug.MinMaxNormalize(), out_dtype=np.float32),
    "MinMaxNormalize-per-channel": Case(
        lambda: imgaug.MinMaxNormalize(0, 1, all_channel=False), out_dtype=np.float32
    ),
    # meta
    "Identity": Case(lambda: imgaug.Identity(), True),
    "RandomApplyAug": Case(lambda: imgaug.RandomApplyAug(imgaug.Rotation(30), 0.5), True),
    "RandomChooseAug": Case(
        lambda: imgaug.RandomChooseAug([imgaug.Flip(horiz=True, prob=1), imgaug.Shift(0.2, 0.1)]),
        True,
    ),
    "RandomChooseAug-prob": Case(
        lambda: imgaug.RandomChooseAug(
            [(imgaug.Flip(vert=True, prob=1), 1), (imgaug.Transpose(1.0), 3)]
        ),
        True,
        lambda h, w: None,
    ),
    "RandomOrderAug": Case(
        lambda: imgaug.RandomOrderAug([imgaug.Brightness(10), imgaug.Contrast((0.8, 1.2))])
    ),
    "MapImage": Case(
        lambda: imgaug.MapImage(flip_lr, functools.partial(flip_lr_coords, width=W)), True
    ),
    # misc
    "Flip-horiz": Case(lambda: imgaug.Flip(horiz=True), True),
    "Flip-vert": Case(lambda: imgaug.Flip(vert=True, prob=0.7), True),
    "Resize": Case(lambda: imgaug.Resize((20, 30)), True, lambda h, w: (20, 30)),
    "Resize-up": Case(lambda: imgaug.Resize(64, cv2.INTER_CUBIC), True, lambda h, w: (64, 64)),
    "ResizeShortestEdge": Case(
        lambda: imgaug.ResizeShortestEdge(30), True, lambda h, w: (30, int(30 / h * w + 0.5))
    ),
    "RandomResize": Case(
        lambda: imgaug.RandomResize((0.8, 1.3), (0.8, 1.3)), True, lambda h, w: None
    ),
    "RandomResize-pixels": Case(
        lambda: imgaug.RandomResize((30, 60), aspect_ratio_thres=0), True, lambda h, w: None
    ),
    "Transpose": Case(lambda: imgaug.Transpose(), True, lambda h, w: None),
    # noise
    "JpegNoise": Case(lambda: imgaug.JpegNoise()),
    "GaussianNoise": Case(lambda: imgaug.GaussianNoise(5)),
    "SaltPepperNoise": Case(lambda: imgaug.SaltPepperNoise()),
    # paste
    "CenterPaste": Case(lambda: imgaug.CenterPaste((64, 70)), True, lambda h, w: (64, 70)),
    "RandomPaste": Case(
        lambda: imgaug.RandomPaste((64, 70), imgaug.ConstantBackgroundFiller(3)),
        True,
        lambda h, w: (64, 70),
    ),
    # base
    "AugmentorList": Case(
        lambda: imgaug.AugmentorList(
            [
                imgaug.GoogleNetRandomCropAndResize(target_shape=36),
                imgaug.Flip(horiz=True),
                imgaug.Rotation(20),
                imgaug.Brightness(10),
            ]
        ),
        True,
        lambda h, w: (36, 36),
    ),
}

AUG_IDS = list(CASES)
GEOMETRIC_IDS = [k for k, c in CASES.items() if c.geometric]
PHOTOMETRIC_IDS = [k for k, c in CASES.items() if not c.geometric]
INPUT_SHAPES = {"HxW": (H, W), "HxWx1": (H, W, 1), "HxWx3": (H, W, 3)}


def make_image(shape: tuple[int, ...], dtype: Any, seed: int = 0) -> np.ndarray:
    rng = np.random.RandomState(seed)
    img = rng.uniform(0, 255, shape)
    # Smooth structure as well as noise, so that color and blur augmentors have work to do.
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    ramp = (xx * 3 + yy * 2) % 256
    img = 0.5 * img + 0.5 * (ramp if len(shape) == 2 else ramp[:, :, None])
    return img.astype(dtype)


@pytest.fixture(autouse=True)
def _fixed_seed(unseeded):
    seeding.set_seed(1234)


# tensorpack 0.11's __all__ of each imgaug module (facts about its API).
TENSORPACK_IMGAUG = {
    "base": ["Augmentor", "ImageAugmentor", "AugmentorList", "PhotometricAugmentor"],
    "convert": ["ColorSpace", "Grayscale", "ToUint8", "ToFloat32"],
    "crop": [
        "RandomCrop",
        "CenterCrop",
        "RandomCropRandomShape",
        "GoogleNetRandomCropAndResize",
        "RandomCutout",
    ],
    "geometry": ["Shift", "Rotation", "RotationAndCropValid", "Affine"],
    "imgproc": [
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
    ],
    "meta": ["RandomChooseAug", "MapImage", "Identity", "RandomApplyAug", "RandomOrderAug"],
    "misc": ["Flip", "Resize", "RandomResize", "ResizeShortestEdge", "Transpose"],
    "noise": ["JpegNoise", "GaussianNoise", "SaltPepperNoise"],
    "paste": ["CenterPaste", "BackgroundFiller", "ConstantBackgroundFiller", "RandomPaste"],
    "transform": [
        "Transform",
        "ResizeTransform",
        "CropTransform",
        "FlipTransform",
        "TransformList",
        "TransformFactory",
    ],
    "external": ["IAAugmentor", "Albumentations"],
}


@pytest.mark.parametrize("module", sorted(TENSORPACK_IMGAUG))
def test_tensorpack_names_live_in_the_same_modules(module):
    import importlib

    mod = importlib.import_module(f"dataflow.imgaug.{module}")
    for name in TENSORPACK_IMGAUG[module]:
        assert name in mod.__all__, f"dataflow.imgaug.{module} lacks {name}"
        assert getattr(imgaug, name) is getattr(mod, name)
    for name in mod.__all__:
        assert name in imgaug.__all__


# -- shapes and dtypes ------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.uint8, np.float32], ids=["uint8", "float32"])
@pytest.mark.parametrize("shape_name", list(INPUT_SHAPES))
@pytest.mark.parametrize("name", AUG_IDS)
def test_output_shape_and_dtype(name, shape_name, dtype):
    case = CASES[name]
    shape = INPUT_SHAPES[shape_name]
    aug = case.make()
    if case.color_only and len(shape) != 3 or (case.color_only and shape[2] != 3):
        with pytest.raises(DatapointError, match="HxWx3|convert"):
            aug.augment(make_image(shape, dtype))
        return
    for trial in range(4):  # several draws: random branches (flip or not, choice) all checked
        img = make_image(shape, dtype, seed=trial)
        out = aug.augment(img)
        assert isinstance(out, np.ndarray)
        assert out.dtype == (case.out_dtype or dtype), (out.dtype, case.out_dtype)
        assert out.ndim == img.ndim
        if img.ndim == 3:
            assert out.shape[2] == (case.out_channels or img.shape[2])
        hw = case.out_hw(H, W)
        if hw is not None:
            assert out.shape[:2] == hw


@pytest.mark.parametrize("name", ["GaussianBlur", "Rotation", "Resize", "Brightness", "Flip-horiz"])
def test_many_channels_and_float64(name):
    aug = CASES[name].make()
    img = make_image((H, W, 5), np.float64)
    out = aug.augment(img)
    assert out.dtype == np.float64 and out.ndim == 3 and out.shape[2] == 5


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((8, 8), np.int64),
        np.zeros((8, 8, 3), np.float16),
        np.zeros((8, 8), bool),
        np.zeros((2, 8, 8, 3), np.uint8),
        [[1, 2], [3, 4]],
    ],
    ids=["int64", "float16", "bool", "4d", "list"],
)
def test_unsupported_images_are_a_clear_error(bad):
    with pytest.raises(DatapointError, match="Rotation|an image"):
        imgaug.Rotation(10).augment(bad)
    with pytest.raises(DatapointError):
        imgaug.AugmentorList([imgaug.Flip(horiz=True)]).augment(bad)


# -- determinism of a transform ---------------------------------------------------------------
@pytest.mark.parametrize("name", AUG_IDS)
def test_same_transform_twice_gives_identical_output(name):
    case = CASES[name]
    aug = case.make()
    img = make_image((H, W, 3), np.uint8)
    for _ in range(3):
        t = aug.get_transform(img)
        first = t.apply_image(img.copy())
        second = t.apply_image(img.copy())
        assert first.dtype == second.dtype
        np.testing.assert_array_equal(first, second)
        if case.geometric:
            pts = np.array([[3.5, 4.25], [20.0, 30.5]], np.float32)
            np.testing.assert_array_equal(t.apply_coords(pts.copy()), t.apply_coords(pts.copy()))


@pytest.mark.parametrize("name", AUG_IDS)
def test_apply_coords_does_not_modify_its_input(name):
    aug = CASES[name].make()
    img = make_image((H, W, 3), np.uint8)
    t = aug.get_transform(img)
    t.apply_image(img.copy())
    pts = np.array([[3.5, 4.25], [20.0, 30.5]], np.float32)
    before = pts.copy()
    t.apply_coords(pts)
    np.testing.assert_array_equal(pts, before)


# -- coordinates move with the pixels ---------------------------------------------------------
def blob(h: int, w: int, x: float, y: float, sigma: float = 1.3) -> np.ndarray:
    """A Gaussian dot centered at continuous point (x, y): pixel (i, j) has center (j+.5, i+.5)."""
    yy, xx = np.mgrid[0:h, 0:w]
    d2 = (xx + 0.5 - x) ** 2 + (yy + 0.5 - y) ** 2
    return (255 * np.exp(-d2 / (2 * sigma**2))).astype(np.float32)


def centroid(img: np.ndarray) -> tuple[float, float] | None:
    img = img.astype(np.float64)
    peak = img.max()
    if peak <= 0:
        return None
    weights = np.where(img > 0.15 * peak, img, 0)
    yy, xx = np.mgrid[0 : img.shape[0], 0 : img.shape[1]]
    total = weights.sum()
    return float((weights * (xx + 0.5)).sum() / total), float((weights * (yy + 0.5)).sum() / total)


def touches_border(img: np.ndarray) -> bool:
    spot = img > 0.05 * img.max()
    return bool(spot[0].any() or spot[-1].any() or spot[:, 0].any() or spot[:, -1].any())


POINTS = np.array(
    [[16.0, 14.0], [30.5, 13.25], [22.2, 24.7], [14.5, 26.0], [33.0, 27.5]], dtype=np.float32
)


@pytest.mark.parametrize("name", GEOMETRIC_IDS)
def test_coordinates_move_exactly_as_the_pixels(name):
    aug = CASES[name].make()
    checked = 0
    for _trial in range(6):
        t = aug.get_transform(np.zeros((H, W), np.float32))
        # A LazyTransform is drawn from the first image it sees: show it the frame first.
        t.apply_image(np.zeros((H, W), np.float32))
        moved = t.apply_coords(POINTS.copy())
        assert moved.shape == POINTS.shape
        for k, (x, y) in enumerate(POINTS):
            out = t.apply_image(blob(H, W, x, y))
            oh, ow = out.shape[:2]
            ex, ey = moved[k]
            if not (0 <= ex <= ow and 0 <= ey <= oh):
                if not (-12 <= ex <= ow + 12 and -12 <= ey <= oh + 12):
                    assert out.max() < 0.5 * 255, (name, (x, y), (ex, ey), "dot left behind")
                continue
            if touches_border(out):
                continue  # cut by a crop, or smeared by a replicated border: cannot be measured
            c = centroid(out)
            assert c is not None, (name, k)
            assert abs(c[0] - ex) <= 1 and abs(c[1] - ey) <= 1, (name, (x, y), (ex, ey), c, t)
            checked += 1
    assert checked >= 5, f"{name}: only {checked} points could be checked"


def test_warp_coordinates_use_the_continuous_convention():
    # A 90-degree rotation of a 4x4 image about its center maps pixel (0, 0)'s center (0.5, 0.5).
    mat = cv2.getRotationMatrix2D((1.5, 1.5), 90, 1)
    t = imgaug.WarpAffineTransform(mat, (4, 4))
    img = np.zeros((4, 4), np.uint8)
    img[0, 0] = 255
    out = t.apply_image(img)
    (row, col) = np.argwhere(out == 255)[0]
    np.testing.assert_allclose(t.apply_coords(np.array([[0.5, 0.5]])), [[col + 0.5, row + 0.5]])


def tensorpack_warp_coords(mat: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """What tensorpack 0.11's WarpAffineTransform.apply_coords computes: OpenCV's matrix applied
    to the coordinates as they are (integer pixel centers), although its Flip and Resize use
    continuous coordinates (pixel centers at +0.5)."""
    return np.concatenate([coords, np.ones((len(coords), 1))], axis=1) @ mat.T


def rotation_matrix_90(h: int, w: int, center: tuple[float, float]) -> np.ndarray:
    """The matrix imgaug.Rotation builds for 90 degrees about the continuous point ``center``."""
    return cv2.getRotationMatrix2D((center[0] - 0.5, center[1] - 0.5), 90, 1)


def some_affine() -> np.ndarray:
    """An arbitrary affine warp: scale 1.6, rotation 37 degrees, a 10 degree shear, a shift."""
    a, sh = np.radians(37), np.radians(10)
    lin = 1.6 * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    lin = lin @ np.array([[1, np.tan(sh)], [0, 1]])
    return np.concatenate([lin, [[-6.3], [4.7]]], axis=1)


@pytest.mark.parametrize(
    ("name", "mat", "dsize"),
    [
        pytest.param(n, m, d, id=n)
        for n, m, d in [
            ("rotate-90-about-center", rotation_matrix_90(9, 13, (6.5, 4.5)), (13, 9)),
            ("rotate-90-about-a-point", rotation_matrix_90(9, 13, (4.25, 3.0)), (13, 9)),
            ("affine", some_affine(), (30, 28)),
        ]
    ],
)
def test_warped_coordinates_land_on_the_marked_pixel(name, mat, dsize):
    # Each pixel is marked in turn; the center of the marked pixel, (col + 0.5, row + 0.5) in the
    # continuous convention of every transform here, must land on the marked pixel of the warped
    # image. Nearest-neighbour interpolation keeps the mark a mark; with a 1.6 scale every source
    # pixel covers at least one destination pixel, the one holding the mapped center.
    h, w = 9, 13
    t = imgaug.WarpAffineTransform(mat, dsize, interp=cv2.INTER_NEAREST)
    checked = tensorpack_misses = 0
    for row in range(h):
        for col in range(w):
            img = np.zeros((h, w), np.uint8)
            img[row, col] = 255
            out = t.apply_image(img)
            center = np.array([[col + 0.5, row + 0.5]])
            x, y = t.apply_coords(center)[0]
            if not (0 <= x < out.shape[1] and 0 <= y < out.shape[0]):
                assert (out == 0).all() or name == "affine", (row, col, x, y)
                continue
            assert out[int(np.floor(y)), int(np.floor(x))] == 255, (row, col, x, y)
            checked += 1
            tx, ty = tensorpack_warp_coords(mat, center)[0]
            inside = 0 <= tx < out.shape[1] and 0 <= ty < out.shape[0]
            if not inside or out[int(np.floor(ty)), int(np.floor(tx))] != 255:
                tensorpack_misses += 1
            # docs/migration.md: tensorpack's numbers from ours
            np.testing.assert_allclose(t.apply_coords(center + 0.5) - 0.5, [[tx, ty]], atol=1e-9)
    assert checked >= 40
    if name.startswith("rotate-90"):
        # half a pixel in each axis, rotated: tensorpack is one whole pixel off (y one less)
        assert tensorpack_misses == checked
        shift = tensorpack_warp_coords(mat, center) - t.apply_coords(center)
        np.testing.assert_allclose(shift, [[0.0, -1.0]], atol=1e-9)
    else:
        assert tensorpack_misses > 0


def test_rotation_and_affine_coordinates_land_on_the_marked_pixel():
    # The augmentors' own matrices (random center, random parameters), with a nearest warp.
    h, w = 11, 14
    rot = imgaug.Rotation(180, step_deg=90, interp=cv2.INTER_NEAREST, border=cv2.BORDER_CONSTANT)
    aff = imgaug.Affine(
        scale=(1.5, 1.8),
        translate_frac=(0.1, 0.1),
        rotate_max_deg=45,
        shear=10,
        interp=cv2.INTER_NEAREST,
        border=cv2.BORDER_CONSTANT,
    )
    seeding.set_seed(3)
    try:
        right_angles = 0
        for aug in (rot, aff):
            aug.reset_state()
            for _ in range(8):
                t = aug.get_transform(np.zeros((h, w), np.uint8))
                right_angles += aug is rot and abs(t.mat[0, 0]) < 1e-9
                for row, col in [(0, 0), (2, 9), (5, 6), (10, 13), (7, 1)]:
                    img = np.zeros((h, w), np.uint8)
                    img[row, col] = 255
                    out = t.apply_image(img)
                    x, y = t.apply_coords(np.array([[col + 0.5, row + 0.5]]))[0]
                    if 0 <= x < w and 0 <= y < h:
                        assert out[int(y), int(x)] == 255, (aug, t.mat, row, col, x, y)
        assert right_angles > 0  # some draws were rotations by +-90 degrees
    finally:
        seeding.set_seed(None)


@pytest.mark.parametrize("name", GEOMETRIC_IDS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_apply_coords_keeps_the_float_dtype(name, dtype):
    aug = CASES[name].make()
    img = make_image((H, W, 3), np.uint8)
    t = aug.get_transform(img)
    t.apply_image(img.copy())
    pts = np.array([[3.5, 4.25], [20.0, 30.5]], dtype)
    out = t.apply_coords(pts)
    assert out.dtype == dtype, (name, out.dtype)


def test_warp_coordinates_in_float64_are_exact():
    # float64 in, float64 out: no round trip through float32 (which would lose ~1e-6 px at 100 px)
    t = imgaug.WarpAffineTransform(some_affine(), (30, 28))
    pts = np.array([[123.456789012345, 98.7654321098765]])
    lin, shift = some_affine()[:, :2], some_affine()[:, 2]
    expected = (pts - 0.5) @ lin.T + shift + 0.5
    out = t.apply_coords(pts)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", PHOTOMETRIC_IDS)
def test_photometric_augmentors_leave_coordinates(name):
    aug = CASES[name].make()
    img = make_image((H, W, 3), np.float32)
    t = aug.get_transform(img)
    t.apply_image(img.copy())
    np.testing.assert_array_equal(t.apply_coords(POINTS.copy()), POINTS)


def test_masks_follow_the_image():
    aug = imgaug.AugmentorList([imgaug.RandomCrop(30), imgaug.Flip(horiz=True, prob=1)])
    img = make_image((H, W, 3), np.uint8)
    t = aug.get_transform(img)
    out = t.apply_image(img)
    mask = t.apply_image(img[:, :, 1].copy())
    np.testing.assert_array_equal(out[:, :, 1], mask)


# -- pickling and repr ------------------------------------------------------------------------
@pytest.mark.parametrize("name", AUG_IDS)
def test_every_augmentor_pickles_and_keeps_its_stream(name):
    aug = CASES[name].make()
    clone = pickle.loads(pickle.dumps(aug))
    assert repr(clone) == repr(aug)
    img = make_image((H, W, 3), np.uint8)
    aug.reset_state()
    clone.reset_state()
    for _ in range(3):
        np.testing.assert_array_equal(aug.augment(img.copy()), clone.augment(img.copy()))


@pytest.mark.parametrize("name", AUG_IDS)
def test_repr_shows_the_class_and_no_address(name):
    aug = CASES[name].make()
    text = repr(aug)
    assert text.startswith(f"imgaug.{type(aug).__name__}(")
    assert " at 0x" not in aug._key()  # the default seed key does not depend on addresses


def test_repr_shows_arguments():
    assert repr(imgaug.Rotation(30)) == "imgaug.Rotation(max_deg=30)"
    assert repr(imgaug.Flip(horiz=True, prob=0.2)) == "imgaug.Flip(horiz=True, prob=0.2)"
    assert repr(imgaug.Resize(10)) == "imgaug.Resize(shape=(10, 10))"
    assert repr(imgaug.GoogleNetRandomCropAndResize()) == "imgaug.GoogleNetRandomCropAndResize()"
    assert "imgaug.Flip(horiz=True)" in repr(imgaug.AugmentorList([imgaug.Flip(horiz=True)]))
    assert repr(imgaug.CropTransform(1, 2, 3, 4)) == "imgaug.CropTransform(y0=1, x0=2, h=3, w=4)"
    assert repr(imgaug.RandomApplyAug(imgaug.Identity(), 0.5)) == (
        "imgaug.RandomApplyAug(aug=imgaug.Identity(), prob=0.5)"
    )


# -- arguments --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "make",
    [
        lambda: imgaug.Flip(),
        lambda: imgaug.Flip(horiz=True, vert=True),
        lambda: imgaug.Flip(horiz=True, prob=2),
        lambda: imgaug.RandomCrop(0),
        lambda: imgaug.RandomCrop((1, 2, 3)),
        lambda: imgaug.Shift(1.5),
        lambda: imgaug.Rotation(30, step_deg=7),
        lambda: imgaug.Affine(scale=[0.8, 1.2]),
        lambda: imgaug.Affine(shear=-1),
        lambda: imgaug.Brightness(0),
        lambda: imgaug.Lighting(0.1, [1, 2], EIGVEC),
        lambda: imgaug.Saturation(1.5),
        lambda: imgaug.SaltPepperNoise(0.7, 0.7),
        lambda: imgaug.RandomCutout((5, 2), 3),
        lambda: imgaug.RandomChooseAug([(imgaug.Identity(), -1)]),
        lambda: imgaug.RandomApplyAug("not an augmentor", 0.5),
        lambda: imgaug.AugmentorList(imgaug.Identity()),
        lambda: imgaug.AugmentorList([imgaug.Identity(), 3]),
        lambda: imgaug.Grayscale(keepdims=False, keepshape=True),
        lambda: imgaug.JpegNoise((50, 20)),
        lambda: imgaug.TransformFactory(apply_image=flip_lr, bogus=flip_lr),
        lambda: imgaug.TransformList([imgaug.NoOpTransform(), "x"]),
        lambda: imgaug.CenterPaste((10, 10), background_filler=0),
    ],
)
def test_bad_arguments_fail_at_construction(make):
    with pytest.raises(DataFlowArgumentError):
        make()


def test_data_errors_name_the_augmentor():
    small = np.zeros((10, 10, 3), np.uint8)
    with pytest.raises(DatapointError, match="RandomCrop"):
        imgaug.RandomCrop(20).augment(small)
    with pytest.raises(DatapointError, match="CenterPaste"):
        imgaug.CenterPaste((5, 5)).augment(small)
    with pytest.raises(DatapointError, match="ResizeTransform"):
        imgaug.ResizeTransform(5, 5, 2, 2, cv2.INTER_LINEAR).apply_image(small)


# -- transforms -------------------------------------------------------------------------------
def test_transform_list_and_lazy_transform():
    img = make_image((H, W), np.float32)
    crop = imgaug.CropTransform(2, 3, 20, 30)
    flip = imgaug.FlipTransform(20, 30)
    tl = imgaug.TransformList([crop]) + flip
    assert isinstance(tl, imgaug.TransformList) and len(tl.tfms) == 2
    tl2 = crop + imgaug.TransformList([flip])  # __radd__
    np.testing.assert_array_equal(tl.apply_image(img), tl2.apply_image(img))
    np.testing.assert_array_equal(tl.apply_image(img), img[2:22, 3:33][:, ::-1])
    tl += imgaug.NoOpTransform()
    assert len(tl.tfms) == 3
    np.testing.assert_allclose(tl.apply_coords(np.array([[5.0, 6.0]])), [[30 - 2.0, 4.0]])

    lazy = imgaug.LazyTransform(imgaug.Flip(horiz=True, prob=1).get_transform)
    with pytest.raises(DataFlowError, match="before apply_image"):
        lazy.apply_coords(np.zeros((1, 2)))
    np.testing.assert_array_equal(lazy.apply_image(img), img[:, ::-1])
    np.testing.assert_allclose(lazy.apply_coords(np.array([[1.0, 2.0]])), [[W - 1.0, 2.0]])


def test_transform_without_apply_coords_says_so():
    t = imgaug.TransformFactory(name="f", apply_image=flip_lr)
    with pytest.raises(NotImplementedError, match="apply_coords"):
        t.apply_coords(np.zeros((1, 2)))
    assert repr(t) == "imgaug.TransformFactory(f)"
    noop = imgaug.NoOpTransform()
    assert noop.apply_anything(5) == 5
    with pytest.raises(AttributeError):
        _ = noop.not_an_apply


def test_transforms_are_transforms():
    for t in [
        imgaug.ResizeTransform(2, 2, 3, 3, 1),
        imgaug.CropTransform(0, 0, 1, 1),
        imgaug.WarpAffineTransform(np.eye(2, 3), (2, 2)),
        imgaug.FlipTransform(2, 2),
        imgaug.TransposeTransform(),
        imgaug.NoOpTransform(),
        imgaug.PhotometricTransform(flip_lr),
        imgaug.TransformFactory(apply_image=flip_lr),
    ]:
        assert isinstance(t, imgaug.Transform) and isinstance(t, BaseTransform)
        pickle.loads(pickle.dumps(t))


# -- behaviour of particular augmentors -------------------------------------------------------
def test_flip_and_transpose_values():
    img = make_image((H, W, 3), np.uint8)
    np.testing.assert_array_equal(imgaug.Flip(horiz=True, prob=1).augment(img), img[:, ::-1])
    np.testing.assert_array_equal(imgaug.Flip(vert=True, prob=1).augment(img), img[::-1])
    np.testing.assert_array_equal(imgaug.Flip(vert=True, prob=0).augment(img), img)
    np.testing.assert_array_equal(imgaug.Transpose(1.0).augment(img), img.transpose(1, 0, 2))


def test_googlenet_crop_area_and_fallback():
    aug = imgaug.GoogleNetRandomCropAndResize(target_shape=16)
    img = make_image((100, 80, 3), np.uint8)
    for _ in range(20):
        crop = aug.get_transform(img).tfms[0]
        assert isinstance(crop, imgaug.CropTransform)
        assert 0.06 * 8000 <= crop.h * crop.w <= 8000
    fallback = imgaug.GoogleNetRandomCropAndResize((2.0, 3.0), target_shape=16).get_transform(img)
    assert isinstance(fallback.tfms[0], imgaug.ResizeTransform)
    assert fallback.apply_image(img).shape == (16, 16, 3)


def test_cutout_fills_a_rectangle_in_place():
    img = np.full((H, W), 100, np.uint8)
    out = imgaug.RandomCutout(5, 7, fill=3).augment(img)
    assert out is img
    assert (out == 3).sum() == 35


def test_salt_pepper_and_clip_values():
    img = np.full((H, W, 3), 100, np.uint8)
    out = imgaug.SaltPepperNoise(0.1, 0.1).augment(img.copy())
    assert set(np.unique(out)) <= {0, 100, 255}
    clipped = imgaug.Clip(110, 120).augment(np.arange(256, dtype=np.float32).reshape(16, 16))
    assert clipped.min() == 110 and clipped.max() == 120


def test_min_max_normalize_of_a_constant_image_is_finite():
    out = imgaug.MinMaxNormalize(0, 1).augment(np.full((4, 4), 7, np.uint8))
    assert np.isfinite(out).all() and (out == 0).all()
    out = imgaug.MinMaxNormalize(0, 1).augment(make_image((H, W, 3), np.uint8))
    assert out.min() == 0 and out.max() == pytest.approx(1)


def test_normalizers_values():
    img = make_image((H, W, 3), np.float32)
    out = imgaug.MeanVarianceNormalize().augment(img)
    assert abs(out.mean()) < 1e-3 and out.std() == pytest.approx(1, rel=1e-3)


def test_gamma_matches_on_uint8_and_float():
    aug = imgaug.Gamma((0.5, 0.5 + 1e-9))
    img = np.arange(256, dtype=np.uint8).reshape(16, 16)
    u8 = aug.augment(img)
    f32 = aug.augment(img.astype(np.float32))
    assert np.abs(u8.astype(np.float32) - f32).max() < 1.0


def test_grayscale_and_colorspace():
    img = make_image((H, W, 3), np.uint8)
    gray = imgaug.Grayscale().augment(img)
    np.testing.assert_array_equal(gray[:, :, 0], cv2.cvtColor(img, cv2.COLOR_BGR2GRAY))
    assert imgaug.Grayscale(keepdims=False).augment(img).shape == (H, W)
    hsv = imgaug.ColorSpace(cv2.COLOR_BGR2HSV).augment(img)
    np.testing.assert_array_equal(hsv, cv2.cvtColor(img, cv2.COLOR_BGR2HSV))


def test_hue_by_half_turn_is_reversible_on_float():
    img = make_image((H, W, 3), np.float32) / 255
    half = imgaug.Hue((90, 90 + 1e-6))
    back = half.augment(half.augment(img.copy()))
    np.testing.assert_allclose(back, img, atol=1e-3)


def test_jpeg_noise_keeps_grayscale_shape():
    img = make_image((H, W), np.uint8)
    out = imgaug.JpegNoise((90, 91)).augment(img)
    assert out.shape == (H, W) and np.abs(out.astype(int) - img).mean() < 20


def test_rotation_and_crop_valid_has_no_border():
    img = np.full((60, 80), 200, np.float32)
    aug = imgaug.RotationAndCropValid(40, interp=cv2.INTER_NEAREST)
    for _ in range(10):
        out = aug.augment(img)
        assert (out == 200).all(), "the crop includes the rotation's empty corners"


def test_random_choose_aug_respects_probabilities():
    aug = imgaug.RandomChooseAug([(imgaug.Flip(horiz=True, prob=1), 0.0), (imgaug.Identity(), 1)])
    img = make_image((H, W), np.uint8)
    for _ in range(20):
        assert isinstance(aug.get_transform(img), imgaug.NoOpTransform)


# -- the legacy interface ---------------------------------------------------------------------
class LegacyRoll(imgaug.ImageAugmentor):
    """Written for tensorpack < 0.10: _get_augment_params / _augment / _augment_coords."""

    def __init__(self, max_shift):
        super().__init__()
        self._init(locals())

    def _get_augment_params(self, img):
        return self.rng.randint(-self.max_shift, self.max_shift + 1)

    def _augment(self, img, dx):
        return np.roll(img, dx, axis=1)

    def _augment_coords(self, coords, dx):
        coords = coords.copy()
        coords[:, 0] += dx
        return coords


def _roll(img, dx):
    return np.roll(img, dx, axis=1)


def _shift_x(coords, dx):
    coords = coords.copy()
    coords[:, 0] += dx
    return coords


class NewRoll(imgaug.ImageAugmentor):
    """The same augmentor written with get_transform."""

    def __init__(self, max_shift):
        self.max_shift = max_shift
        super().__init__()

    def get_transform(self, img):
        dx = self.rng.randint(-self.max_shift, self.max_shift + 1)
        return imgaug.TransformFactory(
            apply_image=functools.partial(_roll, dx=dx),
            apply_coords=functools.partial(_shift_x, dx=dx),
        )


class LegacyPhotometric(imgaug.PhotometricAugmentor):
    def __init__(self, delta):
        super().__init__()
        self._init(locals())

    def _get_augment_params(self, img):
        return self._rand_range(-self.delta, self.delta)

    def _augment(self, img, v):
        return (img + v).astype(img.dtype)


def test_legacy_augmentor_matches_the_new_one(caplog):
    img = make_image((H, W, 3), np.uint8)
    legacy, new = LegacyRoll(5), NewRoll(5)
    legacy.rng = np.random.RandomState(42)
    new.rng = np.random.RandomState(42)
    with caplog.at_level(logging.WARNING, logger="dataflow.imgaug.base"):
        for _ in range(10):
            tl, tn = legacy.get_transform(img), new.get_transform(img)
            np.testing.assert_array_equal(tl.apply_image(img), tn.apply_image(img))
            np.testing.assert_array_equal(tl.apply_coords(POINTS), tn.apply_coords(POINTS))
    assert repr(legacy) == "imgaug.LegacyRoll(max_shift=5)"


@pytest.mark.parametrize(
    "make", [lambda: LegacyRoll(5), lambda: NewRoll(5), lambda: imgaug.Shift(0.2, 0.2)]
)
def test_legacy_calls_match_the_new_api(make):
    img = make_image((H, W, 3), np.uint8)
    aug = make()
    aug.reset_state()
    old_results = []
    for _ in range(5):
        out, params = aug.augment_return_params(img.copy())
        assert isinstance(params, BaseTransform)
        np.testing.assert_array_equal(aug.augment_with_params(img.copy(), params), out)
        old_results.append((out, aug.augment_coords(POINTS.copy(), params)))
    aug.reset_state()  # with a seed, the stream restarts: the new API must draw the same
    for out, coords in old_results:
        t = aug.get_transform(img)
        np.testing.assert_array_equal(t.apply_image(img.copy()), out)
        np.testing.assert_array_equal(t.apply_coords(POINTS.copy()), coords)


def test_legacy_params_still_accepted_by_legacy_calls():
    aug = LegacyRoll(3)
    img = make_image((H, W), np.uint8)
    np.testing.assert_array_equal(aug.augment_with_params(img, 2), np.roll(img, 2, axis=1))
    np.testing.assert_array_equal(aug.augment_coords(POINTS, 2)[:, 0], POINTS[:, 0] + 2)


def test_legacy_photometric_and_augmentor_alias():
    assert imgaug.Augmentor is imgaug.ImageAugmentor
    aug = LegacyPhotometric(10)
    img = np.full((H, W), 100, np.float32)
    out = aug.augment(img)
    assert out.shape == img.shape and abs(float(out[0, 0]) - 100) <= 10
    assert (out == out[0, 0]).all()
    t = aug.get_transform(img)
    np.testing.assert_array_equal(t.apply_coords(POINTS), POINTS)


def test_augmentor_without_an_implementation_says_what_to_write():
    class Empty(imgaug.ImageAugmentor):
        pass

    with pytest.raises(NotImplementedError, match="get_transform"):
        Empty().augment(np.zeros((4, 4), np.uint8))


def test_legacy_augmentor_in_a_list_with_new_ones():
    aug = imgaug.AugmentorList([LegacyRoll(4), imgaug.Flip(horiz=True), LegacyPhotometric(3)])
    img = make_image((H, W, 3), np.float32)
    aug.reset_state()
    expected = [aug.augment(img.copy()) for _ in range(4)]
    aug.reset_state()
    got = [aug.get_transform(img).apply_image(img.copy()) for _ in range(4)]
    for e, g in zip(expected, got):
        np.testing.assert_array_equal(e, g)


# -- wrappers for other libraries -------------------------------------------------------------
def _importable(module: str) -> bool:
    import importlib

    try:
        importlib.import_module(module)
    except Exception:  # missing, or installed but broken (imgaug 0.4 on numpy 2)
        return False
    return True


@pytest.mark.skipif(_importable("albumentations"), reason="albumentations is importable")
def test_albumentations_missing_is_a_clear_import_error():
    with pytest.raises(ImportError, match="albumentations"):
        imgaug.Albumentations(object())


@pytest.mark.skipif(_importable("imgaug"), reason="imgaug is importable")
def test_iaa_missing_is_a_clear_import_error():
    with pytest.raises(ImportError, match="imgaug"):
        imgaug.IAAugmentor(object())


@pytest.mark.skipif(not _importable("albumentations"), reason="albumentations not installed")
def test_albumentations_wrapper():
    import albumentations as A

    aug = imgaug.Albumentations(A.HorizontalFlip(p=1))
    img = make_image((H, W, 3), np.uint8)
    t = aug.get_transform(img)
    np.testing.assert_array_equal(t.apply_image(img), img[:, ::-1])
    out = imgaug.Albumentations(A.RandomBrightnessContrast(p=1)).augment(img)
    assert out.shape == img.shape and out.dtype == np.uint8
    crop = imgaug.Albumentations(A.RandomCrop(20, 30, p=1)).get_transform(img)
    first = crop.apply_image(img.copy())
    assert first.shape == (20, 30, 3)
    np.testing.assert_array_equal(crop.apply_image(img.copy()), first)


@pytest.mark.skipif(not _importable("imgaug"), reason="imgaug not installed (or broken)")
def test_iaa_wrapper_moves_images_and_coordinates():
    from imgaug import augmenters as iaa

    aug = imgaug.IAAugmentor(iaa.Fliplr(1.0))
    img = make_image((H, W, 3), np.uint8)
    t = aug.get_transform(img)
    np.testing.assert_array_equal(t.apply_image(img), img[:, ::-1])
    moved = t.apply_coords(POINTS.copy())
    np.testing.assert_allclose(moved[:, 0], W - POINTS[:, 0], atol=1e-4)

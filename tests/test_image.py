"""dataflow.image: imdecode, ImageFromFile on real JPEG/PNG files, and the augmenting flows."""

from __future__ import annotations

import logging
import pickle
import subprocess
import sys

import cv2
import numpy as np
import pytest

from dataflow import imgaug
from dataflow._engine import seeding
from dataflow.common import BatchData
from dataflow.errors import DataFlowArgumentError, DatapointError, FormatError
from dataflow.image import (
    AugmentImageComponent,
    AugmentImageComponents,
    AugmentImageCoordinates,
    ImageFromFile,
    imdecode,
)
from dataflow.raw import DataFromList

pytestmark = pytest.mark.usefixtures("unseeded")


def color_image(h: int = 30, w: int = 40, seed: int = 0) -> np.ndarray:
    rng = np.random.RandomState(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx * 6 % 256, yy * 8 % 256, (xx + yy) * 3 % 256], -1) + rng.randint(
        0, 20, (h, w, 3)
    )
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture
def image_files(tmp_path):
    """Three JPEGs (two color, one grayscale) and a PNG, with their BGR pixels as cv2 reads them."""
    paths, pixels = [], []
    for i in range(3):
        img = color_image(30 + i, 40, seed=i)
        if i == 2:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        path = tmp_path / f"img{i}.jpg"
        assert cv2.imwrite(str(path), img, [cv2.IMWRITE_JPEG_QUALITY, 94])
        paths.append(str(path))
        pixels.append(cv2.imread(str(path), cv2.IMREAD_COLOR))
    png = tmp_path / "img3.png"
    cv2.imwrite(str(png), color_image(20, 25, seed=9))
    paths.append(png)  # a PathLike, not a str
    pixels.append(cv2.imread(str(png), cv2.IMREAD_COLOR))
    return paths, pixels


# -- imdecode ---------------------------------------------------------------------------------
def test_imdecode_matches_opencv_and_orders_channels():
    img = color_image()
    png = cv2.imencode(".png", img)[1]
    np.testing.assert_array_equal(imdecode(png.tobytes()), img)
    np.testing.assert_array_equal(imdecode(png.tobytes(), rgb=True), img[:, :, ::-1])
    np.testing.assert_array_equal(imdecode(memoryview(png.tobytes())), img)
    np.testing.assert_array_equal(imdecode(png), img)
    gray = imdecode(bytearray(png.tobytes()), channel=1)
    assert gray.shape == (30, 40, 1)
    np.testing.assert_array_equal(gray[:, :, 0], cv2.imdecode(png, cv2.IMREAD_GRAYSCALE))
    jpeg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 94])[1].tobytes()
    np.testing.assert_array_equal(imdecode(jpeg), cv2.imdecode(np.frombuffer(jpeg, np.uint8), 1))
    assert imdecode(jpeg).dtype == np.uint8


def test_imdecode_errors():
    with pytest.raises(FormatError, match="not an image"):
        imdecode(b"definitely not a jpeg")
    with pytest.raises(FormatError):
        imdecode(b"")
    with pytest.raises(DataFlowArgumentError, match="channel"):
        imdecode(b"xx", channel=4)


# -- ImageFromFile ----------------------------------------------------------------------------
def test_image_from_file_reads_rgb(image_files):
    paths, pixels = image_files
    ds = ImageFromFile(paths)
    assert len(ds) == 4
    out = list(ds)
    assert len(out) == 4
    for (img,), bgr in zip(out, pixels):
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
        np.testing.assert_array_equal(img, bgr[:, :, ::-1])
        assert img.flags.c_contiguous


def test_image_from_file_gray_and_resize(image_files):
    paths, pixels = image_files
    gray = [dp[0] for dp in ImageFromFile(paths, channel=1)]
    for img, bgr in zip(gray, pixels):
        assert img.shape == bgr.shape[:2] + (1,)
    resized = [dp[0] for dp in ImageFromFile(paths, channel=1, resize=(12, 16))]
    assert all(img.shape == (12, 16, 1) for img in resized)
    square = [dp[0] for dp in ImageFromFile(paths, resize=10)]
    assert all(img.shape == (10, 10, 3) for img in square)


def test_image_from_file_shuffles_each_pass_reproducibly(image_files):
    paths, _ = image_files
    paths = paths * 4  # 16 files
    before = list(paths)

    def passes():
        ds = ImageFromFile(paths, shuffle=True)
        return [[dp[0].tobytes() for dp in ds] for _ in range(3)]

    seeding.set_seed(4)
    first = passes()
    seeding.set_seed(4)
    assert passes() == first
    assert first[0] != first[1] or first[1] != first[2]
    assert sorted(first[0]) == sorted(first[1])
    assert paths == before  # the caller's list is not reordered


def test_image_from_file_errors(image_files, tmp_path):
    paths, _ = image_files
    with pytest.raises(DataFlowArgumentError, match="empty"):
        ImageFromFile([])
    with pytest.raises(DataFlowArgumentError, match="list of paths"):
        ImageFromFile(paths[0])
    with pytest.raises(DataFlowArgumentError, match="channel"):
        ImageFromFile(paths, channel=2)
    with pytest.raises(DataFlowArgumentError, match="resize"):
        ImageFromFile(paths, resize=(0, 3))
    missing = str(tmp_path / "missing.jpg")
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        list(ImageFromFile([paths[0], missing]))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 truncated garbage")
    with pytest.raises(FormatError, match="broken.jpg"):
        list(ImageFromFile([broken]))


# -- AugmentImageComponent --------------------------------------------------------------------
def images(n: int = 8, dtype=np.uint8) -> list[list]:
    return [[color_image(30, 40, seed=i).astype(dtype), i] for i in range(n)]


def test_augment_image_component_shapes_and_labels():
    augs = [imgaug.GoogleNetRandomCropAndResize(target_shape=16), imgaug.Flip(horiz=True)]
    ds = AugmentImageComponent(DataFromList(images(), shuffle=False), augs)
    out = list(ds)
    assert len(out) == len(ds) == 8
    assert [dp[1] for dp in out] == list(range(8))
    assert all(dp[0].shape == (16, 16, 3) and dp[0].dtype == np.uint8 for dp in out)
    batch = next(iter(BatchData(ds, 4)))
    assert batch[0].shape == (4, 16, 16, 3)


def test_augment_image_component_accepts_an_augmentor_list_and_dict_keys():
    data = [{"img": color_image(seed=i), "label": i} for i in range(4)]
    ds = AugmentImageComponent(
        DataFromList(data, shuffle=False), imgaug.AugmentorList([imgaug.Resize(8)]), index="img"
    )
    out = list(ds)
    assert all(dp["img"].shape == (8, 8, 3) for dp in out)
    assert data[0]["img"].shape == (30, 40, 3)  # upstream untouched


def test_copy_protects_the_upstream_from_in_place_augmentors():
    data = images(4)
    originals = [dp[0].copy() for dp in data]
    cutout = [imgaug.RandomCutout(10, 10, fill=0)]
    list(AugmentImageComponent(DataFromList(data, shuffle=False), cutout))
    for dp, orig in zip(data, originals):
        np.testing.assert_array_equal(dp[0], orig)
    list(AugmentImageComponent(DataFromList(data, shuffle=False), cutout, copy=False))
    assert any(not np.array_equal(dp[0], orig) for dp, orig in zip(data, originals))


def test_unsupported_dtype_is_a_clear_error_even_when_catching():
    data = [[np.zeros((8, 8), np.int64), 0]]
    ds = AugmentImageComponent(DataFromList(data), [imgaug.Flip(horiz=True)], catch_exceptions=True)
    with pytest.raises(DatapointError, match=r"component 0.*int64"):
        list(ds)
    ds = AugmentImageComponent(
        DataFromList([[np.zeros((8, 8), np.uint8)]]), [imgaug.Flip(horiz=True)], index=3
    )
    with pytest.raises(DatapointError, match="3"):
        list(ds)


class FailsOnOdd(imgaug.ImageAugmentor):
    """Raises on images whose first pixel is odd (stands in for occasional bad data)."""

    def get_transform(self, img):
        if int(img.flat[0]) % 2:
            raise ValueError("odd first pixel")
        return imgaug.NoOpTransform()


def test_catch_exceptions_counts_logs_and_drops(caplog):
    data = [[np.full((4, 4), i, np.uint8), i] for i in range(10)]
    ds = AugmentImageComponent(
        DataFromList(data, shuffle=False), [FailsOnOdd()], catch_exceptions=True
    )
    with caplog.at_level(logging.ERROR, logger="dataflow.image"):
        out = list(ds)
    assert [dp[1] for dp in out] == [0, 2, 4, 6, 8]
    assert ds.num_errors == 5
    assert sum("augmentation failed" in r.message for r in caplog.records) == 5
    assert any("odd first pixel" in (r.exc_text or "") for r in caplog.records)
    strict = AugmentImageComponent(DataFromList(data, shuffle=False), [FailsOnOdd()])
    with pytest.raises(ValueError, match="odd first pixel"):
        list(strict)


def test_bad_augmentors_argument():
    with pytest.raises(DataFlowArgumentError, match="AugmentImageComponent"):
        AugmentImageComponent(DataFromList(images(1)), "flip")
    with pytest.raises(DataFlowArgumentError, match="AugmentImageComponent"):
        AugmentImageComponent(DataFromList(images(1)), [imgaug.Identity(), 3])
    with pytest.raises(DataFlowArgumentError, match="index"):
        AugmentImageComponents(DataFromList(images(1)), [imgaug.Identity()], index=())


# -- several components and coordinates -------------------------------------------------------
GEOMETRIC = [
    imgaug.RandomCrop((24, 30)),
    imgaug.Flip(horiz=True),
    imgaug.Rotation(25, interp=cv2.INTER_NEAREST),
    imgaug.Resize((20, 26), interp=cv2.INTER_NEAREST),
]


def keypoints() -> np.ndarray:
    return np.array([[10.5, 12.5], [25.5, 8.5], [18.5, 20.5]], np.float32)


def test_augment_image_components_moves_masks_and_coords_together():
    data = []
    for i in range(6):
        img = color_image(seed=i)
        mask = img[:, :, 2].copy()
        labels = img[:, :, 1].astype(np.int32)  # an int32 label map
        data.append((img, mask, keypoints(), labels, i))  # tuple datapoints are fine
    seeding.set_seed(2)
    ds = AugmentImageComponents(
        DataFromList(data, shuffle=False), GEOMETRIC, index=(0, 1, 3), coords_index=(2,)
    )
    out = list(ds)
    assert len(out) == 6
    for img, mask, coords, labels, label in out:
        assert img.shape == (20, 26, 3) and mask.shape == (20, 26) and mask.dtype == np.uint8
        np.testing.assert_array_equal(mask, img[:, :, 2])
        assert labels.shape == (20, 26) and labels.dtype == np.int32
        assert coords.shape == (3, 2) and coords.dtype == np.float32
        assert isinstance(label, int)
    np.testing.assert_array_equal(data[0][2], keypoints())  # copy=True: upstream coords untouched


def test_coordinates_follow_the_dots_through_a_flow():
    h, w = 30, 40
    pts = keypoints()
    data = []
    for k in range(len(pts)):
        img = np.zeros((h, w), np.float32)
        x, y = pts[k]
        img[int(y), int(x)] = 255
        data.append([img, pts[k : k + 1].copy()])
    augs = [imgaug.Flip(horiz=True, prob=1), imgaug.Transpose(1.0), imgaug.CenterPaste((50, 40))]
    ds = AugmentImageCoordinates(DataFromList(data, shuffle=False), augs)
    for img, coords in ds:
        (row, col) = np.argwhere(img == 255)[0]
        np.testing.assert_allclose(coords[0], [col + 0.5, row + 0.5])


def test_augment_image_coordinates_validates_coordinates():
    bad_dtype = [[color_image(), np.array([[1, 2]], np.int64)]]
    with pytest.raises(DatapointError, match=r"component 1.*float"):
        list(AugmentImageCoordinates(DataFromList(bad_dtype), [imgaug.Flip(horiz=True)]))
    bad_shape = [[color_image(), np.zeros((3, 3), np.float32)]]
    with pytest.raises(DatapointError, match="Nx2"):
        list(AugmentImageCoordinates(DataFromList(bad_shape), [imgaug.Flip(horiz=True)]))
    with pytest.raises(DatapointError, match="bool"):
        list(
            AugmentImageComponents(
                DataFromList([[color_image(), np.zeros((30, 40), bool)]]), [imgaug.Identity()]
            )
        )


def test_components_catch_exceptions_drops_the_datapoint():
    data = [[np.full((4, 4), i, np.uint8), np.full((4, 4), i, np.uint8)] for i in range(6)]
    ds = AugmentImageComponents(
        DataFromList(data, shuffle=False), [FailsOnOdd()], catch_exceptions=True
    )
    assert [int(dp[0][0, 0]) for dp in ds] == [0, 2, 4]
    assert ds.num_errors == 3
    coords = [[np.full((4, 4), i, np.uint8), np.zeros((1, 2), np.float32)] for i in range(4)]
    ds = AugmentImageCoordinates(
        DataFromList(coords, shuffle=False), [FailsOnOdd()], catch_exceptions=True
    )
    assert len(list(ds)) == 2 and ds.num_errors == 2


# -- seeding through flows --------------------------------------------------------------------
def build(n: int = 6):
    augs = [imgaug.GoogleNetRandomCropAndResize(target_shape=12), imgaug.Flip(horiz=True)]
    return AugmentImageComponent(DataFromList(images(n), shuffle=False), augs)


def run_passes(ds, passes: int = 2) -> list[list[bytes]]:
    return [[dp[0].tobytes() for dp in ds] for _ in range(passes)]


def test_flow_is_reproducible_with_a_seed_and_fresh_each_pass():
    seeding.set_seed(9)
    first = run_passes(build())
    seeding.set_seed(9)
    second = run_passes(build())
    assert first == second
    assert first[0] != first[1], "two passes drew the same augmentations"
    seeding.set_seed(10)
    assert run_passes(build()) != first


def test_two_flows_with_equal_augmentors_draw_different_streams():
    seeding.set_seed(9)
    a, b = build(), build()
    assert run_passes(a, 1) != run_passes(b, 1)


def test_flows_pickle_and_replay_the_same_stream():
    seeding.set_seed(5)
    ds = build()
    ds.reset_state()
    clone = pickle.loads(pickle.dumps(ds))
    assert run_passes(clone) == run_passes(ds)


# -- packaging --------------------------------------------------------------------------------
@pytest.mark.timeout(60)
def test_import_dataflow_does_not_import_opencv():
    code = (
        "import sys, dataflow, dataflow.image\n"
        "assert 'cv2' not in sys.modules, 'cv2 imported'\n"
        "assert 'dataflow.imgaug' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=50)


@pytest.mark.timeout(60)
def test_missing_opencv_is_a_clear_import_error():
    code = (
        "import sys\n"
        "sys.modules['cv2'] = None\n"
        "try:\n"
        "    import dataflow.imgaug\n"
        "except ImportError as e:\n"
        "    assert 'pydataflow[image]' in str(e), e\n"
        "else:\n"
        "    raise SystemExit('no ImportError')\n"
        "from dataflow.image import ImageFromFile\n"
        "try:\n"
        "    ImageFromFile(['x.jpg'])\n"
        "except ImportError as e:\n"
        "    assert 'pydataflow[image]' in str(e), e\n"
        "else:\n"
        "    raise SystemExit('no ImportError')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=50)

"""Resume of the image flows: ImageFromFile seeks into its file list, and a pipeline shaped like an
ImageNet loader without a parallel map (LMDB of JPEGs read shuffled, a shuffle buffer, decode,
random augmentation, batches) resumes exactly, decoding only what is left."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

import dataflow
import dataflow.image as image_module
from dataflow import (
    AugmentImageComponent,
    BatchData,
    DataFromList,
    ImageFromFile,
    LMDBSerializer,
    LocallyShuffleData,
    MapDataComponent,
    _state,
    imgaug,
)
from dataflow.format import LMDBData
from resume_check import canon, check_resume, save_after

pytestmark = pytest.mark.timeout(120)


def jpeg(rng, shape=(12, 14, 3)):
    ok, buf = cv2.imencode(".jpg", rng.randint(0, 255, size=shape, dtype=np.uint8))
    assert ok
    return buf.tobytes()


@pytest.fixture(scope="module")
def image_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("images")
    rng = np.random.RandomState(0)
    paths = []
    for i in range(11):
        path = d / f"{i:02d}.jpg"
        path.write_bytes(jpeg(rng))
        paths.append(str(path))
    return paths


def test_image_from_file_in_list_order_resumes_exactly_at_every_k(image_files):
    # (shuffled: test_state_datasets.py)
    assert _state.kind(ImageFromFile) == "native"
    check_resume(lambda: ImageFromFile(image_files, shuffle=False), passes=3)


def count_decodes(monkeypatch):
    decoded: list[int] = []
    real = image_module.imdecode

    def imdecode(*args, **kwargs):
        decoded.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(image_module, "imdecode", imdecode)
    return decoded


def test_a_resumed_image_from_file_pass_reads_only_the_files_left(image_files, monkeypatch):
    def build():
        return ImageFromFile(image_files, shuffle=True)

    dataflow.set_seed(5)
    whole = [canon(dp) for dp in build()]
    dataflow.set_seed(5)
    first, state = save_after(build(), 9)
    decoded = count_decodes(monkeypatch)
    ds = build()
    ds.load_state_dict(state)
    rest = [canon(dp) for dp in ds]
    assert first + rest == whole
    assert len(decoded) == 2  # the 9 files before the position are not read again


# -- an ImageNet-shaped loader, all in the consumer --------------------------------------------------


@pytest.fixture(scope="module")
def jpeg_lmdb(tmp_path_factory):
    rng = np.random.RandomState(1)
    dps = [[np.frombuffer(jpeg(rng, (18, 18, 3)), np.uint8), i] for i in range(30)]
    path = str(tmp_path_factory.mktemp("loader") / "train.lmdb")
    LMDBSerializer.save(DataFromList(dps, shuffle=False), path)
    return path


def decode(buf):
    return image_module.imdecode(buf, 3)


def loader(path):
    ds = LMDBSerializer.load(path, shuffle=True)
    ds = LocallyShuffleData(ds, 8)
    ds = MapDataComponent(ds, decode, 0)
    ds = AugmentImageComponent(ds, [imgaug.Flip(horiz=True), imgaug.RandomCrop(14)], index=0)
    return BatchData(ds, 4, remainder=True)


def raw_loader(path):  # the same with LMDBData's raw pairs decoded by the map
    ds = LMDBData(path, shuffle=True)
    ds = LocallyShuffleData(ds, 8)
    ds = MapDataComponent(
        ds, lambda v: decode(dataflow.codec.loads(v)[0]), 1
    )  # the record's JPEG bytes
    ds = AugmentImageComponent(ds, [imgaug.Flip(horiz=True), imgaug.RandomCrop(14)], index=1)
    return BatchData(ds, 4, remainder=True)


@pytest.mark.parametrize("build", [loader, raw_loader])
def test_imagenet_shaped_loader_resumes_exactly(jpeg_lmdb, build):
    check_resume(lambda: build(jpeg_lmdb), passes=3)


def test_imagenet_shaped_loader_resumed_at_90_percent_decodes_little(jpeg_lmdb, monkeypatch):
    dataflow.set_seed(8)
    whole = [canon(b) for b in loader(jpeg_lmdb)]
    dataflow.set_seed(8)
    first, state = save_after(loader(jpeg_lmdb), 7)  # 28 of 30 datapoints batched
    decoded = count_decodes(monkeypatch)
    ds = loader(jpeg_lmdb)
    ds.load_state_dict(state)
    rest = [canon(b) for b in ds]
    assert first + rest == whole
    # The JPEGs of the last batch only: the shuffle buffer is refilled from the reader below the
    # map (LocallyShuffleData's design), so no image before the position is decoded again.
    assert len(decoded) == 2

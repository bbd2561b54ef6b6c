"""The issue's acceptance pipeline, shaped like an ImageNet loader: an LMDB of JPEGs read in a
shuffled order, a shuffle buffer, decode and augment in the consumer, a strict parallel map, and
batching; saved with 2 workers and resumed with 3 and with 1 (exact), and unordered (exactly-once)."""

from __future__ import annotations

from collections import Counter

import cv2
import numpy as np
import pytest

import dataflow
import flows
from dataflow import (
    AugmentImageComponent,
    AugmentImageComponents,
    AugmentImageCoordinates,
    BatchData,
    DataFromList,
    LMDBSerializer,
    LocallyShuffleData,
    MapData,
    MapDataComponent,
    MultiProcessMapData,
    imgaug,
)
from resume_check import canon, check_resume, save_after

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def jpeg_lmdb(tmp_path_factory):
    rng = np.random.RandomState(0)
    dps = []
    for i in range(48):
        img = rng.randint(0, 255, size=(20, 20, 3), dtype=np.uint8)
        ok, buf = cv2.imencode(".jpg", img)
        assert ok
        dps.append([np.frombuffer(buf.tobytes(), np.uint8), i])
    path = str(tmp_path_factory.mktemp("imagenet") / "train.lmdb")
    LMDBSerializer.save(DataFromList(dps, shuffle=False), path)
    return path


def AUGMENTORS():  # noqa: N802
    return [imgaug.Flip(horiz=True), imgaug.RandomCrop(16), imgaug.Brightness(30)]


def decode(buf):
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)


def build(path, num_proc, ordered=True):
    ds = LMDBSerializer.load(path, shuffle=True)
    ds = LocallyShuffleData(ds, 10)
    ds = MapDataComponent(ds, decode, 0)
    ds = AugmentImageComponent(ds, AUGMENTORS(), index=0)
    ds = MultiProcessMapData(
        ds, num_proc, flows.normalize_image, strict=True, ordered=ordered, buffer_size=12
    )
    return BatchData(ds, 4, remainder=True)


def passes(ds, n):
    return [[canon(b) for b in ds] for _ in range(n)]


@pytest.mark.parametrize("k", [3, 12])
def test_imagenet_pipeline_resumes_exactly_with_another_worker_count(jpeg_lmdb, k):
    dataflow.set_seed(21)
    with build(jpeg_lmdb, 2) as ds:
        full = passes(ds, 2)
    flat = [b for p in full for b in p]
    for resumed_with in (3, 1):
        dataflow.set_seed(21)
        first, state = save_after(build(jpeg_lmdb, 2), k)
        dataflow.set_seed(99)
        with build(jpeg_lmdb, resumed_with) as again:
            again.load_state_dict(state)
            rest = [b for p in passes(again, 2 - k // len(full[0])) for b in p]
        assert first + rest == flat, f"resumed with {resumed_with} workers"


def test_imagenet_pipeline_unordered_is_exactly_once(jpeg_lmdb):
    def labels(batches):
        return Counter(int(x) for b in batches for x in b[1])

    dataflow.set_seed(5)
    with build(jpeg_lmdb, 2, ordered=False) as ds:
        whole = [labels(ds) for _ in range(2)]
    dataflow.set_seed(5)
    ds = build(jpeg_lmdb, 2, ordered=False)
    it = iter(ds)
    first = [next(it) for _ in range(5)]
    state = ds.state_dict()
    del it
    ds.close()
    with build(jpeg_lmdb, 3, ordered=False) as again:
        again.load_state_dict(state)
        rest_of_pass = labels(again)
        second = labels(again)
    assert labels(first) + rest_of_pass == whole[0]
    assert second == whole[1]


def images(n=9):
    rng = np.random.RandomState(1)
    return DataFromList(
        [[rng.randint(0, 255, (20, 20, 3)).astype(np.uint8), i] for i in range(n)], shuffle=True
    )


def coords_dp(dp):
    return [dp[0], np.array([[1.0, 2.0], [5.0, 7.0]], np.float32) + dp[1]]


IMAGE_FLOWS = {
    "component": lambda: AugmentImageComponent(images(), AUGMENTORS(), index=0),
    "components": lambda: AugmentImageComponents(
        MapData(images(), lambda dp: [dp[0], dp[0].copy(), dp[1]]), AUGMENTORS(), index=(0, 1)
    ),
    "coordinates": lambda: AugmentImageCoordinates(
        MapData(images(), coords_dp), [imgaug.Flip(horiz=True), imgaug.RandomCrop(8)], 0, 1
    ),
    "random-order": lambda: AugmentImageComponent(
        images(), [imgaug.RandomOrderAug([imgaug.Brightness(20), imgaug.Contrast((0.8, 1.2))])]
    ),
}


@pytest.mark.parametrize("name", sorted(IMAGE_FLOWS))
def test_augmenting_flows_resume_with_their_augmentors_streams(name):
    check_resume(IMAGE_FLOWS[name], passes=3)

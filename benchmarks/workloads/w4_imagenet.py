"""W4, ImageNet-like (the headline): read JPEG -> decode -> random-resized crop 224 -> flip -> batch 64.

The source is a list of datapoints ``[path, index]`` over 256 distinct synthetic 500x375 JPEGs
(quality 94, ~113 KB; the same images as W6), item ``i`` naming file ``i % 256``; a pass is
``N = 2560`` items (40 batches). The user function, identical for every library, reads the file,
decodes it with ``cv2.imdecode``, takes a random-resized crop (scale 0.08-1, aspect ratio 3/4-4/3,
10 tries, else a center crop) resized to 224x224, flips it horizontally with probability 0.5 and
returns ``[uint8 HxWx3 image, label]`` with ``label = index % 1000``. Its random numbers come from
``random.Random(index)``, so an item's output does not depend on which worker maps it or when:
a pass's checksum is exact whatever the order. Batches are ``[uint8 (64, 224, 224, 3), int64 (64,)]``.

Files, not bytes in memory: an ImageNet pipeline reads paths in its workers (tensorpack's
``ILSVRC12Files``, torch's ``ImageFolder``), and W7 builds on this with 1.28M path strings. The
files are written once into ``benchmarks/results/w4-data/`` (gitignored) and stay in the page cache.

Every library delivers exact passes (each item once per pass; the guard checks each pass), so the
parallel maps of ours and tensorpack run with ``strict=True``; tensorpack's
``MultiProcessMapAndBatchDataZMQ`` has no exact mode (it never ends a pass), so its passes are
cut every 40 batches and flagged as not exact. OpenCV's own thread pool is off
(``cv2.setNumThreads(1)`` on the function's first call in each process, as the tensorpack examples
do), so that 2 workers use 2 cores.

Ceiling: 2 x the single-core rate of the same function and collation, run in the consumer
process in the same run (``RATE_SCALE``): perfect scaling over the 2 cores, nothing spent on
moving data.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from workloads._common import Built, as_numpy

NAME = "W4"
TITLE = "ImageNet-like: read JPEG, decode, random-resized crop 224, flip, batch 64 (2 workers)"
METRIC = "img/s"
TIMING = "wall"
N = 2560
SMOKE_N = 640  # --smoke: passes of the first 640 items only
N_CACHED = 5120  # items whose expected figures are cached (W7 and W8 use prefixes)
BATCH = 64
WORKERS = 2
N_DISTINCT = 256
SIZE = 224
DATA_DIR = Path(__file__).resolve().parent.parent / "results" / "w4-data"
DATA_VERSION = 1
# The ceiling runs the map on one core; the harness multiplies its rate by this.
RATE_SCALE = {"ceiling": float(WORKERS)}

_cv2_ready = False


def _cv2() -> Any:
    global _cv2_ready
    import cv2

    if not _cv2_ready:
        cv2.setNumThreads(1)
        _cv2_ready = True
    return cv2


def user_map(dp: list) -> list:
    """The user's function, identical for every library: ``[path, index]`` -> ``[image, label]``."""
    cv2 = _cv2()
    path, index = dp
    with open(path, "rb") as f:
        data = f.read()
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    rng = random.Random(index)
    h, w = img.shape[:2]
    area = h * w
    log_lo, log_hi = math.log(3 / 4), math.log(4 / 3)
    for _ in range(10):
        target = area * rng.uniform(0.08, 1.0)
        ratio = math.exp(rng.uniform(log_lo, log_hi))
        cw = int(round(math.sqrt(target * ratio)))
        ch = int(round(math.sqrt(target / ratio)))
        if 0 < cw <= w and 0 < ch <= h:
            y0 = rng.randint(0, h - ch)
            x0 = rng.randint(0, w - cw)
            break
    else:  # center crop of the short side
        ch = cw = min(h, w)
        y0, x0 = (h - ch) // 2, (w - cw) // 2
    out = cv2.resize(img[y0 : y0 + ch, x0 : x0 + cw], (SIZE, SIZE), interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.5:
        out = cv2.flip(out, 1)
    return [out, index % 1000]


def collate(dps: list) -> list:
    """A list of ``[image, label]`` -> ``[uint8 (n, 224, 224, 3), int64 (n,)]``."""
    return [np.stack([dp[0] for dp in dps]), np.array([dp[1] for dp in dps], dtype=np.int64)]


# -- source data --------------------------------------------------------------------------------
def jpeg_dir() -> Path:
    """The folder of the 256 JPEG files, written on first use (the W6 images)."""
    folder = DATA_DIR / f"jpeg-v{DATA_VERSION}"
    if not (folder / f"{N_DISTINCT - 1:03d}.jpg").exists():
        from workloads.w6_lmdb import _jpegs

        folder.mkdir(parents=True, exist_ok=True)
        for i, jpeg in enumerate(_jpegs()):
            tmp = folder / f".{i:03d}.{os.getpid()}"
            tmp.write_bytes(jpeg)
            os.replace(tmp, folder / f"{i:03d}.jpg")
    return folder


def path_of(folder: Path, i: int) -> str:
    return f"{folder}/{i % N_DISTINCT:03d}.jpg"


def make_source() -> list[list]:
    folder = jpeg_dir()
    return [[path_of(folder, i), i] for i in range(N)]


def _item_stats(dp: list) -> tuple[int, int]:
    img, label = dp
    return int(label), int(img[::16, ::16, :].sum(dtype=np.int64))


def expected_items(n: int) -> tuple[int, tuple]:
    """``(count, checksum)`` of items ``0..n-1`` mapped, ``n <= 5120``. The per-item figures are
    computed once per OpenCV version (it takes a minute of CPU) and cached."""
    import cv2

    if n > N_CACHED:
        raise ValueError(f"expected_items: at most {N_CACHED} items, not {n}")
    cache = DATA_DIR / f"expected-v{DATA_VERSION}-n{N_CACHED}-cv{cv2.__version__}.json"
    if cache.exists():
        stats = json.loads(cache.read_text())
    else:
        import multiprocessing

        folder = jpeg_dir()
        items = [[path_of(folder, i), i] for i in range(N_CACHED)]
        with multiprocessing.get_context("fork").Pool(WORKERS) as pool:
            stats = pool.map(_mapped_stats, items, chunksize=64)
        tmp = cache.with_suffix(f".{os.getpid()}")
        tmp.write_text(json.dumps(stats))
        os.replace(tmp, cache)
    return n, (sum(s[0] for s in stats[:n]), sum(s[1] for s in stats[:n]))


def _mapped_stats(dp: list) -> tuple[int, int]:
    return _item_stats(user_map(dp))


def expected_pass() -> tuple[int, tuple]:
    return expected_items(N)


expected_prefix = expected_items


def batch_stats(batch: Any) -> tuple[int, tuple]:
    imgs = as_numpy(batch[0])
    labels = as_numpy(batch[1])
    if (
        imgs.dtype != np.uint8
        or imgs.shape[1:] != (SIZE, SIZE, 3)
        or labels.shape != imgs.shape[:1]
    ):
        raise ValueError(f"bad batch: images {imgs.dtype}{imgs.shape}, labels {labels.shape}")
    return len(labels), (
        int(labels.astype(np.int64).sum()),
        int(imgs[:, ::16, ::16, :].sum(dtype=np.int64)),
    )


# -- ceiling ------------------------------------------------------------------------------------
def build_ceiling(source: list) -> Built:
    """The same function and collation in this process, on one core (the harness doubles it)."""

    def epoch() -> Iterator:
        mapped = map(user_map, source)
        return map(collate, iter(lambda: list(itertools.islice(mapped, BATCH)), []))

    return Built(epoch)


# -- ours ---------------------------------------------------------------------------------------
def import_ours() -> None:
    import dataflow  # noqa: F401


def build_ours(source: list, start_method: str | None = None) -> Built:
    """The tensorpack idiom: a parallel map over the list, then BatchData in the consumer."""
    from dataflow import BatchData, DataFromList, MultiProcessMapDataZMQ

    ds = DataFromList(source, shuffle=False)
    ds = MultiProcessMapDataZMQ(
        ds, num_proc=WORKERS, map_func=user_map, strict=True, start_method=start_method
    )
    ds = BatchData(ds, BATCH)
    ds.reset_state()
    return Built(ds.__iter__, close=ds.close)


def build_ours_map_and_batch(source: list, start_method: str | None = None) -> Built:
    """Batching in the workers: each worker maps and stacks whole batches."""
    from dataflow import DataFromList, MultiProcessMapAndBatchData

    ds = DataFromList(source, shuffle=False)
    ds = MultiProcessMapAndBatchData(
        ds, WORKERS, user_map, BATCH, strict=True, start_method=start_method
    )
    ds.reset_state()
    return Built(ds.__iter__, close=ds.close)


# -- tensorpack ---------------------------------------------------------------------------------
def import_tensorpack() -> None:
    import tensorpack.dataflow  # noqa: F401


def build_tensorpack(source: list) -> Built:
    from tensorpack.dataflow import BatchData, DataFromList, MultiProcessMapDataZMQ

    ds = DataFromList(source, shuffle=False)
    ds = MultiProcessMapDataZMQ(ds, num_proc=WORKERS, map_func=user_map, strict=True)
    ds = BatchData(ds, BATCH)
    ds.reset_state()
    return Built(ds.__iter__)


def build_tensorpack_map_and_batch(source: list) -> Built:
    """Batching in the workers; never ends a pass, so passes are cut every N / 64 batches."""
    from tensorpack.dataflow import DataFromList, MultiProcessMapAndBatchDataZMQ

    ds = DataFromList(source, shuffle=False)
    # buffer_size has to be given: its default (None) fails its own check in tensorpack 0.11
    ds = MultiProcessMapAndBatchDataZMQ(ds, WORKERS, user_map, BATCH, buffer_size=BATCH * 10)
    ds.reset_state()
    stream = iter(ds)
    return Built(lambda: itertools.islice(stream, len(source) // BATCH), iid=True)


# -- torch --------------------------------------------------------------------------------------
def import_torch() -> None:
    import torch.utils.data  # noqa: F401


def _torch_dataset(source: list) -> Any:
    from torch.utils.data import Dataset

    class ImageDataset(Dataset):
        def __init__(self, items: list) -> None:
            self.items = items

        def __len__(self) -> int:
            return len(self.items)

        def __getitem__(self, index: int) -> list:
            return user_map(self.items[index])

    return ImageDataset(source)


def build_torch(
    source: list, context: str | None = None, persistent: bool = False, prefetch: int | None = None
) -> Built:
    """The documented simplest use: a map-style Dataset, DataLoader(batch_size, num_workers)."""
    from torch.utils.data import DataLoader

    extra: dict[str, Any] = {"multiprocessing_context": context} if context else {}
    if persistent:
        extra["persistent_workers"] = True
    if prefetch:
        extra["prefetch_factor"] = prefetch
    loader = DataLoader(_torch_dataset(source), batch_size=BATCH, num_workers=WORKERS, **extra)
    return Built(loader.__iter__)


# -- grain --------------------------------------------------------------------------------------
def import_grain() -> None:
    import grain  # noqa: F401


def build_grain(source: list, buffer: int = 1) -> Built:
    """MapDataset -> map -> batch -> to_iter_dataset -> mp_prefetch (worker processes, spawn)."""
    import grain

    ds = grain.MapDataset.source(source).map(user_map).batch(BATCH).to_iter_dataset()
    ds = ds.mp_prefetch(
        grain.multiprocessing.MultiprocessingOptions(
            num_workers=WORKERS, per_worker_buffer_size=buffer
        )
    )
    return Built(ds.__iter__)


# -- spdl ---------------------------------------------------------------------------------------
def import_spdl() -> None:
    import spdl.pipeline  # noqa: F401


def build_spdl(source: list) -> Built:
    """The documented simplest use: the map on the pipeline's thread pool (concurrency 2)."""
    from spdl.pipeline import PipelineBuilder

    pipeline = (
        PipelineBuilder()
        .add_source(source, continuous=True)
        .pipe(user_map, concurrency=WORKERS)
        .aggregate(BATCH)
        .pipe(collate)
        .add_sink(4)
        .build(num_threads=WORKERS)
    )
    pipeline.start()
    return Built(pipeline.get_iterator, close=pipeline.stop)


def build_spdl_processes(source: list, context: str = "fork") -> Built:
    """Map, batch and collate in a region of 2 worker processes (``to(ProcessPoolExecutorConfig)``)."""
    from spdl.pipeline import PipelineBuilder
    from spdl.pipeline.defs import MAIN_PROCESS, ProcessPoolExecutorConfig

    pipeline = (
        PipelineBuilder()
        .add_source(source, continuous=True)
        .to(ProcessPoolExecutorConfig(max_workers=WORKERS, mp_context=context))
        .pipe(user_map)
        .aggregate(BATCH)
        .pipe(collate)
        .to(MAIN_PROCESS)
        .add_sink(4)
        .build(num_threads=WORKERS)
    )
    pipeline.start()
    return Built(pipeline.get_iterator, close=pipeline.stop)


IMPORTS: dict[str, Callable[[], None]] = {
    "ceiling": lambda: None,
    "ours": import_ours,
    "tensorpack": import_tensorpack,
    "torch": import_torch,
    "grain": import_grain,
    "spdl": import_spdl,
}

BUILDERS: dict[str, dict[str, Callable[[list], Built]]] = {
    "ceiling": {"default": build_ceiling},
    "ours": {"default": build_ours, "map_and_batch": build_ours_map_and_batch},
    "tensorpack": {"default": build_tensorpack, "map_and_batch": build_tensorpack_map_and_batch},
    "torch": {
        "default": build_torch,
        "persistent": lambda s: build_torch(s, persistent=True, prefetch=4),
    },
    "grain": {"default": build_grain, "buffer4": lambda s: build_grain(s, buffer=4)},
    "spdl": {"default": build_spdl, "processes": build_spdl_processes},
}

"""W8, memory under backpressure: a consumer slower than its 2 workers (it sleeps 20 ms a batch).

When the consumer is the bottleneck, every buffer between the workers and it fills up; how much
memory a library then holds is set by its buffer bounds and copies, not by its speed. Two
workloads (each a namespace with a workload module's fields):

- ``W8-ARRAYS``: W3's 4.8 MB case: 2 workers each make uint8 arrays (32, 224, 224, 3) (item ``i``
  filled with ``i % 251``), 64 a pass; the consumer touches one byte a page of each (the
  checksum), then sleeps 20 ms.
- ``W8-IMAGES``: W4 (read, decode, random-resized crop, flip, batch 64 of uint8 224x224x3), the
  consumer sleeping 20 ms after each batch.

The sleep is outside the timed ``next()`` (``CONSUMER_SLEEP_S``, honoured by ``case.py``), so
throughput is bounded by it. The metric that counts is the **steady peak PSS**: the peak of the
process tree's summed PSS inside the window, after the first batch (``window_peak_pss_bytes`` in
each record; ``peak_pss_bytes`` also covers start-up). Every library runs its documented simplest
use ("default"): ours and tensorpack ``MultiProcessMapDataZMQ(strict=True)`` (W8-IMAGES: W4's
pipeline with ``BatchData``), torch ``DataLoader(num_workers=2)`` (``batch_size=None`` for the
arrays, which are batches already), grain ``mp_prefetch`` (spawn), spdl a region of 2 worker
processes (``ProcessPoolExecutorConfig``, fork), so that the data is made in 2 worker processes
for every library. No ceiling.
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import numpy as np

from workloads import w4_imagenet as w4
from workloads._common import Built, as_numpy

SLEEP_S = 0.02
WORKERS = 2
SHAPE = (32, 224, 224, 3)  # 4.8 MB
N_ARRAYS = 64
PAGE = 4096


# -- W8-ARRAYS ----------------------------------------------------------------------------------
def make_array(dp: list) -> list:
    """The user's function: ``[index]`` -> ``[uint8 array (32, 224, 224, 3), index]``."""
    (index,) = dp
    return [np.full(SHAPE, index % 251, np.uint8), index]


def array_source() -> list[list]:
    return [[i] for i in range(N_ARRAYS)]


def _pages() -> int:
    return -(-int(np.prod(SHAPE)) // PAGE)


def array_expected() -> tuple[int, tuple]:
    return N_ARRAYS, (
        N_ARRAYS * (N_ARRAYS - 1) // 2,
        sum(_pages() * (i % 251) for i in range(N_ARRAYS)),
    )


def array_stats(dp: Any) -> tuple[int, tuple]:
    arr = as_numpy(dp[0])
    if arr.dtype != np.uint8 or arr.shape != SHAPE:
        raise ValueError(f"bad array {arr.dtype}{arr.shape}")
    # touch one byte a page
    return 1, (int(as_numpy(dp[1])), int(arr.reshape(-1)[::PAGE].sum(dtype=np.int64)))


def _arrays_ours(source: list) -> Built:
    from dataflow import DataFromList, MultiProcessMapDataZMQ

    ds = MultiProcessMapDataZMQ(
        DataFromList(source, shuffle=False), WORKERS, make_array, strict=True
    )
    ds.reset_state()
    return Built(ds.__iter__, close=ds.close)


def _arrays_tensorpack(source: list) -> Built:
    from tensorpack.dataflow import DataFromList, MultiProcessMapDataZMQ

    ds = MultiProcessMapDataZMQ(
        DataFromList(source, shuffle=False), WORKERS, make_array, strict=True
    )
    ds.reset_state()
    return Built(ds.__iter__)


class ArrayDataset:
    """torch's map-style dataset: ``__getitem__`` makes one array."""

    def __init__(self, items: list) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> list:
        return make_array(self.items[index])


def _arrays_torch(source: list) -> Built:
    from torch.utils.data import DataLoader

    loader = DataLoader(ArrayDataset(source), batch_size=None, num_workers=WORKERS)
    return Built(loader.__iter__)


def _arrays_grain(source: list) -> Built:
    import grain

    ds = grain.MapDataset.source(source).map(make_array).to_iter_dataset()
    ds = ds.mp_prefetch(grain.multiprocessing.MultiprocessingOptions(num_workers=WORKERS))
    return Built(ds.__iter__)


def _arrays_spdl(source: list) -> Built:
    from spdl.pipeline import PipelineBuilder
    from spdl.pipeline.defs import MAIN_PROCESS, ProcessPoolExecutorConfig

    pipeline = (
        PipelineBuilder()
        .add_source(source, continuous=True)
        .to(ProcessPoolExecutorConfig(max_workers=WORKERS, mp_context="fork"))
        .pipe(make_array)
        .to(MAIN_PROCESS)
        .add_sink(4)
        .build(num_threads=WORKERS)
    )
    pipeline.start()
    return Built(pipeline.get_iterator, close=pipeline.stop)


ARRAYS = SimpleNamespace(
    NAME="W8-ARRAYS",
    TITLE="backpressure: 4.8 MB uint8 arrays made in 2 workers, consumer sleeping 20 ms each",
    METRIC="GB/s",
    UNITS_PER_DP=float(np.prod(SHAPE)),
    TIMING="wall",
    CONSUMER_SLEEP_S=SLEEP_S,
    make_source=array_source,
    expected_pass=array_expected,
    batch_stats=array_stats,
    IMPORTS={lib: w4.IMPORTS[lib] for lib in ("ours", "tensorpack", "torch", "grain", "spdl")},
    BUILDERS={
        "ours": {"default": _arrays_ours},
        "tensorpack": {"default": _arrays_tensorpack},
        "torch": {"default": _arrays_torch},
        "grain": {"default": _arrays_grain},
        "spdl": {"default": _arrays_spdl},
    },
)

# -- W8-IMAGES ----------------------------------------------------------------------------------
_IMAGE_BUILDERS: dict[str, Callable[[list], Built]] = {
    "ours": w4.build_ours,
    "tensorpack": w4.build_tensorpack,
    "torch": w4.build_torch,
    "grain": w4.build_grain,
    "spdl": w4.build_spdl_processes,
}

IMAGES = SimpleNamespace(
    NAME="W8-IMAGES",
    TITLE="backpressure: W4 (batches of 64 224x224 images), consumer sleeping 20 ms a batch",
    METRIC="img/s",
    TIMING="wall",
    CONSUMER_SLEEP_S=SLEEP_S,
    SMOKE_N=w4.SMOKE_N,
    expected_prefix=w4.expected_prefix,
    make_source=w4.make_source,
    expected_pass=w4.expected_pass,
    batch_stats=w4.batch_stats,
    IMPORTS={lib: w4.IMPORTS[lib] for lib in _IMAGE_BUILDERS},
    BUILDERS={lib: {"default": build} for lib, build in _IMAGE_BUILDERS.items()},
)

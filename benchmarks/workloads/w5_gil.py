"""W5, a GIL-bound map in 2 worker processes: a pure-Python loop per item, batch 64.

Measures how much of two cores a library turns into throughput when the per-item work holds the
GIL (so threads cannot help): the consumer side of the library must stay cheap and the workers
must never wait. Metric: items (datapoints) per second, wall clock.

Source: the indices ``0 .. 2**15 - 1`` (one pass; 512 batches of 64), iterated in the consumer.
The user function :func:`work` (identical for every library, run in the workers) spends ~40 µs
in a pure-Python loop and returns ``[int64[16], label]``: ``[i, i, ..., loop result]`` and
``i % 8``. Batches are ``[int64 (64, 16), labels (64,)]``; the checksum of a pass is the count,
the sum of column 0 (= the indices) and the sum of the labels.

Configs (2 workers everywhere):

- ours: ``default`` ``BatchData(MultiProcessMapData(DataFromList(indices), num_proc=2,
  map_func=work, strict=True), 64)``; ``map_and_batch`` ``MultiProcessMapAndBatchData(...,
  num_proc=2, map_func=work, batch_size=64, strict=True)`` (batching in the workers). ``strict``
  makes a pass exactly one pass of the source (the non-strict default continues across passes).
- tensorpack: ``default`` ``BatchData(MultiProcessMapDataZMQ(DataFromList(indices), num_proc=2,
  map_func=work, strict=True), 64)`` (its non-strict mode never ends a pass);
  ``map_and_batch`` ``MultiProcessMapAndBatchDataZMQ(..., 2, work, 64)``, which has no passes
  (it streams forever): one pass is the next 512 batches of the stream, flagged i.i.d.
- torch: ``default`` a map-style ``Dataset`` in ``DataLoader(batch_size=64, num_workers=2)``;
  ``persistent`` with ``persistent_workers=True, prefetch_factor=8``.
- grain: ``default`` ``MapDataset.range(n).map(work).batch(64).repeat().to_iter_dataset()
  .mp_prefetch(MultiprocessingOptions(num_workers=2))`` as one stream (a pass is the next 512
  batches); ``buffer16`` with ``per_worker_buffer_size=16``.
- spdl: ``default`` ``add_source(range(n), continuous=True).pipe(work, concurrency=2,
  executor=ProcessPoolExecutor(2)).aggregate(64).pipe(collate)``; ``region`` the map, the
  aggregation and the collation in a ``.to(ProcessPoolExecutorConfig(max_workers=2))`` region.

Ceiling: 2 x the single-core rate of the same map (BENCHMARKS.md): ``work`` and the same stacking
into batches of 64 run in the consumer's process on one core, and the workload's ``RATE_SCALE``
makes the harness count that rate twice. Two cores are the machine's whole budget, so a library
reaches it only if its consumer side and transport cost nothing.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from workloads._common import Built, as_numpy
from workloads.w2_procs import (
    IMPORTS,  # noqa: F401 (this workload's import functions)
    NUM_WORKERS,
    Spec,
    _tensorpack_close,
    _torch_close,
    build_spdl,
)

NAME = "W5"
TITLE = "GIL-bound map (~40 us pure-Python loop -> int64[16], label) in 2 workers, batch 64"
METRIC = "dp/s"
TIMING = "wall"
N = 2**15
BATCH = 64
LOOPS = 600  # ~40 µs per item on this machine's cores


def work(i: int) -> list:
    """The user's function, identical for every library: ~40 µs of pure Python per item."""
    acc = i
    for k in range(LOOPS):
        acc = (acc * 1103515245 + k) & 0xFFFF
    arr = np.full(16, i, dtype=np.int64)
    arr[15] = acc
    return [arr, i % 8]


def collate(items: list) -> list[np.ndarray]:
    """Stack datapoints into ``[int64 (b, 16), labels (b,)]`` (for spdl's aggregate)."""
    return [np.stack([it[0] for it in items]), np.array([it[1] for it in items], dtype=np.int64)]


def make_source() -> list[int]:
    return list(range(N))


def expected_pass() -> tuple[int, tuple]:
    return N, (N * (N - 1) // 2, sum(i % 8 for i in range(N)))


def batch_stats(batch: Any) -> tuple[int, tuple]:
    arr = as_numpy(batch[0])
    labels = as_numpy(batch[1])
    return len(labels), (int(arr[:, 0].sum()), int(labels.sum()))


# -- ceiling ---------------------------------------------------------------------------------------
def build_ceiling(source: list) -> Built:
    """The same map and stacking on one core in this process; RATE_SCALE counts it twice."""

    def epoch() -> Iterator:
        mapped = map(work, source)
        return map(collate, iter(lambda: list(itertools.islice(mapped, BATCH)), []))

    return Built(epoch)


RATE_SCALE = {"ceiling": float(NUM_WORKERS)}


# -- ours ------------------------------------------------------------------------------------------
def build_ours(source: list) -> Built:
    from dataflow import BatchData, DataFromList, MultiProcessMapData

    ds = DataFromList(source, shuffle=False)
    ds = MultiProcessMapData(ds, num_proc=NUM_WORKERS, map_func=work, strict=True)
    ds = BatchData(ds, BATCH)
    ds.reset_state()
    return Built(ds.__iter__, close=ds.close)


def build_ours_map_and_batch(source: list) -> Built:
    from dataflow import DataFromList, MultiProcessMapAndBatchData

    ds = DataFromList(source, shuffle=False)
    ds = MultiProcessMapAndBatchData(
        ds, num_proc=NUM_WORKERS, map_func=work, batch_size=BATCH, strict=True
    )
    ds.reset_state()
    return Built(ds.__iter__, close=ds.close)


# -- tensorpack ------------------------------------------------------------------------------------
def build_tensorpack(source: list) -> Built:
    from tensorpack.dataflow import BatchData, DataFromList, MultiProcessMapDataZMQ

    ds = DataFromList(source, shuffle=False)
    mapped = MultiProcessMapDataZMQ(ds, num_proc=NUM_WORKERS, map_func=work, strict=True)
    ds = BatchData(mapped, BATCH)
    ds.reset_state()
    return Built(ds.__iter__, close=_tensorpack_close(mapped))


def build_tensorpack_map_and_batch(source: list) -> Built:
    from tensorpack.dataflow import DataFromList, MultiProcessMapAndBatchDataZMQ

    ds = DataFromList(source, shuffle=False)
    ds = MultiProcessMapAndBatchDataZMQ(ds, NUM_WORKERS, work, BATCH, buffer_size=BATCH * 10)
    ds.reset_state()
    stream = iter(ds)  # it never ends a pass: take a pass's worth of batches from one stream
    per_pass = len(source) // BATCH
    return Built(lambda: itertools.islice(stream, per_pass), close=_tensorpack_close(ds), iid=True)


# -- torch -----------------------------------------------------------------------------------------
def _build_torch(source: list, persistent: bool) -> Built:
    from torch.utils.data import DataLoader, Dataset

    class Items(Dataset):
        def __init__(self, items: list) -> None:
            self.items = items

        def __len__(self) -> int:
            return len(self.items)

        def __getitem__(self, index: int) -> list:
            return work(self.items[index])

    kw: dict[str, Any] = {"persistent_workers": True, "prefetch_factor": 8} if persistent else {}
    loader = DataLoader(Items(source), batch_size=BATCH, num_workers=NUM_WORKERS, **kw)
    return Built(loader.__iter__, close=_torch_close(loader))


# -- grain -----------------------------------------------------------------------------------------
def _build_grain(source: list, buffer: int) -> Built:
    import grain

    ds = grain.MapDataset.range(len(source)).map(work).batch(BATCH)
    opts = grain.MultiprocessingOptions(num_workers=NUM_WORKERS, per_worker_buffer_size=buffer)
    it = iter(ds.repeat().to_iter_dataset().mp_prefetch(opts))
    per_pass = len(source) // BATCH
    return Built(lambda: itertools.islice(it, per_pass), close=it.close)


# -- spdl ------------------------------------------------------------------------------------------
def _build_spdl(source: list, region: bool) -> Built:
    return build_spdl(Spec(work, len(source), batch=BATCH, tiny=False), region, stack=collate)


BUILDERS: dict[str, dict[str, Callable[[list], Built]]] = {
    "ceiling": {"default": build_ceiling},
    "ours": {"default": build_ours, "map_and_batch": build_ours_map_and_batch},
    "tensorpack": {
        "default": build_tensorpack,
        "map_and_batch": build_tensorpack_map_and_batch,
    },
    "torch": {
        "default": lambda s: _build_torch(s, False),
        "persistent": lambda s: _build_torch(s, True),
    },
    "grain": {
        "default": lambda s: _build_grain(s, 1),
        "buffer16": lambda s: _build_grain(s, 16),
    },
    "spdl": {
        "default": lambda s: _build_spdl(s, False),
        "region": lambda s: _build_spdl(s, True),
    },
}

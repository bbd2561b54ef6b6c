"""W1, tiny in-process: source ``[i, 0.5]`` -> map ``[x + 1, y * 2]`` -> batch 256.

Measures the per-datapoint overhead of a library's single-process machinery: almost no work is done
per datapoint, so what is left is the cost of the library's layers. Metric: ns per datapoint.

One pass is the whole source list (2**18 datapoints = 1024 full batches, so batching with or
without remainder gives the same passes); a run iterates passes until the window is over.

Ceiling: a bare Python generator over the list with two maps, ``map(user_map, ...)`` per datapoint
and ``map(collate, ...)`` per 256-chunk, collate turning each component into one numpy array: the
least work any library must do to deliver the same batches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from workloads._common import Built, as_numpy

NAME = "W1"
TITLE = "tiny in-process: source [i, 0.5] -> map [x+1, y*2] -> batch 256"
METRIC = "ns/dp"
TIMING = "in_call"
N = 2**18
BATCH = 256


def user_map(dp: list) -> list:
    """The user's function, identical for every library."""
    x, y = dp
    return [x + 1, y * 2]


def make_source() -> list[list]:
    return [[i, 0.5] for i in range(N)]


def expected_pass() -> tuple[int, tuple]:
    xs = np.arange(1, N + 1, dtype=np.int64)
    return N, (int(xs.sum()), int((xs * xs).sum()), float(N))


def batch_stats(batch: Any) -> tuple[int, tuple]:
    x = as_numpy(batch[0]).astype(np.int64, copy=False)
    y = as_numpy(batch[1])
    return len(x), (int(x.sum()), int((x * x).sum()), float(y.sum()))


# -- ceiling ------------------------------------------------------------------------------------
def _collate(chunk: tuple) -> list[np.ndarray]:
    return [np.asarray(component) for component in zip(*chunk)]


def build_ceiling(source: list) -> Built:
    def epoch() -> Iterator:
        def gen() -> Iterator:
            yield from source

        mapped = map(user_map, gen())
        return map(_collate, zip(*[mapped] * BATCH))

    return Built(epoch)


# -- ours ---------------------------------------------------------------------------------------
def import_ours() -> None:
    import dataflow  # noqa: F401


def build_ours(source: list) -> Built:
    from dataflow.common import BatchData, MapData
    from dataflow.raw import DataFromList

    ds = DataFromList(source, shuffle=False)
    ds = MapData(ds, user_map)
    ds = BatchData(ds, BATCH)
    ds.reset_state()
    return Built(ds.__iter__, close=ds.close)


# -- tensorpack ---------------------------------------------------------------------------------
def import_tensorpack() -> None:
    import tensorpack.dataflow  # noqa: F401


def build_tensorpack(source: list) -> Built:
    from tensorpack.dataflow import BatchData, DataFromList, MapData

    ds = DataFromList(source, shuffle=False)
    ds = MapData(ds, user_map)
    ds = BatchData(ds, BATCH)
    ds.reset_state()
    return Built(ds.__iter__)


# -- torch --------------------------------------------------------------------------------------
def import_torch() -> None:
    import torch.utils.data  # noqa: F401


def build_torch(source: list) -> Built:
    """The documented simplest use: a map-style Dataset and a DataLoader in the main process."""
    from torch.utils.data import DataLoader, Dataset

    class TinyDataset(Dataset):
        def __init__(self, items: list) -> None:
            self.items = items

        def __len__(self) -> int:
            return len(self.items)

        def __getitem__(self, index: int) -> list:
            return user_map(self.items[index])

    loader = DataLoader(TinyDataset(source), batch_size=BATCH, num_workers=0)
    return Built(loader.__iter__)


def build_torch_iterable(source: list) -> Built:
    """The same through an IterableDataset (no sampler, no per-index fetch)."""
    from torch.utils.data import DataLoader, IterableDataset

    class TinyIterable(IterableDataset):
        def __init__(self, items: list) -> None:
            self.items = items

        def __iter__(self) -> Iterator:
            return map(user_map, self.items)

    loader = DataLoader(TinyIterable(source), batch_size=BATCH, num_workers=0)
    return Built(loader.__iter__)


# -- grain --------------------------------------------------------------------------------------
def import_grain() -> None:
    import grain  # noqa: F401


def build_grain(source: list) -> Built:
    """The documented simplest use: a MapDataset iterated directly."""
    import grain

    ds = grain.MapDataset.source(source).map(user_map).batch(BATCH)
    return Built(ds.__iter__)


def build_grain_iter(source: list) -> Built:
    """The same converted to an IterDataset without read-ahead threads."""
    import grain

    ds = grain.MapDataset.source(source).map(user_map).batch(BATCH)
    it_ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=0, prefetch_buffer_size=0))
    return Built(it_ds.__iter__)


IMPORTS: dict[str, Callable[[], None]] = {
    "ceiling": lambda: None,
    "ours": import_ours,
    "tensorpack": import_tensorpack,
    "torch": import_torch,
    "grain": import_grain,
}

BUILDERS: dict[str, dict[str, Callable[[list], Built]]] = {
    "ceiling": {"default": build_ceiling},
    "ours": {"default": build_ours},
    "tensorpack": {"default": build_tensorpack},
    "torch": {"default": build_torch, "iterable": build_torch_iterable},
    "grain": {"default": build_grain, "iter_dataset": build_grain_iter},
}

"""W7, start-up and teardown: W4's pipeline over a dataset object holding 1.28M path strings.

An ImageNet training list is 1.28M ``(path, index)`` items; a library that ships the dataset object
to its workers (pickling it under forkserver and spawn) pays for all of it before the first batch.
The dataset object here holds 1.28M such items (distinct string objects naming W4's 256 files,
item ``i`` file ``i % 256``) and, so that a case stays short, its ``len()`` and a pass cover the
first ``N_PASS = 640`` (10 batches of 64); one pass per case (``MAX_PASSES``). W4's user function
and batches, 2 workers.

What counts: **import s**, **build s** (construction), **TTFB** (construction plus the first
batch), **teardown s** (from the end of the pass until the pipeline is closed or dropped and its
worker processes are gone) and leftovers, under each start method, one workload each:
``W7-FORK``, ``W7-FORKSERVER``, ``W7-SPAWN``. The start method is each library's own argument:
ours ``start_method``, torch ``multiprocessing_context``, spdl ``ProcessPoolExecutorConfig(
mp_context=...)``. tensorpack starts its workers by fork only and grain by spawn only; the other
methods are not applicable to them (``NOT_APPLICABLE``). The throughput of the 9 batches after the
first is recorded but means little.

Dataset objects: for ours and tensorpack a ``DataFlow`` over the items (iterated in the consumer;
only the map function goes to the workers); for torch a map-style dataset (``__len__`` and
``__getitem__`` doing the read and augment, as torch's documentation shows), for grain a random-
access source (``__len__`` and ``__getitem__``), for spdl an iterable; each holds all 1.28M items.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

from workloads import w4_imagenet as w4
from workloads._common import Built

N_PATHS = 1_281_167  # ILSVRC-2012 train
N_PASS = 640
BATCH = w4.BATCH
WORKERS = w4.WORKERS
MAX_PASSES = 1


class ImagePaths:
    """A user's dataset object: every path of the training set; a pass covers ``n`` of them."""

    def __init__(self, items: list, n: int) -> None:
        self.items = items
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> Any:
        if not 0 <= index < self.n:
            raise IndexError(index)
        return self.items[index]

    def __iter__(self) -> Iterator:
        return iter(self.items[: self.n])


class TorchImages(ImagePaths):
    """torch's map-style dataset: ``__getitem__`` reads and augments one item."""

    def __getitem__(self, index: int) -> Any:
        return w4.user_map(super().__getitem__(index))


def make_source() -> list:
    folder = w4.jpeg_dir()
    return [(w4.path_of(folder, i), i) for i in range(N_PATHS)]


def expected_pass() -> tuple[int, tuple]:
    return w4.expected_items(N_PASS)


# -- pipelines ----------------------------------------------------------------------------------
def _ours(method: str) -> Callable[[list], Built]:
    def build(items: list) -> Built:
        from dataflow import BatchData, DataFlow, MultiProcessMapDataZMQ

        class ImageFiles(DataFlow):
            def __init__(self, items: list, n: int) -> None:
                self.items = items
                self.n = n

            def __len__(self) -> int:
                return self.n

            def __iter__(self) -> Iterator:
                return iter(self.items[: self.n])

        ds = MultiProcessMapDataZMQ(
            ImageFiles(items, N_PASS), WORKERS, w4.user_map, strict=True, start_method=method
        )
        ds = BatchData(ds, BATCH)
        ds.reset_state()
        return Built(ds.__iter__, close=ds.close)

    return build


def _tensorpack(items: list) -> Built:
    from tensorpack.dataflow import BatchData, DataFlow, MultiProcessMapDataZMQ

    class ImageFiles(DataFlow):
        def __init__(self, items: list, n: int) -> None:
            self.items = items
            self.n = n

        def __len__(self) -> int:
            return self.n

        def __iter__(self) -> Iterator:
            return iter(self.items[: self.n])

    ds = MultiProcessMapDataZMQ(ImageFiles(items, N_PASS), WORKERS, w4.user_map, strict=True)
    ds = BatchData(ds, BATCH)
    ds.reset_state()
    return Built(ds.__iter__)


def _torch(method: str) -> Callable[[list], Built]:
    def build(items: list) -> Built:
        from torch.utils.data import DataLoader

        loader = DataLoader(
            TorchImages(items, N_PASS),
            batch_size=BATCH,
            num_workers=WORKERS,
            multiprocessing_context=method,
        )
        return Built(loader.__iter__)

    return build


def _grain(items: list) -> Built:
    import grain

    ds = grain.MapDataset.source(ImagePaths(items, N_PASS)).map(w4.user_map).batch(BATCH)
    ds = ds.to_iter_dataset().mp_prefetch(
        grain.multiprocessing.MultiprocessingOptions(num_workers=WORKERS)
    )
    return Built(ds.__iter__)


def _spdl(method: str) -> Callable[[list], Built]:
    def build(items: list) -> Built:
        from spdl.pipeline import PipelineBuilder
        from spdl.pipeline.defs import MAIN_PROCESS, ProcessPoolExecutorConfig

        pipeline = (
            PipelineBuilder()
            .add_source(ImagePaths(items, N_PASS), continuous=True)
            .to(ProcessPoolExecutorConfig(max_workers=WORKERS, mp_context=method))
            .pipe(w4.user_map)
            .aggregate(BATCH)
            .pipe(w4.collate)
            .to(MAIN_PROCESS)
            .add_sink(4)
            .build(num_threads=WORKERS)
        )
        pipeline.start()
        return Built(pipeline.get_iterator, close=pipeline.stop)

    return build


def _expected_case_s(lib: str, config: str, window: float, method: str) -> float:
    if lib == "torch" and method != "fork":
        return 30.0  # pickles the 1.28M items for each worker
    return 8.0


def _workload(method: str) -> SimpleNamespace:
    builders: dict[str, dict[str, Callable[[list], Built]]] = {
        "ours": {"default": _ours(method)},
        "torch": {"default": _torch(method)},
        "spdl": {"default": _spdl(method)},
    }
    if method == "fork":
        builders["tensorpack"] = {"default": _tensorpack}
    if method == "spawn":
        builders["grain"] = {"default": _grain}
    not_applicable = {}
    if method != "fork":
        not_applicable["tensorpack"] = "n/a: starts its workers by fork only"
    if method != "spawn":
        not_applicable["grain"] = "n/a: starts its workers by spawn only"
    return SimpleNamespace(
        NAME=f"W7-{method.upper()}",
        TITLE=f"start-up and teardown under {method}: W4 over a dataset of 1.28M paths "
        f"(passes of {N_PASS})",
        METRIC="img/s",
        TIMING="wall",
        MAX_PASSES=MAX_PASSES,
        WARMUP=False,  # start-up is what this workload measures
        NOT_APPLICABLE=not_applicable,
        make_source=make_source,
        expected_pass=expected_pass,
        batch_stats=w4.batch_stats,
        IMPORTS={lib: w4.IMPORTS[lib] for lib in builders},
        BUILDERS=builders,
        expected_case_s=lambda lib, config, window: _expected_case_s(lib, config, window, method),
    )


FORK = _workload("fork")
FORKSERVER = _workload("forkserver")
SPAWN = _workload("spawn")

"""Parallel maps of dataflow.parallel_map with real processes and threads: strict (exactly once per
pass), ordered (equal to MapData), None handling, errors, restart_workers, batching in workers."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter

import numpy as np
import pytest

from dataflow._engine.seeding import set_seed
from dataflow.common import BatchData, MapData
from dataflow.errors import (
    DataFlowArgumentError,
    DatapointError,
    LengthUnknownError,
    ReentrancyError,
    WorkerDied,
    WorkerError,
)
from dataflow.parallel_map import (
    MultiProcessMapAndBatchData,
    MultiProcessMapAndBatchDataZMQ,
    MultiProcessMapData,
    MultiProcessMapDataZMQ,
    MultiThreadMapData,
)
from dataflow.raw import DataFromList
from flows import (
    METHODS,
    Count,
    RaisingSource,
    die_on_7,
    double,
    drop_thirds,
    fail_on_13,
    features,
    noisy,
    slow_double,
)

pytestmark = pytest.mark.usefixtures("no_leaks")


def broken_source():
    """len 10, but [0] and then KeyError("upstream broke at <time>")."""
    return RaisingSource([[0]], KeyError, "upstream broke", length=10)


# -- strict: exactly once --------------------------------------------------------------------------


@pytest.mark.timeout(180)
@pytest.mark.parametrize("method", METHODS)
def test_strict_map_is_exactly_once_per_pass(method):
    n = 100_000
    expected = Counter(range(0, 2 * n, 2))
    with MultiProcessMapData(Count(n), 4, double, strict=True, start_method=method) as ds:
        assert len(ds) == n
        for _ in range(3):
            assert Counter(dp[0] for dp in ds) == expected


def test_strict_thread_map_is_exactly_once_per_pass():
    with MultiThreadMapData(Count(5000), 4, double, strict=True) as ds:
        for _ in range(3):
            assert sorted(dp[0] for dp in ds) == list(range(0, 10000, 2))


def test_strict_pass_after_an_abandoned_pass_is_still_exact():
    with MultiProcessMapData(
        Count(3000), 3, double, buffer_size=300, strict=True, start_method="fork"
    ) as ds:
        for k, _ in enumerate(ds):
            if k == 100:
                break
        assert sorted(dp[0] for dp in ds) == list(range(0, 6000, 2))
        it = iter(ds)
        next(it)
        it.close()
        assert sorted(dp[0] for dp in ds) == list(range(0, 6000, 2))


def test_strict_map_returning_none_is_an_error_naming_the_datapoint():
    with MultiProcessMapData(Count(20), 2, drop_thirds, strict=True, start_method="fork") as ds:
        with pytest.raises(DatapointError, match=r"map_func returned None for datapoint #\d+"):
            list(ds)
    with MultiThreadMapData(Count(20), 2, drop_thirds, strict=True, ordered=True) as ds:
        with pytest.raises(DatapointError, match="datapoint #0 "):
            list(ds)


# -- ordered ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_ordered_strict_map_equals_mapdata(method):
    src = DataFromList([[i] for i in range(500)], shuffle=False)
    reference = list(MapData(src, slow_double))
    with MultiProcessMapData(
        src, 3, slow_double, buffer_size=50, strict=True, ordered=True, start_method=method
    ) as ds:
        assert list(ds) == reference
        assert list(ds) == reference


def test_ordered_strict_map_of_a_shuffled_source_equals_mapdata_with_the_same_seed():
    def run(parallel):
        src = DataFromList([[i] for i in range(300)], shuffle=True)
        if parallel:
            ds = MultiProcessMapData(
                src, 3, slow_double, 40, True, ordered=True, start_method="fork"
            )
        else:
            ds = MapData(src, slow_double)
        set_seed(123)
        with ds:
            return [list(ds) for _ in range(2)]

    try:
        assert run(True) == run(False)
    finally:
        set_seed(None)


def test_ordered_maps_equal_mapdata_with_dicts_arrays_and_drops():
    items = [[i] for i in range(300)]
    ref = list(MapData(DataFromList(items, shuffle=False), features))
    with MultiThreadMapData(
        DataFromList(items, shuffle=False), 4, features, strict=True, ordered=True
    ) as ds:
        out = list(ds)
    assert len(out) == len(ref)
    for a, b in zip(out, ref):
        np.testing.assert_array_equal(a[0], b[0])
        assert a[0].dtype == b[0].dtype and a[1:] == b[1:]
    ref = list(MapData(DataFromList(items, shuffle=False), drop_thirds))
    with MultiProcessMapData(
        DataFromList(items, shuffle=False), 2, drop_thirds, ordered=True, start_method="fork"
    ) as ds:
        # non-strict: the repeated upstream, in order, None dropped; a pass yields len(ds)
        stream = list(ds) + list(ds)
    assert stream[: len(ref)] == ref
    assert stream[len(ref) : 2 * len(ref)] == ref


def test_seeded_ordered_map_is_reproducible():
    def run(seed):
        with MultiProcessMapData(
            Count(200),
            3,
            noisy,
            buffer_size=30,
            strict=True,
            ordered=True,
            seed=seed,
            start_method="fork",
        ) as ds:
            return list(ds)

    a, b, c = run(5), run(5), run(6)
    assert a == b and a != c
    assert len({dp[1] for dp in a}) == 200


# -- non-strict ------------------------------------------------------------------------------------


def test_non_strict_pass_yields_len_items_and_continues_the_stream():
    with MultiProcessMapData(Count(100), 2, drop_thirds, 12, start_method="fork") as ds:
        passes = [[dp[0] for dp in ds] for _ in range(3)]
    assert all(len(p) == 100 for p in passes)
    allout = [x for p in passes for x in p]
    # 300 outputs of the repeated upstream (a third is dropped); unordered, so which upstream pass
    # each comes from depends on timing (the ordered test checks the continuity exactly)
    assert set(allout) == {x for x in range(100) if x % 3}


def test_non_strict_map_of_an_unknown_length_or_empty_upstream():
    ds = MultiThreadMapData(Count(), 2, double)
    with pytest.raises(LengthUnknownError):
        len(ds)
    it = iter(ds)
    assert [next(it)[0] for _ in range(5)]
    it.close()
    ds.close()
    with MultiProcessMapData(DataFromList([]), 2, double, start_method="fork") as ds:
        assert list(ds) == []
    with MultiProcessMapData(DataFromList([]), 2, double, strict=True, start_method="fork") as ds:
        assert list(ds) == []


# -- errors ----------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", METHODS)
def test_exception_in_map_func_of_a_process_map(method):
    ds = MultiProcessMapData(Count(100), 2, fail_on_13, strict=True, start_method=method)
    with pytest.raises(WorkerError) as info:
        list(ds)
    err = info.value
    assert time.time() - float(str(err.__cause__).rsplit(" ", 1)[1]) < 1.0
    assert "ZeroDivisionError" in str(err) and "no thirteen" in str(err)
    assert err.exc_type_name == "ZeroDivisionError"
    assert "fail_on_13" in err.traceback_text
    ds.close()


def test_exception_in_map_func_of_a_thread_map():
    with MultiThreadMapData(Count(100), 3, fail_on_13, strict=True) as ds:
        with pytest.raises(WorkerError, match="ZeroDivisionError: no thirteen") as info:
            list(ds)
        assert isinstance(info.value.__cause__, ZeroDivisionError)
        assert "fail_on_13" in info.value.traceback_text


def test_exception_in_the_upstream_is_raised_as_itself():
    with MultiProcessMapData(broken_source(), 2, double, start_method="fork") as ds:
        with pytest.raises(KeyError, match="upstream broke"):
            list(ds)
        with pytest.raises(KeyError):  # the next pass starts afresh
            list(ds)


@pytest.mark.timeout(60)
def test_sigkill_of_a_map_worker_raises_worker_died():
    ds = MultiProcessMapData(Count(), 2, double, start_method="fork")
    it = iter(ds)
    next(it)
    os.kill(ds.worker_pids()[0], signal.SIGKILL)
    t0 = time.monotonic()
    with pytest.raises(WorkerDied, match="SIGKILL"):
        for _ in it:
            pass
    assert time.monotonic() - t0 < 2.0
    ds.close()


# -- restart_workers -------------------------------------------------------------------------------


@pytest.mark.timeout(120)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("ordered", [False, True])
def test_restart_workers_keeps_exactly_once_after_a_kill(method, ordered):
    n = 4000
    with MultiProcessMapData(
        Count(n), 3, double, strict=True, ordered=ordered, restart_workers=True, start_method=method
    ) as ds:
        for _ in range(2):
            out = []
            killed = []
            for dp in ds:
                out.append(dp[0])
                if len(out) in (500, 2500):
                    victim = ds.worker_pids()[len(killed) % 3]
                    os.kill(victim, signal.SIGKILL)
                    killed.append(victim)
            assert Counter(out) == Counter(range(0, 2 * n, 2))
            if ordered:
                assert out == list(range(0, 2 * n, 2))
            assert not set(killed) & set(ds.worker_pids())


@pytest.mark.timeout(60)
def test_restart_workers_gives_up_on_a_datapoint_that_kills_every_worker():
    with MultiProcessMapData(
        Count(50), 2, die_on_7, strict=True, restart_workers=True, start_method="fork"
    ) as ds:
        with pytest.raises(WorkerDied, match="3 times"):
            list(ds)


@pytest.mark.timeout(60)
def test_restart_workers_with_batching_keeps_exactly_once():
    with MultiProcessMapAndBatchData(
        Count(2000),
        2,
        features,
        16,
        strict=True,
        remainder=True,
        restart_workers=True,
        start_method="fork",
    ) as ds:
        seen = []
        for k, batch in enumerate(ds):
            seen.extend(batch[1].tolist())
            if k == 20:
                os.kill(ds.worker_pids()[0], signal.SIGKILL)
        assert sorted(seen) == list(range(2000))


# -- map and batch ---------------------------------------------------------------------------------


def test_map_and_batch_aliases_and_len():
    assert MultiProcessMapDataZMQ is MultiProcessMapData
    assert MultiProcessMapAndBatchDataZMQ is MultiProcessMapAndBatchData
    assert len(MultiProcessMapAndBatchData(Count(100), 2, features, 16)) == 6
    assert (
        len(MultiProcessMapAndBatchData(Count(100), 2, features, 16, strict=True, remainder=True))
        == 7
    )


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_map_and_batch_strict_is_exactly_once_and_stacks_like_batchdata(method):
    with MultiProcessMapAndBatchData(
        Count(1000), 3, features, 32, strict=True, remainder=True, start_method=method
    ) as ds:
        for _ in range(2):
            batches = list(ds)
            assert len(batches) == len(ds) == 32
            assert sorted(batches[k][1].shape[0] for k in range(32))[0] == 1000 % 32
            ids = sorted(int(i) for b in batches for i in b[1])
            assert ids == list(range(1000))
            for b in batches:
                assert b[0].dtype == np.float32 and b[0].shape[1:] == (2, 3)
                assert b[1].dtype == np.int64 and b[2].dtype == np.bool_
                np.testing.assert_array_equal(b[0][:, 0, 0], b[1].astype(np.float32))


def test_map_and_batch_ordered_equals_batchdata_of_mapdata():
    ref = list(BatchData(MapData(Count(300), features), 32, remainder=True))
    with MultiProcessMapAndBatchData(
        Count(300), 3, features, 32, strict=True, ordered=True, remainder=True, start_method="fork"
    ) as ds:
        out = list(ds)
    assert len(out) == len(ref) == 10
    for a, b in zip(out, ref):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
            assert x.dtype == y.dtype


def test_map_and_batch_non_strict_drops_none_and_gives_len_batches():
    with MultiProcessMapAndBatchData(Count(300), 2, drop_thirds, 10, start_method="fork") as ds:
        for _ in range(2):
            batches = list(ds)
            assert len(batches) == 30
            assert all(b[0].shape == (10,) and (b[0] % 3).all() for b in batches)
    with MultiProcessMapAndBatchData(
        Count(300), 2, drop_thirds, 10, strict=True, start_method="fork"
    ) as ds:
        with pytest.raises(DatapointError):
            list(ds)
    with MultiProcessMapAndBatchData(
        Count(30), 2, drop_thirds, 10, ordered=True, start_method="fork"
    ) as ds:
        with pytest.raises(DatapointError, match="ordered=True"):
            list(ds)


# -- lifecycle and arguments -----------------------------------------------------------------------


def test_second_live_iterator_is_refused():
    with MultiProcessMapData(Count(), 2, double, start_method="fork") as ds:
        it = iter(ds)
        next(it)
        with pytest.raises(ReentrancyError):
            next(iter(ds))
        del it
        it = iter(ds)
        assert next(it)
        it.close()


def test_arguments_are_checked_at_construction():
    with pytest.raises(DataFlowArgumentError, match="num_proc"):
        MultiProcessMapData(Count(1), 0, double)
    with pytest.raises(DataFlowArgumentError, match="num_thread"):
        MultiThreadMapData(Count(1), -2, double)
    with pytest.raises(DataFlowArgumentError, match="map_func"):
        MultiProcessMapData(Count(1), 2)
    with pytest.raises(DataFlowArgumentError, match="map_func"):
        MultiThreadMapData(Count(1), 2, map_func=3)
    with pytest.raises(DataFlowArgumentError, match="buffer_size"):
        MultiProcessMapData(Count(1), 2, double, buffer_size=0)
    with pytest.raises(DataFlowArgumentError, match="strict"):
        MultiProcessMapData(Count(1), 2, double, strict="no")
    with pytest.raises(DataFlowArgumentError, match="restart_workers"):
        MultiProcessMapData(Count(1), 2, double, restart_workers="yes")
    with pytest.raises(DataFlowArgumentError, match="batch_size"):
        MultiProcessMapAndBatchData(Count(1), 2, double, 0)
    with pytest.raises(DataFlowArgumentError, match="buffer_size"):
        MultiProcessMapAndBatchData(Count(1), 2, double, 16, buffer_size=8)
    with pytest.raises(DataFlowArgumentError, match="'ds' must be a DataFlow"):
        MultiProcessMapData([1], 2, double)


def test_default_worker_count_is_the_usable_cpus():
    ds = MultiProcessMapData(Count(10), map_func=double, start_method="fork")
    assert ds.num_proc == len(os.sched_getaffinity(0))
    assert sorted(dp[0] for dp in ds) != []
    ds.close()


def test_map_and_batch_strict_pass_after_an_abandoned_pass_is_exact():
    with MultiProcessMapAndBatchData(
        Count(1000), 3, features, 16, strict=True, remainder=True, start_method="fork"
    ) as ds:
        it = iter(ds)
        next(it)
        it.close()
        for _ in range(2):
            assert sorted(int(i) for b in ds for i in b[1]) == list(range(1000))


@pytest.mark.timeout(60)
def test_map_and_batch_with_many_workers_and_a_small_buffer_does_not_starve():
    with MultiProcessMapAndBatchData(
        Count(2000), 8, drop_thirds, 32, buffer_size=40, start_method="fork"
    ) as ds:
        batches = list(ds)
    assert len(batches) == 2000 // 32


# -- how a worker hands over results ----------------------------------------------------------------


class _Stop(Exception):
    pass


class _RecordingIO:
    """Stands in for a worker's channel: one task, a consumer that never waits, puts recorded."""

    def __init__(self, task: tuple) -> None:
        self.tasks = [task]
        self.puts: list[tuple] = []

    def get_task(self) -> tuple:
        if not self.tasks:
            raise _Stop
        return self.tasks.pop()

    def put(self, item: tuple) -> None:
        self.puts.append(item)

    def flush(self) -> None:
        pass

    def consumer_waiting(self) -> bool:
        return False


@pytest.mark.parametrize(
    ("nbytes", "chunks"), [(8, 1), (3 << 20, 6)], ids=["tiny results", "3 MB results"]
)
def test_a_worker_hands_over_large_results_one_by_one(nbytes: int, chunks: int):
    # A consumer slower than the workers never waits, so a worker maps a whole task chunk before
    # handing it over. Tiny results go as one message; arrays of megabytes must not (one message
    # of several would exceed a ring record and travel in fragments, reassembled by a copy: a
    # slow consumer then got each 4.8 MB array 300x slower than it is read in place).
    from dataflow._engine.map_job import _R_BUSY, _R_CHUNK, _T_RANGE, _MapJob

    job = _MapJob(lambda i: [np.full(nbytes, i, np.uint8), i])
    io = _RecordingIO((_T_RANGE, 10, list(range(6))))
    with pytest.raises(_Stop):
        job.run(io)
    # Each message also carries the worker's busy time (stats), as its last record.
    busy = [put for put in io.puts if put[0] == _R_BUSY]
    assert len(busy) == chunks and all(put[1] > 0 for put in busy)
    io.puts = [put for put in io.puts if put[0] != _R_BUSY]
    assert len(io.puts) == chunks
    assert all(put[0] == _R_CHUNK for put in io.puts)
    assert [i for put in io.puts for i in put[1]] == list(range(10, 16))
    assert [dp[1] for put in io.puts for dp in put[2]] == list(range(6))


def _allocator_churn(i: int) -> list:
    """Per datapoint, four times: hold eight 600 KB buffers, then free them all (the shape of an
    image map: decode, crop, resize, hand over, free). Returns this process's page faults."""
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(4):
        bufs = [np.ones(75_000) for _ in range(8)]
        del bufs
    return [i, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before]


def _glibc() -> bool:
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    return hasattr(libc, "gnu_get_libc_version")


@pytest.mark.skipif(not _glibc(), reason="malloc thresholds are a glibc setting")
@pytest.mark.parametrize("method", ["fork", "spawn"])
@pytest.mark.timeout(60)
def test_workers_reuse_their_heap_instead_of_faulting_buffers_in_per_datapoint(
    method: str, monkeypatch
) -> None:
    def faults_of_last_items(env: str | None) -> int:
        if env is None:
            monkeypatch.delenv("DATAFLOW_WORKER_MALLOC", raising=False)
        else:
            monkeypatch.setenv("DATAFLOW_WORKER_MALLOC", env)
        for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_"):
            monkeypatch.delenv(name, raising=False)
        ds = MultiProcessMapData(
            DataFromList(list(range(24)), shuffle=False),
            num_proc=1,
            map_func=_allocator_churn,
            strict=True,
            ordered=True,
            start_method=method,
        )
        with ds:
            ds.reset_state()
            faults = [f for _, f in ds]
        return sum(faults[-12:])

    # 12 datapoints x 4 rounds x 8 buffers x 147 pages would be ~56k faults if the heap were
    # given back after each round; a worker with steady thresholds faults them in once.
    assert faults_of_last_items(None) < 2_000
    if method == "spawn":
        # glibc's dynamic thresholds (the opt-out) in a fresh interpreter do give it back: the
        # test tells the two apart. (A forked worker inherits its parent's malloc state, whose
        # thresholds earlier allocations of the parent may already have raised.)
        assert faults_of_last_items("default") > 20_000

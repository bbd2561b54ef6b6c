"""Runners of dataflow.parallel with real processes and threads: tensorpack's semantics (each worker
runs its own copy; len is len(ds)), seeds, sharding, errors, nesting, reentrancy."""

from __future__ import annotations

import os
import time
from collections import Counter

import numpy as np
import pytest

from dataflow import get_worker_info
from dataflow.base import DataFlow, DataFlowTerminated
from dataflow.common import BatchData, MapData
from dataflow.errors import (
    DataFlowArgumentError,
    LengthUnknownError,
    ReentrancyError,
    WorkerError,
)
from dataflow.parallel import (
    MultiProcessPrefetchData,
    MultiProcessRunner,
    MultiProcessRunnerZMQ,
    MultiThreadPrefetchData,
    MultiThreadRunner,
    PrefetchData,
    PrefetchDataZMQ,
)
from dataflow.parallel_map import MultiProcessMapData, MultiThreadMapData
from dataflow.raw import DataFromList
from flows import (
    METHODS,
    Count,
    RaisingSource,
    Random,
    SelfSharding,
    Terminating,
    WhoAmI,
    take,
    triple,
    wait_until,
)

pytestmark = pytest.mark.usefixtures("no_leaks")


def failing_source():
    """[1], then ValueError("broken source 42 at <time>")."""
    return RaisingSource([[1]], ValueError, "broken source 42")


# -- tensorpack semantics --------------------------------------------------------------------------


def test_aliases():
    assert PrefetchData is MultiProcessRunner
    assert MultiProcessPrefetchData is MultiProcessRunner
    assert PrefetchDataZMQ is MultiProcessRunnerZMQ
    assert MultiThreadPrefetchData is MultiThreadRunner


@pytest.mark.parametrize("method", METHODS)
def test_one_worker_yields_the_source_in_order_pass_after_pass(method):
    src = DataFromList([[i, {"k": str(i)}] for i in range(57)], shuffle=False)
    with MultiProcessRunnerZMQ(src, num_proc=1, start_method=method) as ds:
        assert len(ds) == 57
        for _ in range(3):
            assert list(ds) == [[i, {"k": str(i)}] for i in range(57)]


def test_several_workers_give_len_datapoints_per_pass_from_their_copies():
    with MultiProcessRunner(Count(30), 8, 3, start_method="fork") as ds:
        for _ in range(3):
            out = [dp[0] for dp in ds]
            assert len(out) == 30
            assert set(out) <= set(range(30))
        counts = Counter(dp[0] for _ in range(10) for dp in ds)
        assert sum(counts.values()) == 300 and set(counts) <= set(range(30))


def test_unknown_length():
    ds = MultiProcessRunnerZMQ(Count(), num_proc=2, start_method="fork")
    with pytest.raises(LengthUnknownError):
        len(ds)
    assert len(take(ds, 1000)) == 1000
    ds.close()


def test_workers_see_their_worker_info():
    def seen_in(ds, n_workers):
        seen: set = set()
        for _ in range(20000):  # until every worker has delivered (bounded)
            seen.update(tuple(dp) for dp in ds)
            if len(seen) >= n_workers:
                break
        return seen

    with MultiProcessRunner(WhoAmI(), 10, 3, start_method="fork") as ds:
        assert seen_in(ds, 3) == {(i, 3, "process") for i in range(3)}
    with MultiThreadRunner(WhoAmI, 10, 2) as ds:
        assert seen_in(ds, 2) == {(0, 2, "thread"), (1, 2, "thread")}


def test_large_arrays_pass_whole_and_in_fragments():
    class Arrays(DataFlow):
        def __iter__(self):
            for n in (5, 4_800_000, 20_000_000):
                yield [np.full(n, n % 251, dtype=np.uint8), n]

    with MultiProcessRunnerZMQ(Arrays(), num_proc=1, start_method="fork") as ds:
        for arr, n in take(iter(ds), 6):
            assert arr.shape == (n,) and arr[0] == n % 251 and arr[-1] == n % 251


def test_terminated_source_ends_its_workers_stream_cleanly():
    with MultiProcessRunner(Terminating(), 10, 2, start_method="fork") as ds:
        assert sorted(dp[0] for dp in ds) == [0, 0, 1, 1, 2, 2]
        assert list(ds) == []
    with MultiThreadRunner(Terminating, 10, 2) as ds:
        assert sorted(dp[0] for dp in ds) == [0, 0, 1, 1, 2, 2]


class EndsEarlyInRankOne(DataFlow):
    """Rank 1 yields one datapoint and ends its stream; rank 0 yields its second one only after
    rank 1's process has exited, so the consumer, waiting for rank 0 in turn, sees rank 1's
    death while rank 1's last message (its end of stream) is still unread."""

    def __init__(self, folder):
        self.folder = folder

    def __iter__(self):
        rank = get_worker_info().id
        (self.folder / str(rank)).write_text(str(os.getpid()))
        yield [rank, 0]
        if rank == 1:
            raise DataFlowTerminated()
        pid_file = self.folder / "1"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # until rank 1 is a zombie or reaped
            try:
                pid = int(pid_file.read_text())
            except (FileNotFoundError, ValueError):  # not written yet
                continue
            try:
                with open(f"/proc/{pid}/stat") as f:
                    stat = f.read()
            except FileNotFoundError:  # reaped
                break
            if stat.rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                break
            time.sleep(0.005)
        yield [rank, 1]
        yield [rank, 2]
        raise DataFlowTerminated()


@pytest.mark.timeout(60)
def test_a_finished_workers_exit_is_not_a_death_while_another_worker_is_awaited(tmp_path):
    with MultiProcessRunner(EndsEarlyInRankOne(tmp_path), 10, 2, seed=3, start_method="fork") as ds:
        assert sorted(ds) == [[0, 0], [0, 1], [0, 2], [1, 0]]


def test_empty_sources_end_the_pass():
    with MultiProcessRunner(DataFromList([]), 10, 2, start_method="fork") as ds:
        assert list(ds) == []
    with MultiProcessRunner(Count(0), 10, 2, start_method="fork") as ds:
        assert list(ds) == []


# -- seeds -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_seeded_runner_is_reproducible_and_workers_differ(method):
    def run(seed):
        with MultiProcessRunner(Random(), 20, 2, seed=seed, start_method=method) as ds:
            return take(ds, 40)

    a, b, c = run(7), run(7), run(8)
    assert a == b  # even though the second pipeline is another root in this process
    assert a != c
    # round-robin merge: even positions come from worker 0, odd from worker 1
    assert a[0::2] != a[1::2]
    assert len({x for dp in a for x in dp}) == 80  # no stream repeats another


def test_seeded_thread_runner_is_reproducible():
    def run(seed):
        with MultiThreadRunner(Random, 20, 3, seed=seed) as ds:
            return take(ds, 30)

    a, b = run(3), run(3)
    assert [dp[0] for dp in a] == [dp[0] for dp in b]  # rng streams; numpy's global is shared
    assert len({dp[0] for dp in a}) == 30


def test_without_seed_workers_draw_fresh_streams():
    with MultiProcessRunner(Random(), 20, 2, start_method="fork") as ds:
        a = take(ds, 20)
    with MultiProcessRunner(Random(), 20, 2, start_method="fork") as ds:
        b = take(ds, 20)
    assert a != b
    assert len({x for dp in a for x in dp}) == 40


# -- sharding --------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_sharded_runner_pass_is_exactly_the_source(method):
    items = [[i] for i in range(103)]
    with MultiProcessRunner(
        DataFromList(items, shuffle=True), 16, 4, shard=True, start_method=method
    ) as ds:
        assert len(ds) == 103
        passes = [[dp[0] for dp in ds] for _ in range(3)]
    for p in passes:
        assert sorted(p) == list(range(103))
    assert passes[0] != passes[1]  # a new shuffle each pass


def test_sharded_runner_with_seed_reproduces_the_order():
    def run():
        src = MapData(DataFromList([[i] for i in range(50)], shuffle=True), lambda dp: [dp[0] * 3])
        with MultiProcessRunner(src, 8, 3, shard=True, seed=11, start_method="fork") as ds:
            return [list(ds) for _ in range(2)]

    a, b = run(), run()
    assert a == b
    assert sorted(x[0] for x in a[0]) == [3 * i for i in range(50)]


def test_sharded_runner_after_an_abandoned_pass_is_still_exact():
    src = DataFromList([[i] for i in range(200)], shuffle=True)
    with MultiProcessRunnerZMQ(src, num_proc=3, shard=True, start_method="fork") as ds:
        next(iter(ds))  # abandoned after one datapoint
        assert sorted(dp[0] for dp in ds) == list(range(200))
        assert sorted(dp[0] for dp in ds) == list(range(200))


def test_sharding_leaves_self_sharding_sources_alone_and_works_with_threads():
    with MultiProcessRunner(SelfSharding(), 10, 3, shard=True, start_method="fork") as ds:
        assert sorted(dp[0] for dp in ds) == list(range(20))
    with MultiThreadRunner(lambda: DataFromList([[i] for i in range(31)]), 8, 4, shard=True) as ds:
        for _ in range(2):
            assert sorted(dp[0] for dp in ds) == list(range(31))


def test_sharding_splits_every_source_of_a_batched_pipeline():
    src = BatchData(DataFromList([[i] for i in range(64)], shuffle=True), 4)
    with MultiProcessRunner(src, 8, 2, shard=True, start_method="fork") as ds:
        batches = list(ds)
    assert sorted(int(x) for b in batches for x in b[0]) == list(range(64))


# -- errors ----------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", METHODS)
def test_exception_in_the_upstream_of_a_process_runner(method):
    ds = MultiProcessRunner(failing_source(), 10, 2, start_method=method)
    with pytest.raises(WorkerError) as info:
        list(ds)
    err = info.value
    raised_at = float(str(err.__cause__).rsplit(" ", 1)[1])
    assert time.time() - raised_at < 1.0
    assert "ValueError" in str(err) and "broken source 42" in str(err)
    assert err.exc_type_name == "ValueError"
    assert "broken source 42" in err.traceback_text
    assert "flows.py" in err.traceback_text and "in __iter__" in err.traceback_text
    assert isinstance(err.__cause__, ValueError)
    ds.close()


@pytest.mark.timeout(30)
def test_exception_in_a_thread_runner():
    ds = MultiThreadRunner(failing_source, 10, 2)
    with pytest.raises(WorkerError, match="ValueError: broken source 42") as info:
        list(ds)
    assert info.value.exc_type_name == "ValueError"
    assert "in __iter__" in info.value.traceback_text
    ds.close()


# -- lifecycle -------------------------------------------------------------------------------------


def test_second_live_iterator_is_refused_and_abandoned_ones_do_not_block():
    ds = MultiProcessRunnerZMQ(Count(), num_proc=2, start_method="fork")
    it = iter(ds)
    next(it)
    with pytest.raises(ReentrancyError):
        next(iter(ds))
    del it
    assert len(take(ds, 10)) == 10
    it = iter(ds)
    next(it)
    it.close()
    assert len(take(ds, 10)) == 10
    ds.close()


def test_nested_parallel_flows():
    inner = MultiThreadMapData(Count(40), 2, triple, strict=True)
    with MultiProcessRunnerZMQ(inner, num_proc=2, start_method="fork") as ds:
        out = [dp[0] for dp in ds]
    assert len(out) == 40 and set(out) <= {3 * i for i in range(40)}
    inner = MultiProcessMapData(Count(30), 2, triple, strict=True, start_method="fork")
    with MultiProcessRunner(inner, 10, 2, start_method="fork") as ds:
        out = [dp[0] for dp in ds]
    assert len(out) == 30 and set(out) <= {3 * i for i in range(30)}


def test_arguments_are_checked_at_construction():
    with pytest.raises(DataFlowArgumentError, match="num_proc"):
        MultiProcessRunner(Count(1), 10, 0)
    with pytest.raises(DataFlowArgumentError, match="num_prefetch"):
        MultiProcessRunner(Count(1), -1, 2)
    with pytest.raises(DataFlowArgumentError, match="'ds' must be a DataFlow"):
        MultiProcessRunnerZMQ([1, 2, 3])
    with pytest.raises(DataFlowArgumentError, match="hwm"):
        MultiProcessRunnerZMQ(Count(1), 1, hwm=0)
    with pytest.raises(DataFlowArgumentError, match="seed"):
        MultiProcessRunnerZMQ(Count(1), seed=-3)
    with pytest.raises(DataFlowArgumentError, match="shard"):
        MultiProcessRunnerZMQ(Count(1), shard="yes")
    with pytest.raises(DataFlowArgumentError, match="get_df"):
        MultiThreadRunner(Count(1), 10, 2)
    with pytest.raises(DataFlowArgumentError, match="get_df"):
        MultiThreadRunner(lambda: [1], 10, 2)


def test_thread_runner_calls_get_df_once_per_thread():
    made = []

    def get_df():
        made.append(Count(10))
        return made[-1]

    with MultiThreadRunner(get_df, 5, 3) as ds:
        assert len(made) == 3 and len(ds) == 10
        assert len(list(ds)) == 10


class Burst(DataFlow):
    """200 datapoints at once, then a long silence (an upstream waiting for something)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __iter__(self):
        yield from ([i] for i in range(200))
        with open(self.marker, "w"):
            pass
        time.sleep(60)


@pytest.mark.timeout(30)
def test_datapoints_held_in_transit_are_delivered_when_the_upstream_goes_quiet(tmp_path):
    marker = tmp_path / "burst-done"
    with MultiProcessRunner(Burst(str(marker)), 1000, 1, start_method="fork") as ds:
        ds.reset_state()
        # the worker makes all 200 while nobody is reading
        wait_until(marker.exists, 20, "the worker's 200 datapoints")
        it = iter(ds)
        t0 = time.monotonic()
        assert [next(it)[0] for _ in range(200)] == list(range(200))
        assert time.monotonic() - t0 < 5.0


def test_global_seed_makes_a_runner_pipeline_reproducible():
    from dataflow._engine.seeding import set_seed

    def run():
        set_seed(21)
        with MultiProcessRunner(Random(), 20, 2, start_method="fork") as ds:
            return take(ds, 30)

    try:
        a, b = run(), run()
    finally:
        set_seed(None)
    assert a == b
    assert len({x for dp in a for x in dp}) == 60

"""Resume of the parallel maps: exact (ordered) and exactly-once (unordered) strict passes, with
the same and with another number of workers, and seeking (map_func runs only for what is left)."""

from __future__ import annotations

import json
import multiprocessing
from collections import Counter

import pytest

import dataflow
import flows
from dataflow import (
    BatchData,
    DataFromList,
    MapData,
    MultiProcessMapAndBatchData,
    MultiProcessMapData,
    MultiThreadMapData,
    StateError,
)
from resume_check import canon, check_resume, check_resume_exactly_once, save_after

pytestmark = pytest.mark.timeout(120)


def source(n=40):
    return DataFromList([[i] for i in range(n)], shuffle=True)


def thread_map(n=40, num=2, ordered=True):
    return MultiThreadMapData(
        source(n), num, flows.slow_double, strict=True, ordered=ordered, buffer_size=8
    )


def process_map(num, ordered=True, n=40):
    return MultiProcessMapData(
        source(n), num, flows.slow_double, strict=True, ordered=ordered, buffer_size=8
    )


@pytest.mark.parametrize("ordered", [True, False])
def test_thread_map_resumes_at_every_k(ordered):
    if ordered:
        check_resume(lambda: thread_map(ordered=True), passes=2)
    else:
        check_resume_exactly_once(lambda: thread_map(ordered=False), ks=[0, 1, 20, 39, 40, 41])


def resume_with(build_save, build_load, k, passes=2, seed=5, ordered=True):
    dataflow.set_seed(seed)
    with build_save() as ds:
        full = [[canon(dp) for dp in ds] for _ in range(passes)]
    dataflow.set_seed(seed)
    first, state = save_after(build_save(), k)
    dataflow.set_seed(seed + 1)
    with build_load() as again:
        again.load_state_dict(state)
        rest = [canon(dp) for _ in range(passes - k // len(full[0])) for dp in again]
    flat = [dp for p in full for dp in p]
    if ordered:
        assert first + rest == flat
    else:
        got = first + rest
        n = len(full[0])
        assert Counter(got[:n]) == Counter(full[0]) and Counter(got[n:]) == Counter(full[1])
        assert len(got) == len(flat)


@pytest.mark.parametrize("saved, loaded", [(2, 3), (2, 1), (1, 2)])
@pytest.mark.parametrize("ordered", [True, False])
def test_process_map_resumes_with_another_worker_count(saved, loaded, ordered):
    for k in (13, 40):
        resume_with(
            lambda: process_map(saved, ordered),
            lambda: process_map(loaded, ordered),
            k,
            ordered=ordered,
        )


@pytest.mark.parametrize("ordered", [True, False])
def test_map_and_batch_resumes(ordered):
    def build(num=2):
        return MultiProcessMapAndBatchData(
            source(50),
            num,
            flows.double,
            batch_size=4,
            strict=True,
            ordered=ordered,
            buffer_size=16,
        )

    if ordered:
        resume_with(build, lambda: build(3), 5)
        resume_with(build, lambda: build(1), 12)
        return
    dataflow.set_seed(2)
    with build() as ds:
        whole = sorted(int(x) for b in ds for x in b[0])
    for k in (1, 6):
        dataflow.set_seed(2)
        ds = build()
        it = iter(ds)
        first = [int(x) for _ in range(k) for x in next(it)[0]]
        state = ds.state_dict()
        del it
        ds.close()
        with build(3) as again:
            again.load_state_dict(state)
            rest = [int(x) for b in again for x in b[0]]
        assert sorted(first + rest) == whole  # every datapoint exactly once


class CountingDouble:
    """A map function that counts its calls in a shared counter (works in worker processes)."""

    def __init__(self, counter):
        self.counter = counter

    def __call__(self, dp):
        with self.counter.get_lock():
            self.counter.value += 1
        return [dp[0] * 2]


def test_resume_at_90_percent_maps_only_what_is_left():
    ctx = multiprocessing.get_context("fork")
    calls = ctx.Value("i", 0)
    reads = []

    def build():
        src = DataFromList([[i] for i in range(1000)], shuffle=True)
        return MultiProcessMapData(
            MapData(src, lambda dp: reads.append(1) or dp),
            2,
            CountingDouble(calls),
            strict=True,
            ordered=True,
            buffer_size=16,
            start_method="fork",
        )

    dataflow.set_seed(1)
    ds = build()
    it = iter(ds)
    for _ in range(900):
        next(it)
    state = ds.state_dict()
    del it
    ds.close()
    calls.value = 0
    reads.clear()
    with build() as again:
        again.load_state_dict(state)
        assert len(list(again)) == 100
    assert calls.value == 100  # no map call for the 900 delivered datapoints
    assert len(reads) <= 100 + 64  # the upstream is read back at most one log interval


def test_a_state_of_another_mode_is_refused():
    ds = process_map(2, ordered=True)
    it = iter(ds)
    next(it)
    state = ds.state_dict()
    del it
    ds.close()
    with process_map(2, ordered=False) as other:
        with pytest.raises(StateError, match="strict, ordered, batch_size"):
            other.load_state_dict(state)


def test_batch_over_a_parallel_map_resumes_twice_in_a_pass():
    def build(num):
        return BatchData(process_map(num, ordered=True, n=60), 5)

    dataflow.set_seed(9)
    with build(2) as ds:
        flat = [canon(b) for _ in range(2) for b in ds]
    dataflow.set_seed(9)
    ds = build(2)
    it = iter(ds)
    got = [canon(next(it)) for _ in range(3)]
    state = ds.state_dict()
    del it
    ds.close()
    for num, step in ((3, 4), (1, 2)):
        ds = build(num)
        ds.load_state_dict(json.loads(json.dumps(state)))
        it = iter(ds)
        got += [canon(next(it)) for _ in range(step)]
        state = ds.state_dict()
        del it
        ds.close()
    with build(2) as ds:
        ds.load_state_dict(state)
        got += [canon(b) for b in ds] + [canon(b) for b in ds]
    assert got == flat


def stream_map(num, ordered, func=flows.slow_double, n=30):
    return MultiProcessMapData(
        source(n), num, func, strict=False, ordered=ordered, buffer_size=8, start_method="fork"
    )


@pytest.mark.parametrize("func", [flows.slow_double, flows.drop_thirds])
def test_non_strict_ordered_map_resumes_exactly(func):
    # A non-strict pass is len(ds) outputs of an endless stream over upstream passes (None drops).
    check_resume(lambda: stream_map(2, True, func), ks=[0, 1, 17, 30, 31, 55], passes=3)
    resume_with(lambda: stream_map(2, True, func), lambda: stream_map(3, True, func), 25, 3)


class Passes(dataflow.DataFlow):
    """[100 * pass + i] for i < 25: every datapoint of the endless stream is distinct."""

    def __len__(self):
        return 25

    def __iter__(self):
        for i in range(25):
            yield [self._df_epoch * 100 + i]


def test_non_strict_unordered_map_loses_and_repeats_nothing():
    def build(num):
        return MultiThreadMapData(
            Passes(), num, flows.slow_double, strict=False, ordered=False, buffer_size=8
        )

    ds = build(2)
    first = [dp[0] for dp in ds]
    it = iter(ds)
    first += [next(it)[0] for _ in range(8)]  # into the second pass of the map
    state = ds.state_dict()
    del it
    ds.close()
    with build(3) as again:
        again.load_state_dict(state)
        rest = [dp[0] for _ in range(2) for dp in again]  # the rest of pass 2, and pass 3
    got = first + rest
    assert len(got) == 75 and len(set(got)) == 75  # nothing twice
    for upstream_pass in (1, 2):  # nothing lost: 75 outputs cover the first 50 reads
        assert {2 * (100 * upstream_pass + i) for i in range(25)} <= set(got)

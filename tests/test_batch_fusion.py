"""BatchData directly on a MultiProcessMapData batches in the map's workers (the fused path):
the output is what batching the map's output in the consumer gives, by BatchData's documented
rules (multiset per strict pass, batch count and sizes, dtypes, use_list, errors, resume states
in both directions, stats counts), and the cases that must not fuse keep the consumer path."""

from __future__ import annotations

import json
import os
import signal
from collections import Counter

import numpy as np
import pytest

from dataflow import (
    BatchData,
    BatchDataByShape,
    DataFromList,
    MultiProcessMapData,
    MultiThreadMapData,
)
from dataflow import stats as dfstats
from dataflow.errors import BatchError, DataFlowArgumentError, WorkerError

pytestmark = [pytest.mark.usefixtures("no_leaks"), pytest.mark.timeout(120)]

N = 300


def tagged(dp):
    """[i] -> [i, float32 (3,) of i, the worker's pid]."""
    (i,) = dp
    return [i, np.full(3, i, np.float32), os.getpid()]


def skip_some(dp):
    if dp[0] % 50 == 7:
        raise ValueError(f"bad datapoint {dp[0]}")
    return tagged(dp)


def ragged(dp):
    (i,) = dp
    return [np.zeros(5 if i == 41 else 4, np.int32)]


def source(n=N, shuffle=False):
    return DataFromList([[i] for i in range(n)], shuffle=shuffle)


def batched(fuse: bool, bs=16, remainder=False, strict=True, func=tagged, **kw) -> BatchData:
    m = MultiProcessMapData(source(kw.pop("n", N)), 2, func, strict=strict, **kw)
    if not fuse:
        m.reset_state()  # a map reset on its own is never taken over
    ds = BatchData(m, bs, remainder=remainder)
    ds.reset_state()
    assert ds._fused is fuse
    return ds


def rows(batches) -> Counter:
    return Counter(int(i) for b in batches for i in b[0])


@pytest.mark.parametrize("remainder", [False, True])
def test_strict_pass_is_the_consumer_paths_batches(remainder):
    with batched(True, remainder=remainder) as fused, batched(False, remainder=remainder) as plain:
        for _ in range(2):
            a, b = list(fused), list(plain)
            assert len(a) == len(b) == len(fused) == len(plain) == (19 if remainder else 18)
            assert [len(x[0]) for x in a] == [len(x[0]) for x in b]  # full batches, one short
            if remainder:
                assert rows(a) == rows(b) == Counter(range(N))  # every datapoint once
            else:
                assert sum(rows(a).values()) == 18 * 16 and max(rows(a).values()) == 1
            for x, y in zip(a, b):  # the same structure and dtypes
                assert [type(c) for c in x] == [type(c) for c in y]
                assert x[0].dtype == y[0].dtype == np.int64
                assert x[1].dtype == y[1].dtype == np.float32 and x[1].shape == (len(x[0]), 3)
                assert np.array_equal(x[1][:, 0], x[0].astype(np.float32))
    # The workers stacked them: each full batch of the fused pass came from one worker.
    assert all(len(set(x[2].tolist())) == 1 for x in a[:-2])


def test_use_list_batches_are_lists_as_in_the_consumer():
    m = MultiProcessMapData(source(64), 2, tagged, strict=True)
    with BatchData(m, 8, use_list=True) as ds:
        ds.reset_state()
        assert ds._fused
        got = list(ds)
    assert len(got) == 8
    assert all(isinstance(c, list) and len(c) == 8 for b in got for c in b)
    assert sorted(i for b in got for i in b[0]) == list(range(64))


def test_a_batch_that_does_not_stack_raises_batcherror_naming_batchdata():
    m = MultiProcessMapData(source(96), 2, ragged, strict=True)
    with BatchData(m, 8) as ds:
        ds.reset_state()
        assert ds._fused
        with pytest.raises(BatchError, match="BatchData") as info:
            list(ds)
        assert not isinstance(info.value, WorkerError)
        assert "(4,)" in str(info.value) and "(5,)" in str(info.value)


def test_non_strict_passes_go_on_in_one_stream_without_loss_or_repeat():
    # len 300, batch 16: a pass is 18 batches; the 12 left over start the next pass.
    with batched(True, strict=False) as ds:
        passes = [list(ds) for _ in range(3)]
    assert [len(p) for p in passes] == [18, 18, 18]
    seen = Counter(int(i) for p in passes for b in p for i in b[0])
    assert sum(seen.values()) == 3 * 18 * 16
    # The stream repeats the upstream (what is read ahead is delivered in later passes).
    assert set(seen) == set(range(N)) and max(seen.values()) - min(seen.values()) <= 2


def test_skipped_errors_are_counted_and_the_rest_is_batched_once():
    m = MultiProcessMapData(source(), 2, skip_some, strict=True, on_error="skip")
    with BatchData(m, 16, remainder=True) as ds:
        ds.reset_state()
        assert ds._fused
        got = list(ds)
        assert m.errors_skipped == 6
    assert rows(got) == Counter(i for i in range(N) if i % 50 != 7)
    assert [len(b[0]) for b in got] == [16] * 18 + [294 - 18 * 16]


@pytest.mark.parametrize("fuse_first,fuse_then", [(True, True), (True, False), (False, True)])
def test_a_state_saved_mid_pass_resumes_exactly_once_fused_or_not(fuse_first, fuse_then):
    with batched(fuse_first, remainder=True, buffer_size=32) as ds:
        it = iter(ds)
        first = [next(it) for _ in range(7)]
        state = json.loads(json.dumps(ds.state_dict()))
        del it
    with batched(fuse_then, remainder=True, buffer_size=32) as again:
        again.load_state_dict(state)
        rest = list(again)
        after = list(again)  # the pass after the resumed one is whole
    assert rows(first) + rows(rest) == Counter(range(N))
    assert rows(after) == Counter(range(N))


def test_non_strict_state_counts_the_pass_in_datapoints():
    with batched(True, strict=False) as ds:
        it = iter(ds)
        for _ in range(5):
            next(it)
        state = json.loads(json.dumps(ds.state_dict()))
        del it
    with batched(True, strict=False) as again:
        again.load_state_dict(state)
        assert len(list(again)) == 18 - 5  # the rest of the saved pass, in batches
        assert len(list(again)) == 18


def test_the_map_under_a_fusing_batchdata_refuses_to_be_iterated_alone():
    m = MultiProcessMapData(source(64), 2, tagged, strict=True)
    with BatchData(m, 8) as ds:
        ds.reset_state()
        with pytest.raises(DataFlowArgumentError, match="iterate the BatchData"):
            next(iter(m))
        assert len(list(ds)) == 8


def test_a_map_reset_first_is_iterable_alone_and_under_batchdata():
    m = MultiProcessMapData(source(64), 2, tagged, strict=True)
    m.reset_state()
    with BatchData(m, 8) as ds:
        ds.reset_state()
        assert not ds._fused
        assert sorted(dp[0] for dp in m) == list(range(64))
        assert rows(ds) == Counter(range(64))


def test_what_must_not_fuse_keeps_the_consumer_path():
    cases = [
        BatchData(MultiProcessMapData(source(64), 2, tagged, strict=True, ordered=True), 8),
        BatchData(MultiThreadMapData(source(64), 2, tagged, strict=True), 8),
        BatchData(MultiProcessMapData(source(64), 2, tagged), 8, remainder=True),  # non-strict
        BatchDataByShape(MultiProcessMapData(source(64), 2, tagged, strict=True), 8, 1),
    ]
    for ds in cases:
        with ds:
            ds.reset_state()
            assert not ds.__dict__.get("_fused")
            got = list(ds)
            assert len(got) == 8 and sum(len(b[0]) for b in got) == 64


def test_stats_count_the_datapoints_of_the_batches():
    was = dfstats.enabled()
    dfstats.enable()
    try:
        with batched(True, remainder=True, n=100) as ds:
            got = list(ds)
            st = ds.stats()
    finally:
        dfstats.enable(was)
    stages = {s.path: s for s in st.stages}
    assert stages["ds"].datapoints == len(got) == 7
    assert stages["ds.ds"].datapoints == 100


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_a_killed_worker_is_replaced_and_the_pass_stays_exactly_once(method):
    m = MultiProcessMapData(
        source(2000), 2, tagged, strict=True, restart_workers=True, start_method=method
    )
    with BatchData(m, 16, remainder=True) as ds:
        ds.reset_state()
        assert ds._fused
        seen = Counter()
        for k, batch in enumerate(ds):
            seen.update(int(i) for i in batch[0])
            if k == 20:
                os.kill(m.worker_pids()[0], signal.SIGKILL)
        assert m._restarts == 1
    assert seen == Counter(range(2000))


# -- the workers' incremental stacking gives aggregate_batch's result, errors included ----------

BIG = (32, 32, 3)  # above the size from which arrays are stacked as they come


def _same(a, b):
    assert type(a) is type(b)
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _same(x, y)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            _same(a[k], b[k])
    else:
        assert a == b


def _stack_both(dps, size=None, use_list=False):
    from dataflow._batching import Stacker, aggregate_batch

    st = Stacker(len(dps) if size is None else size, use_list)
    for dp in dps:
        st.add(dp)
    _same(st.datapoints(), [list(dp) if isinstance(dp, tuple) else dp for dp in dps])
    try:
        want = aggregate_batch(dps, use_list)
    except Exception as e:
        with pytest.raises(type(e)) as info:
            st.batch()
        assert str(info.value) == str(e)
        return None
    got = st.batch()
    _same(got, want)
    return got


def _img(i, dtype=np.uint8, shape=BIG):
    return np.full(shape, i % 200, dtype)


@pytest.mark.parametrize(
    "dps",
    [
        [[_img(i), i, f"s{i}"] for i in range(8)],  # the fast path
        [(_img(i), np.float32(i)) for i in range(8)],  # tuples
        [[_img(i, np.float32 if i < 5 else np.float64), i] for i in range(8)],  # promotion
        [[_img(i, shape=BIG if i != 6 else (31, 32, 3)), i] for i in range(8)],  # ragged
        [[_img(i)] if i != 3 else [_img(i), 1] for i in range(8)],  # component count
        [[_img(i), i] if i != 4 else {"a": 1} for i in range(8)],  # structure
        [[_img(i), i if i != 5 else "x"] for i in range(8)],  # numbers and a string
        [[_img(i) if i != 2 else _img(i).tolist(), i] for i in range(8)],  # a nested list
        [{"img": _img(i), "y": i} for i in range(8)],  # dicts: the plain path
        [[np.full(3, i), i] for i in range(8)],  # small arrays: the plain path
        [[np.array([object()] * 2000, dtype=object), i] for i in range(8)],  # object arrays
    ],
)
def test_incremental_stacking_equals_aggregate_batch(dps):
    _stack_both(dps)


def test_incremental_stacking_of_a_partial_batch_and_use_list():
    dps = [[_img(i), i] for i in range(5)]
    got = _stack_both(dps, size=8)
    assert got[0].shape == (5, *BIG)
    got = _stack_both(dps, use_list=True)
    assert isinstance(got[0], list) and len(got[0]) == 5


def test_large_arrays_are_copied_into_their_rows_as_they_come():
    from dataflow._batching import Stacker

    st = Stacker(4)
    for i in range(4):
        st.add([_img(i), i])
        assert st._dps is None  # no datapoint kept: its array is in the batch already
    batch = st.batch()
    assert batch[0].base is None and batch[0].shape == (4, *BIG)
    assert batch[1].tolist() == [0, 1, 2, 3]


def test_a_batch_array_is_reused_only_once_nothing_refers_to_it():
    from dataflow._batching import Stacker

    def one_batch():
        st = Stacker(2)
        st.add([_img(1)])
        st.add([_img(2)])
        return st.batch()[0]

    first = one_batch()
    second = one_batch()
    assert first is not second  # the first is still held here
    row = second[1]  # a view keeps its base alive
    addr = second.__array_interface__["data"][0]
    del second
    third = one_batch()
    third_addr = third.__array_interface__["data"][0]
    assert third_addr != addr
    assert np.array_equal(row, _img(2))  # untouched by the new batch
    del row, third
    fourth = one_batch()  # both are free now: one of them is filled again
    assert fourth.__array_interface__["data"][0] in {addr, third_addr}
    assert np.array_equal(first[0], _img(1)) and np.array_equal(fourth[1], _img(2))

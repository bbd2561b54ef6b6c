"""on_error="skip": a datapoint whose map function raises is dropped and counted, in MapData,
MapDataComponent and every parallel map; past max_errors, an error with the count and the
original traceback; strict passes stay exact, and resume counts a skipped datapoint as done."""

from __future__ import annotations

import logging
import os

import pytest

import flows
from dataflow import (
    DataFlowArgumentError,
    DataFlowError,
    DataFromList,
    MapData,
    MapDataComponent,
    MultiProcessMapAndBatchData,
    MultiProcessMapData,
    MultiThreadMapData,
    WorkerDied,
)
from resume_check import check_resume

pytestmark = pytest.mark.timeout(120)


def source(n=30, shuffle=False):
    return DataFromList([[i] for i in range(n)], shuffle=shuffle)


def test_map_data_skips_counts_and_logs_the_first_failure_with_its_traceback(caplog):
    ds = MapData(source(), flows.fail_on_13, on_error="skip")
    with caplog.at_level(logging.ERROR, logger="dataflow"):
        out = [dp[0] for dp in ds]
    assert out == [i for i in range(30) if i != 13]
    assert ds.errors_skipped == 1
    assert "ZeroDivisionError: no thirteen" in caplog.text and "fail_on_13" in caplog.text
    assert len(list(ds)) == 29 and ds.errors_skipped == 2


def test_map_data_component_skips_too():
    def invert(x):
        return 1 / (x - 4)

    ds = MapDataComponent(source(8), invert, 0, on_error="skip")
    assert [round(dp[0], 3) for dp in ds] == [round(1 / (i - 4), 3) for i in range(8) if i != 4]
    assert ds.errors_skipped == 1


def test_past_max_errors_the_error_has_the_count_and_the_last_traceback():
    ds = MapData(source(), flows.fail_on_fives, on_error="skip", max_errors=2)
    with pytest.raises(DataFlowError, match=r"3 datapoints failed, more than max_errors=2") as e:
        list(ds)
    assert "ValueError: no multiple of five: 10" in str(e.value)


def test_bad_on_error_arguments_are_refused():
    with pytest.raises(DataFlowArgumentError, match="on_error must be 'raise' or 'skip'"):
        MapData(source(), abs, on_error="ignore")
    with pytest.raises(DataFlowArgumentError, match="max_errors applies to on_error='skip'"):
        MultiThreadMapData(source(), 2, abs, max_errors=3)


def expected(n=30):
    return [2 * i for i in range(n) if i % 5]


def double_or_fail(dp):
    return [2 * flows.fail_on_fives(dp)[0]]


PARALLEL = {
    "thread-strict-ordered": lambda: MultiThreadMapData(
        source(), 2, double_or_fail, strict=True, ordered=True, on_error="skip"
    ),
    "thread-strict": lambda: MultiThreadMapData(
        source(), 2, double_or_fail, strict=True, on_error="skip"
    ),
    "process-strict-ordered": lambda: MultiProcessMapData(
        source(), 2, double_or_fail, strict=True, ordered=True, on_error="skip"
    ),
    "process-stream-ordered": lambda: MultiProcessMapData(
        source(), 2, double_or_fail, ordered=True, on_error="skip"
    ),
    "process-spawn-strict": lambda: MultiProcessMapData(
        source(), 2, double_or_fail, strict=True, on_error="skip", start_method="spawn"
    ),
}


@pytest.mark.parametrize("name", sorted(PARALLEL))
def test_parallel_maps_skip_what_raises_and_keep_the_rest(name):
    with PARALLEL[name]() as ds:
        first = [dp[0] for dp in ds]
        ordered = "ordered" in name
        if "stream" in name:  # a non-strict pass is len(ds) outputs of the stream
            assert len(first) == 30 and ds.errors_skipped >= 6
            return
        assert (first if ordered else sorted(first)) == expected()
        assert ds.errors_skipped == 6
        assert sorted(dp[0] for dp in ds) == expected() and ds.errors_skipped == 12


@pytest.mark.parametrize("ordered", [True, False])
def test_map_and_batch_skips_inside_the_workers(ordered):
    with MultiProcessMapAndBatchData(
        source(40),
        2,
        double_or_fail,
        4,
        strict=True,
        remainder=True,
        ordered=ordered,
        on_error="skip",
    ) as ds:
        batches = list(ds)
        got = [int(x) for b in batches for x in b[0]]
        assert (got if ordered else sorted(got)) == expected(40)
        assert ds.errors_skipped == 8


def test_parallel_map_past_max_errors_raises_with_the_worker_traceback():
    ds = MultiProcessMapData(
        source(), 2, double_or_fail, strict=True, on_error="skip", max_errors=1
    )
    with ds, pytest.raises(DataFlowError, match="2 datapoints failed") as e:
        list(ds)
    assert "ValueError: no multiple of five" in str(e.value)


def test_resume_after_skipped_datapoints_is_exact():
    def build():
        return MultiProcessMapData(
            source(30, shuffle=True),
            2,
            double_or_fail,
            strict=True,
            ordered=True,
            buffer_size=6,
            on_error="skip",
        )

    check_resume(build, passes=2)


def dying_source():
    return DataFromList([[i] for i in range(20)], shuffle=False)


def test_restart_budget_names_every_death_of_the_pass():
    ds = MultiProcessMapData(
        dying_source(), 2, flows.die_on_7, strict=True, restart_workers=1, start_method="fork"
    )
    with (
        ds,
        pytest.raises(
            WorkerDied,
            match=r"2 worker deaths in this pass, more than "
            r"restart_workers=1: .*exit code 1.*; .*exit code 1",
        ),
    ):
        list(ds)


def test_a_poison_datapoint_is_skipped_and_counted_with_on_error_skip():
    ds = MultiProcessMapData(
        dying_source(),
        2,
        flows.die_on_7,
        strict=True,
        ordered=True,
        restart_workers=True,
        on_error="skip",
        start_method="fork",
    )
    with ds:
        assert [dp[0] for dp in ds] == [i for i in range(20) if i != 7]
        assert ds.errors_skipped == 1


def die_on_57(dp):
    if dp[0] == 57:
        os._exit(3)
    return dp


@pytest.mark.timeout(60)
def test_only_the_datapoint_a_worker_died_on_is_skipped_when_it_held_others():
    # Batching in the workers: each holds a partial batch of datapoints it mapped already, so a
    # death loses those too; only the one it was mapping (57) may be blamed and skipped.
    ds = MultiProcessMapAndBatchData(
        DataFromList([[i] for i in range(100)], shuffle=False),
        2,
        die_on_57,
        10,
        strict=True,
        remainder=True,
        restart_workers=True,
        on_error="skip",
        start_method="fork",
    )
    with ds:
        got = sorted(int(x) for batch in ds for x in batch[0])
        assert got == [i for i in range(100) if i != 57]
        assert ds.errors_skipped == 1


def test_restart_workers_must_be_a_flag_or_a_count():
    with pytest.raises(DataFlowArgumentError, match="restart_workers must be True, False or"):
        MultiProcessMapData(dying_source(), 2, abs, restart_workers=-1)

"""timeout= on the parallel maps: a worker stuck on a datapoint is stopped and handled as a death
(WorkerDied naming the datapoint, or restart and poison rules); thread maps refuse a timeout."""

from __future__ import annotations

import os
import re
import time
from collections import Counter

import pytest

from dataflow import MultiProcessMapAndBatchData, MultiProcessMapData, MultiThreadMapData
from dataflow.errors import DataFlowArgumentError, WorkerDied
from dataflow.raw import DataFromList


def hang_on_57(dp: list) -> list:
    if dp[0] == 57:
        while True:  # a real hang: a busy loop that never returns
            pass
    return [dp[0] * 2]


def hang_once_on_20(dp: list) -> list:
    # hangs the first time it sees datapoint 20 (a marker file remembers it), then works
    marker = os.environ["DF_TEST_MARKER"]
    if dp[0] == 20 and not os.path.exists(marker):
        open(marker, "w").close()
        time.sleep(3600)
    return [dp[0] * 2]


def source(n: int = 100) -> DataFromList:
    return DataFromList([[i] for i in range(n)], shuffle=False)


@pytest.mark.timeout(60)
def test_a_hung_worker_raises_worker_died_naming_the_datapoint():
    # one datapoint a task: the worker holds only the one it is stuck on
    ds = MultiProcessMapData(source(), 2, hang_on_57, strict=True, buffer_size=2, timeout=0.5)
    started = time.monotonic()
    with pytest.raises(WorkerDied, match=r"timeout=0.5s on datapoint #57 of the pass"):
        list(ds)
    assert time.monotonic() - started < 10
    ds.close()


def assert_names_57(err: WorkerDied) -> None:
    m = re.search(r"timeout=\S+ on (?:datapoint #(\d+)|one of .* #(\d+) to #(\d+))", str(err))
    assert m, str(err)
    low, high = (m.group(1), m.group(1)) if m.group(1) else (m.group(2), m.group(3))
    assert int(low) <= 57 <= int(high), str(err)


@pytest.mark.timeout(60)
def test_a_worker_hung_once_is_replaced_and_nothing_is_lost(tmp_path, monkeypatch):
    monkeypatch.setenv("DF_TEST_MARKER", str(tmp_path / "hung"))
    ds = MultiProcessMapData(
        source(), 2, hang_once_on_20, strict=True, restart_workers=True, timeout=0.5
    )
    got = Counter(dp[0] for dp in ds)
    assert got == Counter(2 * i for i in range(100))
    ds.close()


@pytest.mark.timeout(60)
def test_a_datapoint_that_always_hangs_is_skipped_with_on_error_skip():
    ds = MultiProcessMapData(
        source(), 2, hang_on_57, strict=True, restart_workers=True, on_error="skip", timeout=0.3
    )
    got = sorted(dp[0] for dp in ds)
    assert got == [2 * i for i in range(100) if i != 57]
    assert ds.errors_skipped == 1
    ds.close()


@pytest.mark.timeout(60)
def test_the_batching_map_takes_a_timeout_too():
    ds = MultiProcessMapAndBatchData(source(), 2, hang_on_57, 10, strict=True, timeout=0.5)
    with pytest.raises(WorkerDied) as err:
        list(ds)
    assert_names_57(err.value)
    ds.close()


def test_timeout_is_checked_and_refused_by_thread_maps():
    with pytest.raises(DataFlowArgumentError, match="threads? .*cannot be stopped"):
        MultiThreadMapData(source(), 2, hang_on_57, timeout=1)
    for bad in (0, -1, "1", True):
        with pytest.raises(DataFlowArgumentError, match="timeout"):
            MultiProcessMapData(source(), 2, hang_on_57, timeout=bad)

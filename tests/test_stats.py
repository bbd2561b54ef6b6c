"""Per-stage statistics (dataflow._stats): counts, waits, the bottleneck, the table, JSON, the chart,
periodic logging, and the parallel maps' worker figures, on real pipelines (an LMDB file the test
writes, worker processes)."""

from __future__ import annotations

import json
import logging
import pickle
import threading
import time

import numpy as np
import pytest

from dataflow import (
    BatchData,
    DataFromList,
    LMDBData,
    LMDBSerializer,
    MapData,
    MultiProcessMapData,
    MultiThreadMapData,
)
from dataflow import stats as dfstats
from dataflow._stats import COLORS
from dataflow.errors import DataFlowArgumentError
from flows import Src, ints


def busy(seconds: float) -> None:
    """Spin (hold the CPU) for ``seconds``: a decode that costs CPU, not a sleep."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def slow(dp):
    busy(0.001)
    return dp


def fast(dp):
    return dp


@pytest.fixture
def counting():
    was = dfstats.enabled()
    dfstats.enable()
    yield
    dfstats.enable(was)


@pytest.fixture
def lmdb_file(tmp_path):
    path = str(tmp_path / "items.lmdb")
    src = DataFromList([[i, np.full(4, i, dtype=np.int32)] for i in range(300)], shuffle=False)
    LMDBSerializer.save(src, path)
    return path


def pipeline(path: str, local, remote) -> BatchData:
    ds = LMDBData(path, shuffle=False)
    ds = MapData(ds, local)
    ds = MultiProcessMapData(ds, num_proc=2, map_func=remote)
    return BatchData(ds, 10)


def by_name(st):
    return {s.name: s for s in st.stages}


# -- acceptance: the bottleneck ---------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_bottleneck_is_the_slow_single_process_map(counting, lmdb_file, no_leaks):
    with pipeline(lmdb_file, slow, fast) as ds:
        batches = list(ds)
        st = ds.stats()
    assert len(batches) == 30
    assert st.bottleneck.name == "MapData"
    assert st.bottleneck.path == "ds.ds.ds"
    assert st.bottleneck_reason.startswith("MapData: consumer waited")
    stages = by_name(st)
    assert stages["MapData"].share > 0.5
    par = stages["MultiProcessMapData"]
    assert par.workers == 2 and par.workers_busy is not None and par.workers_busy < 0.5


@pytest.mark.timeout(60)
def test_bottleneck_moves_to_the_parallel_map_with_busy_workers(counting, lmdb_file, no_leaks):
    with pipeline(lmdb_file, fast, slow) as ds:
        list(ds)
        st = ds.stats()
    assert st.bottleneck.name == "MultiProcessMapData"
    assert st.bottleneck.path == "ds.ds"
    par = by_name(st)["MultiProcessMapData"]
    # 2 ms of spinning per batch of ten would be 1 % busy: the workers did the 300 ms of work.
    assert par.workers_busy is not None and par.workers_busy > 0.5
    assert sum(par.busy_s) >= 0.3
    assert "workers busy" in st.bottleneck_reason


# -- exact counts -------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_counts_equal_what_each_stage_yielded_through_workers(counting, no_leaks):
    calls = []

    def local(dp):
        calls.append(dp[0])
        return dp

    src = ints(97)
    ds = MapData(src, local)
    ds = MultiProcessMapData(ds, num_proc=2, map_func=fast, strict=True)
    ds = BatchData(ds, 8, remainder=True)
    with ds:
        got = [list(ds) for _ in range(2)]
        st = ds.stats()
    stages = {s.path: s for s in st.stages}
    assert stages["ds"].datapoints == sum(len(p) for p in got) == 2 * 13
    assert stages["ds.ds"].datapoints == sum(len(b[0]) for p in got for b in p) == 2 * 97
    assert stages["ds.ds.ds"].datapoints == len(calls) == 2 * 97
    assert stages["ds.ds.ds.ds"].datapoints == src.read == 2 * 97
    assert stages["ds"].passes == 2


@pytest.mark.timeout(30)
def test_waits_split_a_single_process_chain(counting):
    src = Src([[i] for i in range(60)])
    ds = MapData(MapData(src, slow), fast)  # the slow map is upstream of a free one
    list(ds)
    st = ds.stats()
    top, slow_map, source = st.stages
    assert [s.path for s in st.stages] == ["ds", "ds.ds", "ds.ds.ds"]
    assert st.bottleneck is slow_map
    assert slow_map.produce_s >= 0.06  # 60 x 1 ms spent in it
    # The outer map waited on the slow one: its own time is a small part of it.
    assert top.wait_upstream_s >= slow_map.produce_s
    assert top.produce_s < slow_map.produce_s / 2
    assert source.datapoints == 60 and top.dps > 0


# -- live, JSON, off ------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_stats_during_the_pass_from_the_loop_and_another_thread(counting):
    ds = BatchData(MapData(ints(200), fast), 4)
    seen = []
    other: list = []
    for i, _ in enumerate(ds):
        st = ds.stats()
        seen.append(st.stages[0].datapoints)
        if i == 10:
            t = threading.Thread(target=lambda: other.append(ds.stats().to_dict()))
            t.start()
            t.join()
    # Counted as yielded: the i-th snapshot (taken after the i-th batch) says i + 1.
    assert seen == list(range(1, 51))
    assert other and other[0]["stages"][0]["datapoints"] == 11
    after = ds.stats()
    plain = json.loads(json.dumps(after.to_dict()))
    assert plain["bottleneck"] in {s["path"] for s in plain["stages"]}
    assert [s["name"] for s in plain["stages"]] == ["BatchData", "MapData", "Src"]
    assert plain["stages"][1]["datapoints"] == 200


@pytest.mark.timeout(30)
def test_table_names_every_stage_and_the_bottleneck(counting):
    ds = MapData(MapData(ints(30), slow), fast)
    list(ds)
    table = str(ds.stats())
    lines = table.splitlines()
    assert lines[0].split()[:4] == ["stage", "class", "datapoints", "dp/s"]
    assert lines[2].startswith("ds.ds <") and "MapData" in lines[2]
    assert lines[3].split()[:3] == ["ds.ds.ds", "Src", "30"]
    assert lines[-1].startswith("wall ") and "bottleneck: MapData: consumer waited" in lines[-1]


def test_off_by_default_records_nothing_and_stats_says_how():
    was = dfstats.enabled()
    dfstats.disable()
    try:
        ds = MapData(ints(5), fast)
        assert list(ds) == [[i] for i in range(5)]
        assert "_df_stats" not in ds.__dict__
        with pytest.raises(dfstats.StatsOffError, match=r"dataflow\.stats\.enable\(\)"):
            ds.stats()
    finally:
        dfstats.enable(was)


def test_counters_do_not_travel_with_a_pickled_flow(counting):
    ds = MapData(ints(5), fast)
    list(ds)
    assert ds.__dict__["_df_stats"].datapoints == 5
    assert "_df_stats" not in pickle.loads(pickle.dumps(ds)).__dict__


@pytest.mark.timeout(30)
def test_an_abandoned_pass_is_counted_as_far_as_it_went(counting):
    ds = MapData(ints(50), fast)
    it = iter(ds)
    for _ in range(7):
        next(it)
    it.close()
    list(ds)
    stage = ds.stats().stages[0]
    assert stage.datapoints == 57 and stage.passes == 2


# -- parallel stages ----------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_thread_map_reports_workers_in_flight_and_skipped(counting, no_leaks):
    def fail_on_3(dp):
        if dp[0] == 3:
            raise ValueError("three")
        busy(0.0005)
        return dp

    ds = MultiThreadMapData(ints(40), num_thread=2, map_func=fail_on_3, on_error="skip")
    with ds:
        it = iter(ds)
        next(it)
        live = ds.stats().stages[0]
        assert live.in_flight is not None and 0 <= live.occupancy <= 1
        rest = list(it)
        st = ds.stats().stages[0]
    assert st.datapoints == 1 + len(rest)
    # dp 3 failed (and, read ahead for the next pass, may have failed once more already)
    assert st.workers == 2 and st.skipped == ds.errors_skipped >= 1 and st.restarts == 0
    assert len(st.busy_s) == 2 and sum(st.busy_s) > 0.015


# -- chart ------------------------------------------------------------------------------------------


def _runs(mask) -> int:
    """How many separate groups of consecutive True rows ``mask`` has."""
    rows = np.flatnonzero(mask)
    return 0 if not len(rows) else 1 + int(np.count_nonzero(np.diff(rows) > 1))


@pytest.mark.timeout(60)
def test_plot_writes_a_png_with_one_bar_group_per_stage(counting, lmdb_file, tmp_path):
    pytest.importorskip("matplotlib")  # the [plot] extra; the dev extra installs it
    import matplotlib.colors
    import matplotlib.image

    with pipeline(lmdb_file, slow, fast) as ds:
        list(ds)
        st = ds.stats()
    out = tmp_path / "stats.png"
    st.plot(out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = matplotlib.image.imread(str(out))[..., :3]

    def rows_with(color: str, wide: int) -> np.ndarray:
        rgb = np.array(matplotlib.colors.to_rgb(color))
        hit = np.all(np.abs(img - rgb) < 0.02, axis=-1)
        return hit.sum(axis=1) >= wide  # legend swatches are narrower than any bar

    rate = rows_with(COLORS["rate"], 3) | rows_with(COLORS["rate_bottleneck"], 3)
    assert _runs(rate) == len(st.stages) == 4
    assert _runs(rows_with(COLORS["rate_bottleneck"], 3)) == 1  # the bottleneck, highlighted
    split = np.zeros(img.shape[0], dtype=bool)
    for key in ("produce", "wait_upstream", "wait_downstream"):
        split |= rows_with(COLORS[key], 60)
    assert _runs(split) == 4


# -- periodic logging -------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_log_stats_logs_the_table_at_info(caplog):
    was = dfstats.enabled()
    try:
        ds = MapData(ints(20), slow)
        with caplog.at_level(logging.INFO, logger="dataflow.stats"):
            got = list(dfstats.log_stats(ds, every=0.005))
    finally:
        dfstats.enable(was)
    assert got == [[i] for i in range(20)]
    tables = [r.getMessage() for r in caplog.records if r.name == "dataflow.stats"]
    assert len(tables) >= 2  # at least one while running (20 ms of work) and the end
    assert "end of pass" in tables[-1] and "ds.ds" in tables[-1] and "Src" in tables[-1]


def test_log_stats_checks_its_period():
    with pytest.raises(DataFlowArgumentError, match="log_stats: every must be > 0"):
        dfstats.log_stats(MapData(ints(2), fast), every=0)

"""`dataflow profile` (dataflow.cli.profile) and the bottleneck line of `dataflow bench`, run as a
user runs them: a subprocess on a pipeline file the test writes."""

from __future__ import annotations

import json
import textwrap

import pytest

from test_cli_parser import run_in

PIPELINE = textwrap.dedent(
    """
    import time
    from dataflow import BatchData, DataFromList, MapData
    from dataflow.parallel_map import MultiProcessMapData

    def spin(dp):
        end = time.perf_counter() + 0.002
        while time.perf_counter() < end:
            pass
        return dp

    def make():
        ds = DataFromList([[i] for i in range(200)], shuffle=False)
        ds = MapData(ds, spin)
        return BatchData(MultiProcessMapData(ds, 2, lambda dp: dp), 10)

    def empty():
        return DataFromList([], shuffle=False)
    """
)


@pytest.mark.timeout(90)
def test_profile_prints_the_table_json_and_chart(tmp_path):
    (tmp_path / "mypipe.py").write_text(PIPELINE)
    chart = tmp_path / "out.png"
    result = run_in(
        tmp_path, "profile", "mypipe:make", "--seconds", "1", "--json", "--chart", str(chart)
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    stages = {s["path"]: s for s in data["stages"]}
    assert [stages[p]["name"] for p in ("ds", "ds.ds", "ds.ds.ds", "ds.ds.ds.ds")] == [
        "BatchData",
        "MultiProcessMapData",
        "MapData",
        "DataFromList",
    ]
    assert data["bottleneck"] == "ds.ds.ds"  # the 2 ms spin, run in the consumer
    assert data["bottleneck_reason"].startswith("MapData: consumer waited")
    assert stages["ds"]["datapoints"] >= 1 and stages["ds.ds"]["workers"] == 2
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.timeout(90)
def test_profile_text_table_and_live_tables(tmp_path):
    (tmp_path / "mypipe.py").write_text(PIPELINE)
    result = run_in(tmp_path, "profile", "mypipe:make", "--seconds", "1.2", "--every", "0.3")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "dataflow profile: mypipe:make" in out
    assert "ds.ds.ds <" in out and "bottleneck: MapData: consumer waited" in out
    assert result.stderr.count("bottleneck:") >= 2  # the live tables


@pytest.mark.timeout(60)
def test_profile_reports_an_empty_pipeline(tmp_path):
    (tmp_path / "mypipe.py").write_text(PIPELINE)
    result = run_in(tmp_path, "profile", "mypipe:empty", "--seconds", "0.5")
    assert result.returncode == 1
    assert "dataflow profile: error: the pipeline yielded no datapoints" in result.stderr


@pytest.mark.timeout(60)
def test_profile_refuses_a_bad_duration(tmp_path):
    result = run_in(tmp_path, "profile", "x:y", "--seconds", "0")
    assert result.returncode == 2 and "positive number of seconds" in result.stderr


@pytest.mark.timeout(90)
def test_bench_names_the_bottleneck(tmp_path):
    (tmp_path / "mypipe.py").write_text(PIPELINE)
    result = run_in(tmp_path, "bench", "mypipe:make", "--size", "10", "--no-stages")
    assert result.returncode == 0, result.stderr
    assert "bottleneck: MapData: consumer waited" in result.stdout
    quiet = run_in(tmp_path, "bench", "mypipe:make", "--size", "10", "--no-stages", "--no-stats")
    assert quiet.returncode == 0, quiet.stderr
    assert "bottleneck" not in quiet.stdout

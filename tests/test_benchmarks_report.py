"""The benchmark report: summaries and ratio math, tables, charts, and the published page.

Feeds ``benchmarks/report.py``, ``charts.py`` and ``publish.py`` a small synthetic run built from
the record format ``run.py`` writes (the spec fields, the process tree's measurements and
``case.py``'s result), with round-by-round throughputs chosen so that every ratio and fraction is
known exactly. Drawing the charts needs matplotlib in this interpreter or in the peers' venv.
"""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from flows import BENCHMARKS_DIR

sys.path.insert(0, str(BENCHMARKS_DIR))

import charts  # noqa: E402
import publish  # noqa: E402
import report  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def record(
    workload: str,
    lib: str,
    config: str,
    rnd: int,
    thr: float | None,
    *,
    malloc: str | None = None,
    iid: bool = False,
    status: str = "ok",
    **extra: object,
) -> dict:
    """One case record as ``run.py`` writes it (``run_case``'s fields, then ``case.py``'s)."""
    rec: dict = {
        "workload": workload,
        "lib": lib,
        "config": config,
        "window_s": 8.0,
        "round": rnd,
        "status": status,
        "loadavg": 1.0,
        "leftover_procs": [],
        "leftover_shm": [],
        "unattributed_new_shm": [],
        "returncode": 0 if status == "ok" else 1,
        "peak_pss_bytes": 100 * 2**20,
        "peak_shm_bytes": 0,
        "peak_procs": 3,
        "cpu_window_s": 2.0,
        "faults_window": 500,
    }
    if malloc is not None:
        rec["malloc"] = malloc
    if status != "ok":
        rec["error"] = "RuntimeError: boom"
        return rec
    rec.update(
        {
            "iid": iid,
            "throughput_dp_s": thr,
            "ns_per_dp": 1e9 / thr if thr else None,
            "throughput_cpu_dp_s": None,
            "cpu_ns_per_dp_in_call": None,
            "yields": 1000,
            "mid_yields": 800,
            "mid_datapoints": 800 * 64,
            "window_s": 8.0,
            "window_datapoints": 1000,
            "yield_ns_p50": 1000,
            "yield_ns_p99": 2000,
            "import_s": 0.5,
            "build_s": 0.01,
            "ttfb_s": 0.25,
            "teardown_s": 0.04,
            "passes": 3,
            "complete_passes": 3,
            "expected_pass": {"count": 1000, "checksum": [1, 2]},
            "pass_counts": [1000],
            "checksums_ok": not iid,
            "bad_passes": [],
        }
    )
    rec.update(extra)
    return rec


# Per-round throughputs (datapoints/s). ours/tensorpack-fast = 2.0, 2.2, 1.5; ours/ceiling = 0.5.
THR = {
    ("ours", "default"): [200.0, 220.0, 180.0],
    ("tensorpack", "default"): [50.0, 50.0, 50.0],
    ("tensorpack", "fast"): [100.0, 100.0, 120.0],
    ("torch", "default"): [400.0, 440.0, 360.0],  # i.i.d. mode: faster, but not exact
    ("ceiling", "default"): [400.0, 440.0, 360.0],
}
PINNED = {
    ("ours", "default"): [300.0, 300.0, 300.0],
    ("tensorpack", "default"): [100.0, 150.0, 200.0],
    ("ceiling", "default"): [600.0, 600.0, 600.0],
}
WX = SimpleNamespace(NAME="WX", TITLE="synthetic images", METRIC="img/s", TIMING="wall")
WT = SimpleNamespace(NAME="WT", TITLE="synthetic tiny", METRIC="ns/dp", TIMING="in_call")


def make_records() -> list[dict]:
    recs = []
    for rnd in range(3):
        for (lib, cfg), thrs in THR.items():
            extra: dict = {"window_peak_pss_bytes": 80 * 2**20}
            if (lib, cfg, rnd) == ("tensorpack", "default", 0):
                extra["teardown_left"] = ["4242 python -c worker"]
            recs.append(record("WX", lib, cfg, rnd, thrs[rnd], iid=lib == "torch", **extra))
        for (lib, cfg), thrs in PINNED.items():
            recs.append(record("WX", lib, cfg, rnd, thrs[rnd], malloc="pinned"))
        # WT: time metric, CPU basis, a failed round and a record with only the required fields
        recs.append(
            record("WT", "ours", "default", rnd, 1e6, throughput_cpu_dp_s=1.25e6, malloc="default")
        )
        recs.append(
            {
                "workload": "WT",
                "lib": "tensorpack",
                "config": "default",
                "round": rnd,
                "status": "ok",
                "throughput_dp_s": 5e5,
                "throughput_cpu_dp_s": 5e5,
            }
        )
        recs.append(record("WT", "ceiling", "default", rnd, 2e6, throughput_cpu_dp_s=2.5e6))
    recs.append(record("WT", "torch", "default", 0, None, status="crash"))
    return recs


def make_run(started: str = "20261125-101010") -> dict:
    """A saved run as run.py writes it: one summary per allocator variant of a workload."""
    recs = make_records()
    default = [r for r in recs if r.get("malloc", "default") == "default"]
    pinned = [r for r in recs if r.get("malloc") == "pinned"]
    wx_pinned = SimpleNamespace(**{**vars(WX), "TITLE": "synthetic images [malloc pinned]"})
    summaries = [
        report.summarize(WX, default),
        {**report.summarize(wx_pinned, pinned), "malloc": "pinned"},
        report.summarize(WT, default),
    ]
    return {
        "run": {
            "started": started,
            "mode": "full",
            "command": "python benchmarks/run.py --workloads WX,WT --rounds 3 --no-setup",
            "python_for_cases": "/nonexistent/python",
            "rounds": 3,
            "window_s": 8.0,
            "seed": 0,
            "machine": {
                "cpu": "Test CPU 9000",
                "cores": 2,
                "mem_gib": 24.0,
                "platform": "Linux-test",
                "python": "3.11.7",
                "loadavg_start": "1.00 1.00 1.00",
            },
            "versions": {"ours": "0.1.0", "tensorpack": "0.11", "torch": "2.13.0+cpu"},
            "skipped": {},
            "loadavg_end": "1.10 1.00 1.00",
        },
        "summaries": summaries,
        "cases": recs,
    }


def table_row(md: str, *cells: str) -> list[str]:
    """The cells of the first table row starting with ``cells``."""
    for line in md.splitlines():
        row = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and row[: len(cells)] == list(cells):
            return row
    raise AssertionError(f"no row {cells} in:\n{md}")


def header(md: str, first: str) -> list[str]:
    for line in md.splitlines():
        row = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and row[0] == first:
            return row
    raise AssertionError(f"no table starting with {first!r}")


# -- summaries and ratio math -------------------------------------------------------------------
def test_tuned_config_is_the_best_of_the_grid_and_ratios_are_paired_per_round() -> None:
    s = report.summarize(WX, make_records())
    assert s["best_config"]["tensorpack"] == "tensorpack/fast"
    tuned = s["ratio_ours_over_peer"]["wall"]["tuned"]["tensorpack"]
    # rounds: 200/100, 220/100, 180/120
    assert tuned["peer"] == "tensorpack/fast"
    assert tuned["median"] == pytest.approx(2.0)
    assert tuned["min"] == pytest.approx(1.5)
    assert tuned["max"] == pytest.approx(2.2)
    assert tuned["n"] == 3
    default = s["ratio_ours_over_peer"]["wall"]["default"]["tensorpack"]
    assert default["median"] == pytest.approx(4.0)  # against tensorpack/default: 200/50, ...
    frac = s["fraction_of_ceiling"]["wall"]
    assert frac["ours/default"] == pytest.approx({"median": 0.5, "min": 0.5, "max": 0.5})
    assert frac["tensorpack/fast"]["min"] == pytest.approx(100 / 440)
    assert frac["tensorpack/fast"]["max"] == pytest.approx(120 / 360)
    assert "cpu" not in s["ratio_ours_over_peer"]  # no in-call CPU figures in WX
    assert s["cases"]["torch/default"]["iid"]


def test_malloc_settings_are_separate_groups_with_their_own_ceiling() -> None:
    s = report.summarize(WX, make_records())
    assert s["mallocs"] == ["default", "pinned"]
    assert "ours/default@pinned" in s["cases"]
    assert s["cases"]["ours/default@pinned"]["malloc"] == "pinned"
    assert s["best_config"]["tensorpack@pinned"] == "tensorpack/default@pinned"
    pinned = s["ratio_ours_over_peer"]["wall"]["tuned@pinned"]["tensorpack"]
    assert pinned["median"] == pytest.approx(2.0)  # 300/100, 300/150, 300/200
    assert pinned["min"] == pytest.approx(1.5) and pinned["max"] == pytest.approx(3.0)
    # the pinned cases are measured against the pinned ceiling (600), not the default one
    frac = s["fraction_of_ceiling"]["wall"]["ours/default@pinned"]
    assert frac == pytest.approx({"median": 0.5, "min": 0.5, "max": 0.5})
    # the default group is unchanged by the pinned records
    assert s["ratio_ours_over_peer"]["wall"]["tuned"]["tensorpack"]["median"] == pytest.approx(2)


def test_time_metric_cpu_basis_and_missing_fields() -> None:
    s = report.summarize(WT, make_records())
    ours = s["cases"]["ours/default"]
    assert ours["metric"]["median"] == pytest.approx(1000.0)  # 1e6 dp/s = 1000 ns/dp
    assert ours["metric_cpu"]["median"] == pytest.approx(800.0)
    assert ours["cpu_s_per_dp"]["median"] == pytest.approx(2.0 / 1000)
    assert ours["faults_per_dp"]["median"] == pytest.approx(0.5)
    assert s["ratio_ours_over_peer"]["cpu"]["tuned"]["tensorpack"]["median"] == pytest.approx(2.5)
    assert s["fraction_of_ceiling"]["cpu"]["ours/default"]["median"] == pytest.approx(0.5)
    bare = s["cases"]["tensorpack/default"]
    assert bare["peak_pss_bytes"] is None and bare["ttfb_s"] is None
    assert s["cases"]["torch/default"]["throughput_dp_s"] is None
    assert len(s["cases"]["torch/default"]["failed"]) == 1


def test_resummarize_from_a_saved_run_gives_the_same_figures() -> None:
    run = json.loads(json.dumps(make_run()))  # as read back from the JSON file
    again = report.resummarize(run)
    assert [s["workload"] for s in again] == ["WX", "WT"]  # the variants of WX shown together
    wx, wt = again
    assert wx["title"] == "synthetic images"
    stored_default, stored_pinned, stored_wt = run["summaries"]
    for stored in (stored_default, stored_pinned):
        for basis, by_mode in stored["ratio_ours_over_peer"].items():
            for mode, rat in by_mode.items():
                if rat:
                    assert wx["ratio_ours_over_peer"][basis][mode] == rat
        for key, frac in stored["fraction_of_ceiling"]["wall"].items():
            assert wx["fraction_of_ceiling"]["wall"][key] == frac
        assert stored["cases"].keys() <= wx["cases"].keys()
    assert wt["ratio_ours_over_peer"] == stored_wt["ratio_ours_over_peer"]
    assert wt["fraction_of_ceiling"] == stored_wt["fraction_of_ceiling"]
    # a run summarized before units_per_dp/timing were stored: both are recovered
    old = dict(run["summaries"][0])
    del old["units_per_dp"], old["timing"]
    info = report.workload_info(old)
    assert info.UNITS_PER_DP == pytest.approx(1.0) and info.TIMING == "wall"


# -- Markdown -----------------------------------------------------------------------------------
def test_workload_table_shows_ratios_fractions_flags_and_dashes() -> None:
    recs = make_records()
    md = report.markdown_workload(report.summarize(WX, recs))
    cols = header(md, "library")
    assert cols[:6] == ["library", "config", "malloc", "img/s", "ours / peer", "of ceiling"]
    for name in ("tree CPU ms/dp", "peak PSS MiB", "TTFB ms", "teardown ms", "faults/dp"):
        assert name in cols
    assert "in-call CPU img/s" not in cols  # no CPU basis in this workload: column left out
    assert "steady PSS MiB" in cols
    row = dict(zip(cols, table_row(md, "tensorpack", "**fast**", "default")))
    assert row["img/s"] == "100 (100-120)"
    assert row["ours / peer"] == "2x (1.5-2.2)"
    assert row["of ceiling"] == "25 (22.7-33.3)%"
    assert row["peak PSS MiB"] == "100"
    assert row["TTFB ms"] == "250"
    assert row["faults/dp"] == "0.5"
    assert row["steady PSS MiB"] == "80"
    untuned = dict(zip(cols, table_row(md, "tensorpack", "default", "default")))
    assert untuned["ours / peer"] == "-"  # ratios are shown on the tuned config's row
    assert untuned["correctness"] == "count+checksum ok; **still running after teardown: 1**"
    iid = dict(zip(cols, table_row(md, "torch", "**default** (i.i.d.)")))
    assert iid["correctness"] == "i.i.d. mode (not exact)"
    pinned = dict(zip(cols, table_row(md, "tensorpack", "**default**", "pinned")))
    assert pinned["ours / peer"] == "2x (1.5-3)"
    assert "- ours / peer, tuned vs tuned, malloc pinned, wall: tensorpack 2x (1.5-3) (n=3)" in md

    md_t = report.markdown_workload(report.summarize(WT, recs))
    cols_t = header(md_t, "library")
    assert "malloc" not in cols_t  # every case ran with the default allocator
    assert "in-call CPU ns/dp" in cols_t
    assert "steady PSS MiB" not in cols_t  # no record of WT carries it
    bare = dict(zip(cols_t, table_row(md_t, "tensorpack", "**default**")))
    assert bare["ns/dp"] == "2,000"
    assert bare["peak PSS MiB"] == "-" and bare["TTFB ms"] == "-"
    assert bare["ours / peer (CPU)"] == "2.5x"
    failed = dict(zip(cols_t, table_row(md_t, "torch", "default")))
    assert failed["ns/dp"] == "-"
    assert failed["correctness"] == "**FAILED**; **1 failed run(s)**"


def test_headline_table_has_a_row_per_workload_and_malloc_setting() -> None:
    md = report.headline_table(report.resummarize(make_run()))
    cols = header(md, "workload")
    assert cols == [
        "workload",
        "metric",
        "ours (tuned)",
        "ours of ceiling",
        "ours / tensorpack",
        "ours / torch",
        "best peer of ceiling",
    ]
    wx = dict(zip(cols, table_row(md, "WX")))
    assert wx["ours (tuned)"] == "200 (default)"
    assert wx["ours / tensorpack"] == "2x (1.5-2.2)"
    assert wx["ours / torch"] == "0.5x"
    assert wx["best peer of ceiling"] == "100% (torch/default)"
    pinned = dict(zip(cols, table_row(md, "WX (malloc pinned)")))
    assert pinned["ours / tensorpack"] == "2x (1.5-3)"
    assert pinned["ours / torch"] == "-"
    wt = dict(zip(cols, table_row(md, "WT")))
    assert wt["ours / tensorpack"] == "2x"
    assert wt["ours of ceiling"] == "50%"


# -- charts -------------------------------------------------------------------------------------
def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.mark.timeout(90)
def test_charts_are_valid_pngs_one_per_workload_with_a_ceiling(tmp_path: Path) -> None:
    run = make_run()
    run["cases"].append(record("WN", "ours", "default", 0, 10.0))  # no ceiling: no chart
    paths = charts.write_charts(run, tmp_path, prefix="run-")
    assert sorted(p.name for p in paths) == ["run-WT.png", "run-WX.png"]
    for p in paths:
        width, height = png_size(p)
        assert width > 400 and height > 150
    assert not (tmp_path / "run-WN.png").exists()


def test_charts_skipped_without_matplotlib_says_why(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(charts, "_have_matplotlib", lambda: False)
    monkeypatch.setattr(charts, "peers_python", lambda: None)
    with pytest.raises(charts.ChartsUnavailable, match="matplotlib is not installed"):
        charts.write_charts(make_run(), tmp_path)
    section = charts.charts_markdown(make_run(), tmp_path)
    assert "Charts skipped: matplotlib is not installed" in section
    assert not list(tmp_path.iterdir())


# -- publishing ---------------------------------------------------------------------------------
@pytest.mark.timeout(90)
def test_publish_writes_the_page_and_keeps_the_hand_written_section(
    tmp_path: Path, monkeypatch
) -> None:
    results = tmp_path / "results"
    results.mkdir()
    run_path = results / "20261125-101010-full.json"
    doc = make_run()
    # a run written elsewhere: the page names neither that folder nor the --out argument
    doc["run"]["command"] += f" --out {results}"
    run_path.write_text(json.dumps(doc))
    docs = tmp_path / "docs"

    page = publish.publish(run_path, docs, freeze="numpy==2.4.6\ntensorpack==0.11")
    text = page.read_text()
    assert page == docs / "benchmarks.md"
    order = [
        "# Benchmarks",
        "## How to reproduce",
        "python benchmarks/run.py --workloads WX,WT --rounds 3 --no-setup",
        "python benchmarks/publish.py benchmarks/results/20261125-101010-full.json",
        "Machine: Test CPU 9000, 2 cores, 24 GiB; Linux-test; Python 3.11.7.",
        "Date: 2026-11-25 10:10:10.",
        "## Summary",
        "| WX | img/s | 200 (default) |",
        "## WX: synthetic images",
        "![WX: throughput as a fraction of the ceiling](benchmarks/WX.png)",
        "## WT: synthetic tiny",
        "## Where we are behind",
        publish.HAND_OPEN,
        publish.PLACEHOLDER,
        publish.HAND_CLOSE,
        "<details><summary>pip freeze",
        "numpy==2.4.6\ntensorpack==0.11",
        "</details>",
    ]
    positions = [text.find(s) for s in order]
    assert -1 not in positions, [s for s, p in zip(order, positions) if p < 0]
    assert positions == sorted(positions)
    assert "```python" not in text  # docs/*.md python blocks are executed by test_docs.py
    assert str(tmp_path) not in text and "--out" not in text
    for name in ("WX.png", "WT.png"):
        png_size(docs / "benchmarks" / name)

    # The lead writes the section by hand; a later run is published over the page.
    mine = "W4: we trail tensorpack by 5% ([#12](x)); next: <b>batched decode</b>.\n\nSecond para."
    text = text.replace(publish.PLACEHOLDER, mine)
    page.write_text(text)
    later = make_run(started="20261126-090000")
    later["run"]["machine"]["cpu"] = "Other CPU"
    later_path = results / "20261126-090000-full.json"
    later_path.write_text(json.dumps(later))
    monkeypatch.setattr(charts, "_have_matplotlib", lambda: False)
    monkeypatch.setattr(charts, "peers_python", lambda: None)
    monkeypatch.setattr(publish, "RESULTS", results)
    freeze = tmp_path / "freeze.txt"
    freeze.write_text("lxml==5.0\n")
    # no path: the newest full run of the results folder is published
    assert publish.main(["--out", str(docs), "--freeze", str(freeze)]) == 0
    again = page.read_text()
    assert f"{publish.HAND_OPEN}\n{mine}\n{publish.HAND_CLOSE}" in again
    assert again.count(publish.HAND_OPEN) == 1
    assert publish.PLACEHOLDER not in again
    assert "Machine: Other CPU" in again and "Date: 2026-11-26 09:00:00." in again
    assert "Charts skipped: matplotlib is not installed" in again
    assert "lxml==5.0" in again and "numpy==2.4.6" not in again


def test_latest_full_run_and_a_clear_error_without_one(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no full run"):
        publish.latest_full_run(tmp_path)
    for name in (
        "20261125-101010-full.json",
        "20261126-090000-quick.json",
        "20261125-235959-full.json",
    ):
        (tmp_path / name).write_text("{}")
    assert publish.latest_full_run(tmp_path).name == "20261125-235959-full.json"
    assert publish.hand_written("no markers here") is None

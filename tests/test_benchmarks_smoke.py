"""The benchmark suite's smoke mode: our pipelines run briefly, exactly, and leave nothing behind.

Runs ``benchmarks/run.py --smoke`` as a user would, with this interpreter (smoke mode needs no
peers' venv). It fails on a crash, a leftover process or /dev/shm segment, or a wrong datapoint
count or checksum; never on speed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from flows import BENCHMARKS_DIR, REPO_ROOT

RUN = BENCHMARKS_DIR / "run.py"
sys.path.insert(0, str(BENCHMARKS_DIR))

from workloads.selftest import SLOW_START_S  # noqa: E402


@pytest.mark.timeout(90)
def test_smoke_w1_ours_is_exact_and_leaves_nothing(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(RUN),
            "--smoke",
            "--workloads",
            "W1",
            "--libs",
            "ours",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=80,
        cwd=REPO_ROOT,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    check = [line for line in proc.stdout.splitlines() if line.startswith("CHECK W1 ours/default:")]
    assert len(check) == 1, output
    assert "status=ok" in check[0] and "checksum=ok" in check[0] and "leftovers=none" in check[0]
    assert "count=[262144] expected=262144" in check[0]

    (result,) = tmp_path.glob("*-smoke.json")
    data = json.loads(result.read_text())
    (case,) = data["cases"]
    assert case["lib"] == "ours" and case["status"] == "ok"
    assert case["complete_passes"] >= 1 and case["checksums_ok"]
    assert case["leftover_procs"] == [] and case["leftover_shm"] == []
    assert case["throughput_dp_s"] > 0 and case["peak_pss_bytes"] > 0
    assert (tmp_path / result.name.replace(".json", ".md")).exists()


@pytest.mark.timeout(90)
def test_smoke_fails_on_each_fault_and_cleans_up(tmp_path: Path) -> None:
    # SELFTEST pipelines misbehave on purpose; smoke mode must name every fault and exit 1.
    proc = subprocess.run(
        [sys.executable, str(RUN), "--smoke", "--workloads", "SELFTEST", "--window", "0.3"]
        + ["--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=80,
        cwd=REPO_ROOT,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output
    checks = {
        line.split(":")[0].split("/")[1]: line
        for line in proc.stdout.splitlines()
        if line.startswith("CHECK SELFTEST ours/")
    }
    assert set(checks) == {
        "good",
        "leak_process",
        "leak_shm",
        "leak_shm_mapped",
        "wrong_checksum",
        "crash",
        "slow_start",
    }, output
    assert "status=ok" in checks["good"] and "leftovers=none" in checks["good"]
    assert "checksum=ok" in checks["good"]
    assert "leftovers=1" in checks["leak_process"]
    assert "leftovers=1" in checks["leak_shm"]
    assert "leftovers=1" in checks["leak_shm_mapped"]
    assert "checksum=WRONG" in checks["wrong_checksum"]
    assert "status=crash" in checks["crash"]
    assert "status=ok" in checks["slow_start"] and "checksum=ok" in checks["slow_start"]

    (result,) = tmp_path.glob("*-smoke.json")
    cases = {c["config"]: c for c in json.loads(result.read_text())["cases"]}
    assert "time.sleep(120)" in cases["leak_process"]["leftover_procs"][0]
    # A pipeline whose first batch took 0.25 s is warmed up min(TTFB, window) = 0.25 s before
    # its window starts; one that starts at once is not held back.
    slow = cases["slow_start"]
    assert slow["ttfb_s"] >= SLOW_START_S
    assert slow["warmup_s"] >= min(slow["ttfb_s"], 0.3)
    assert cases["good"]["warmup_s"] < SLOW_START_S
    # The harness removed what the faulty cases left behind.
    assert not cases["leak_process"].get("unkillable_procs")
    for config in ("leak_shm", "leak_shm_mapped"):
        (path,) = cases[config]["leftover_shm"]
        assert not Path(path).exists()


@pytest.mark.timeout(900)
def test_smoke_every_workload_ours_is_exact_and_leaves_nothing(tmp_path: Path) -> None:
    # Every workload of the suite (W1-W8), our library only, briefly: what CI guards.
    proc = subprocess.run(
        [sys.executable, str(RUN), "--smoke", "--libs", "ours", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=880,
        cwd=REPO_ROOT,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    (result,) = tmp_path.glob("*-smoke.json")
    cases = json.loads(result.read_text())["cases"]
    ran = {c["workload"] for c in cases}
    for group in ("W1", "W2", "W3", "W4", "W5", "W6", "W7", "W8"):
        assert any(w == group or w.startswith(group + "-") for w in ran), (group, sorted(ran))
    for case in cases:
        where = f"{case['workload']} {case['config']}"
        assert case["status"] == "ok", (where, output)
        assert case["complete_passes"] >= 1, (where, output)
        # an i.i.d. mode (each worker replays the source) is exempt from the exact checksum only
        assert case["checksums_ok"] or case["iid"], (where, output)
        assert case["leftover_procs"] == [] and case["leftover_shm"] == [], (where, output)


@pytest.mark.timeout(120)
def test_smoke_w9_resume_maps_only_what_is_left(tmp_path: Path) -> None:
    # W9 in smoke mode: a state at 90% of a pass, resumed by our state and by counted replay.
    proc = subprocess.run(
        [
            sys.executable,
            str(BENCHMARKS_DIR / "w9_resume.py"),
            "--smoke",
            "--n",
            "5000",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=110,
        cwd=REPO_ROOT,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    (result,) = tmp_path.glob("*-w9-smoke.json")
    rows = {(r["pipeline"], r["way"]): r for r in json.loads(result.read_text())["rows"]}
    pipelines = ("list", "lmdb", "lmdb-foreign")
    assert set(rows) == {(p, w) for p in pipelines for w in ("ours", "replay")}
    assert all(r["exact"] for r in rows.values()), rows  # resumed at the right item
    # Seek, not replay: the first batch maps its own 256 datapoints, the first datapoint one.
    assert rows["list", "ours"]["calls"] == [256]
    assert rows["lmdb", "ours"]["calls"] == rows["lmdb-foreign", "ours"]["calls"] == [1]
    # The user wrapper without state replays the 90% before the position through the map.
    assert rows["list", "replay"]["calls"] == [int(5000 // 256 * 0.9) * 256 + 256]
    assert rows["lmdb", "replay"]["calls"] == rows["lmdb-foreign", "replay"]["calls"] == [4501]
    assert "### W9: resume cost" in proc.stdout

"""The `dataflow` command, run as a user runs it: a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    return subprocess.run(
        [sys.executable, "-m", "dataflow", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


@pytest.mark.timeout(90)
def test_demo_runs_and_reports_every_stage():
    result = run_cli(
        "demo", "--size", "200", "--image-size", "64", "--crop", "32", "--batch-size", "32"
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "per-stage throughput" in out
    assert "JPEG images" in out  # the [image] extra is installed in the test environment
    for stage in (
        "source: DataFromList",
        "map: imdecode",
        "augment: random crop 32",
        "batch: BatchData(32)",
    ):
        assert stage in out
    # every stage line carries a positive rate
    rate_lines = [
        line
        for line in out.splitlines()
        if line.strip().startswith(("source:", "map:", "augment:", "batch:"))
    ]
    assert len(rate_lines) == 4
    for line in rate_lines:
        rate = float(line.split()[-2].replace(",", ""))
        assert rate > 0
    assert "the most expensive stage is" in out
    # the progress bar (tqdm writes to stderr) ran over the whole pipeline
    assert "it/s" in result.stderr or "s/it" in result.stderr


@pytest.mark.timeout(60)
def test_help_and_bad_arguments_give_exit_codes():
    result = run_cli("--help")
    assert result.returncode == 0 and "demo" in result.stdout
    result = run_cli("demo", "--help")
    assert result.returncode == 0 and "--batch-size" in result.stdout
    result = run_cli("demo", "--batch-size", "0")
    assert result.returncode == 2 and "positive integer" in result.stderr
    result = run_cli("no-such-command")
    assert result.returncode == 2
    result = run_cli()
    assert result.returncode == 2 and "demo" in result.stdout


@pytest.mark.timeout(60)
def test_version_matches_package():
    import dataflow

    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == dataflow.__version__

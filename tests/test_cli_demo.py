"""`dataflow demo` (dataflow.cli.demo), run as a user runs it: a subprocess."""

from __future__ import annotations

import os

import pytest

from test_cli_parser import run_cli


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
    # one unit throughout: images (a batch counts its images)
    assert "images/s" in out and "us/image added" in out and "datapoints" not in out
    # the same pipeline, decode + augment in one worker process per CPU, ran to the end (no hang)
    cpus = len(os.sched_getaffinity(0))
    assert f"may use {cpus} CPU(s)" in out
    parallel = [line for line in out.splitlines() if f"parallel: the same in {cpus} worker" in line]
    assert len(parallel) == 1 and float(parallel[0].split()[-2].rstrip("x")) > 0
    # the progress bar (tqdm writes to stderr) counted every image of both epochs
    assert "img/s" in result.stderr and "400/400" in result.stderr

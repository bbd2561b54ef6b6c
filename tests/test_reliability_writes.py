"""`dataflow convert` killed (SIGKILL) at random points while it writes: the final name holds
nothing or the whole dataset, never a short one read as whole."""

from __future__ import annotations

import os
import random
import subprocess
import sys

import pytest

from dataflow.errors import FormatError
from dataflow.serialize import LMDBSerializer
from test_cli_convert import make_image_folder
from test_cli_parser import ROOT

pytestmark = pytest.mark.usefixtures("no_leaks")


@pytest.mark.timeout(120)
def test_convert_killed_at_random_points_leaves_no_partial_file(tmp_path):
    images = tmp_path / "images"
    n = len(make_image_folder(images))
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    rng = random.Random(19)
    for trial in range(6):
        out = tmp_path / f"out{trial}.lmdb"
        proc = subprocess.Popen(
            [sys.executable, "-m", "dataflow", "convert", "images", out.name, "--no-shuffle"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            proc.wait(timeout=rng.uniform(0.2, 3.0))  # the kill lands at a random point
        except subprocess.TimeoutExpired:
            pass
        proc.kill()
        proc.wait(10)
        if not out.exists():
            continue
        try:
            points = list(LMDBSerializer.load(str(out), shuffle=False))
        except FormatError:
            continue
        assert len(points) == n, f"trial {trial}: {len(points)} of {n} datapoints under {out.name}"

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


_SAVER = """
import sys
import numpy as np
from dataflow.raw import DataFromList
from dataflow.serialize import LMDBSerializer
class Endless(DataFromList):
    def __iter__(self):
        yield from super().__iter__()
        print("written", flush=True)  # every record is in the temporary file
        sys.stdin.readline()  # wait here until killed
rows = [[i, np.full(3000, i % 251, np.uint8)] for i in range(200)]
LMDBSerializer.save(Endless(rows, shuffle=False), sys.argv[1])
"""


@pytest.mark.timeout(120)
def test_a_killed_saves_temporary_file_is_removed_by_the_next_save_to_that_name(tmp_path):
    from dataflow.raw import DataFromList

    out = tmp_path / "data.lmdb"
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    with subprocess.Popen(
        [sys.executable, "-c", _SAVER, str(out)],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    ) as saver:
        try:
            assert saver.stdout.readline().strip() == b"written"
        finally:
            saver.kill()
            saver.wait(10)
    left = [p.name for p in tmp_path.iterdir()]
    assert not out.exists() and len(left) == 1 and left[0].startswith(".data.lmdb.tmp-"), left
    other_host = tmp_path / ".data.lmdb.tmp-elsewhere-1-abcd1234"  # a writer on another host
    other_host.write_bytes(b"not ours")
    LMDBSerializer.save(DataFromList([[1], [2]], shuffle=False), str(out))
    assert sorted(p.name for p in tmp_path.iterdir()) == [other_host.name, "data.lmdb"]
    assert [dp[0] for dp in LMDBSerializer.load(str(out), shuffle=False)] == [1, 2]

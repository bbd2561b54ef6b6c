"""`pip install .` in a fresh venv gives an importable package with only the core dependencies."""

from __future__ import annotations

import json
import subprocess
import venv

import pytest

from flows import REPO_ROOT

OPTIONAL = ["cv2", "lmdb", "h5py", "torch", "zmq", "ray", "PIL", "scipy", "diskcache"]


@pytest.mark.timeout(600)
def test_fresh_venv_install_imports_with_core_deps_only(tmp_path):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    install = subprocess.run(
        # verbose: pip shows the build backend's output, where setuptools prints its warnings
        [str(py), "-m", "pip", "install", "--verbose", str(REPO_ROOT)],
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    # e.g. the banner of setuptools >= 77 about `license = { text = ... }` (use the SPDX string)
    assert "SetuptoolsDeprecationWarning" not in install.stdout + install.stderr
    probe = (
        "import json, sys, importlib.metadata as md\n"
        "import dataflow\n"
        "from dataflow import DataFlow, DataFromList, BatchData, MapData\n"
        "ds = BatchData(MapData(DataFromList([[i] for i in range(10)], shuffle=False), "
        "lambda dp: [dp[0] * 2]), 5)\n"
        "out = [b[0].tolist() for b in ds]\n"
        "dists = sorted(d.metadata['Name'].lower() for d in md.distributions())\n"
        f"print(json.dumps({{'out': out, 'dists': dists, 'optional_loaded': "
        f"[m for m in {OPTIONAL!r} if m in sys.modules]}}))\n"
    )
    result = subprocess.run(
        [str(py), "-c", probe], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["out"] == [[0, 2, 4, 6, 8], [10, 12, 14, 16, 18]]
    assert report["optional_loaded"] == []
    third_party = set(report["dists"]) - {"pip", "setuptools", "wheel", "pydataflow"}
    assert third_party == {"numpy", "msgpack", "tqdm"}
    # the console script is installed too
    cli = subprocess.run(
        [str(env_dir / "bin" / "dataflow"), "--version"], capture_output=True, text=True, timeout=60
    )
    assert cli.returncode == 0 and cli.stdout.strip()

"""`dataflow download` (dataflow.cli.download), run as a user runs it: a subprocess."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap

import pytest

from test_cli_parser import ROOT, last_line, run_in, run_main

# Runs the real CLI in a subprocess whose registry publishes the test's tiny files: the size and
# md5 of each file come in $TEST_PUBLISHED (a subprocess cannot see the test's monkeypatching).
DOWNLOAD_WRAPPER = textwrap.dedent(
    """
    import json, os, sys
    from dataclasses import replace
    from dataflow.dataset._download import REGISTRY
    for name, files in json.loads(os.environ["TEST_PUBLISHED"]).items():
        source = REGISTRY[name]
        REGISTRY[name] = replace(source, files=tuple(
            replace(r, size=files[r.filename][0], md5=files[r.filename][1], sha256=None)
            for r in source.files if r.filename in files))
    from dataflow.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


def offline_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["PYTHONPATH"] = str(ROOT / "src")
    env["DATAFLOW_DATASET_MIRROR"] = "http://127.0.0.1:9"  # closed: fails fast
    env.update(extra)
    return env


@pytest.fixture
def local_server():
    from test_dataset_download import LocalServer

    server = LocalServer()
    yield server
    server.close()


@pytest.mark.timeout(60)
def test_download_fetches_verifies_and_reports_a_corrupted_file(tmp_path, local_server):
    from test_dataset import make_mnist

    published = tmp_path / "published"
    make_mnist(published, n_train=6, n_test=3)
    files = {f.name: f.read_bytes() for f in published.iterdir()}
    for name, data in files.items():
        local_server.files[f"/mnist/{name}"] = data
    env = offline_env(
        DATAFLOW_DATASET_MIRROR=local_server.url,
        DATAFLOW_DATASET=str(tmp_path / "root"),
        TEST_PUBLISHED=json.dumps(
            {"mnist": {n: [len(d), hashlib.md5(d).hexdigest()] for n, d in files.items()}}
        ),
    )

    def download(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-c", DOWNLOAD_WRAPPER, "download", *args],
            capture_output=True,
            text=True,
            timeout=50,
            env=env,
        )

    result = download("mnist", "--dir", str(tmp_path / "mine"))
    assert result.returncode == 0, result.stderr
    assert str(tmp_path / "mine") in result.stdout
    for name, data in files.items():
        assert (tmp_path / "mine" / name).read_bytes() == data

    result = download("mnist")  # no --dir: $DATAFLOW_DATASET/mnist_data
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(tmp_path / "root" / "mnist_data")) == sorted(files)

    bad = "t10k-images-idx3-ubyte.gz"
    local_server.files[f"/mnist/{bad}"] = files[bad][:-1] + bytes([files[bad][-1] ^ 0xFF])
    result = download("mnist", "--dir", str(tmp_path / "other"))
    assert result.returncode == 1
    error = last_line(result.stderr)
    assert error.startswith("dataflow download: error: ")
    assert bad in error and "md5" in error
    assert not (tmp_path / "other" / bad).exists()
    assert not (tmp_path / "other" / f"{bad}.part").exists()


@pytest.mark.timeout(60)
def test_download_list_and_usage_errors(tmp_path, capsys):
    result = subprocess.run(
        [sys.executable, "-m", "dataflow", "download", "--list"],
        capture_output=True,
        text=True,
        timeout=50,
        env=offline_env(),
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for name in ("mnist", "fashion_mnist", "cifar10", "cifar100", "svhn", "ilsvrc12_meta"):
        row = next(line for line in lines if line.startswith(name + " "))
        assert len(row.split()) > 2  # a size and a description follow the name
    assert "DATAFLOW_DATASET" in result.stdout

    result = run_in(tmp_path, "download", "no_such_dataset", env=offline_env())
    assert result.returncode == 2
    assert "unknown dataset 'no_such_dataset'" in result.stderr and "mnist" in result.stderr
    code, _, err = run_main(capsys, "download")
    assert code == 2 and "NAME is required" in err
    code, _, err = run_main(capsys, "download", "mnist", "--list")
    assert code == 2

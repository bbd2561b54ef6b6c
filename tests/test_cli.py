"""The `dataflow` command, run as a user runs it: a subprocess."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest

from dataflow import cli
from dataflow.serialize import HDF5Serializer, LMDBSerializer, NumpySerializer, TFRecordSerializer

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
    # the same pipeline, decode + augment in 2 worker processes, ran to the end (no hang)
    parallel = [line for line in out.splitlines() if "parallel: the same in 2 worker" in line]
    assert len(parallel) == 1 and float(parallel[0].split()[-1].rstrip("x")) > 0
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


# -- helpers for the subcommands ------------------------------------------------------------------


def run_in(cwd: Path, *args: str, timeout: float = 60, env: dict | None = None):
    """The CLI as a subprocess, in folder ``cwd``."""
    full_env = dict(env if env is not None else os.environ)
    full_env["PYTHONPATH"] = str(ROOT / "src")
    return subprocess.run(
        [sys.executable, "-m", "dataflow", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        cwd=cwd,
    )


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


def run_main(capsys, *args: str) -> tuple[int, str, str]:
    """The CLI in this process (for the cheap checks); argparse's exits become exit codes."""
    try:
        code = cli.main(list(args))
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


# -- help -----------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_every_subcommand_has_help(capsys):
    result = run_cli("convert", "--help")
    assert result.returncode == 0
    assert "--on-error" in result.stdout and "--resize" in result.stdout
    for command, option in (
        ("bench", "--warmup"),
        ("inspect", "--allow-pickle"),
        ("download", "--list"),
        ("demo", "--crop"),
    ):
        code, out, _ = run_main(capsys, command, "--help")
        assert code == 0 and option in out, command
        assert "exit codes" in out
    code, out, _ = run_main(capsys, "--help")
    for command in ("demo", "bench", "convert", "inspect", "download"):
        assert command in out


# -- download -------------------------------------------------------------------------------------

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


# -- bench ----------------------------------------------------------------------------------------

PIPELINE = textwrap.dedent(
    """
    import numpy as np
    from dataflow import BatchData, DataFromList, MapData

    def double(dp):
        return [dp[0] * 2]

    def make():
        ds = DataFromList([[np.float32(i)] for i in range(400)], shuffle=False)
        ds = MapData(ds, double)
        return BatchData(ds, 8)

    def broken():
        raise ValueError("boom in the factory")

    def not_a_flow():
        return 42

    def fails_at_5(dp):
        if dp[0] == 5:
            raise KeyError("no datapoint 5 here")
        return dp

    def raises_later():
        return MapData(DataFromList([[i] for i in range(10)], shuffle=False), fails_at_5)
    """
)

PARALLEL_PIPELINE = textwrap.dedent(
    """
    from dataflow import BatchData, DataFromList
    from dataflow.parallel_map import MultiProcessMapData

    def square(dp):
        return [dp[0] ** 2]

    def make():
        ds = DataFromList([[i] for i in range(300)], shuffle=True)
        return BatchData(MultiProcessMapData(ds, 2, square), 10)
    """
)


def stage_rows(out: str) -> dict[str, list[str]]:
    table = out.split("per-stage throughput", 1)[1].split("\n\n", 1)[0]
    return {
        line.split()[0].split("(")[0]: line.split()
        for line in table.splitlines()[2:]
        if line.strip()
    }


@pytest.mark.timeout(60)
def test_bench_times_the_pipeline_each_stage_and_memory(tmp_path):
    (tmp_path / "mypipe.py").write_text(PIPELINE)
    result = run_in(tmp_path, "bench", "mypipe:make", "--size", "30", "--warmup", "2")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    rate = float(out.split("pipeline: ", 1)[1].split(" datapoints/s")[0].replace(",", ""))
    assert rate > 0
    assert "batches of 8" in out
    rows = stage_rows(out)
    assert list(rows) == ["BatchData", "MapData", "DataFromList"]
    assert "batch_size=8" in rows["BatchData"][0]
    for row in rows.values():
        assert float(row[-3].replace(",", "")) > 0  # yields/s
    # a batch counts its 8 source datapoints
    batch = rows["BatchData"]
    assert float(batch[-2].replace(",", "")) == pytest.approx(
        8 * float(batch[-3].replace(",", "")), rel=1e-3
    )
    assert "the most expensive stage is" in out
    assert "PSS of the process tree" in out and "max RSS" in out
    assert "TestDataSpeed" in result.stderr  # it ran under TestDataSpeed (its progress bar)


@pytest.mark.timeout(90)
def test_bench_a_file_target_with_worker_processes(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "parallel_pipe.py").write_text(PARALLEL_PIPELINE)
    result = run_in(tmp_path, "bench", "sub/parallel_pipe.py:make", "--size", "20")
    assert result.returncode == 0, result.stderr
    rows = stage_rows(result.stdout)
    assert list(rows) == ["BatchData", "MultiProcessMapData", "DataFromList"]
    assert "num_proc=2" in rows["MultiProcessMapData"][0]
    # the consumer and its two workers were measured together
    processes = int(result.stdout.split("PSS of the process tree while the pipeline ran (")[1][0])
    assert processes >= 3


@pytest.mark.timeout(60)
def test_bench_errors_have_exit_codes_and_one_line_messages(tmp_path, capsys, monkeypatch):
    (tmp_path / "badpipe.py").write_text(PIPELINE)
    result = run_in(tmp_path, "bench", "badpipe:broken")
    assert result.returncode == 1
    assert 'badpipe.py", line' in result.stderr  # the user's traceback
    assert last_line(result.stderr) == (
        "dataflow bench: error: badpipe:broken() raised ValueError: boom in the factory"
    )

    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.chdir(tmp_path)
    code, _, err = run_main(capsys, "bench", "no_colon_here")
    assert code == 2 and "MODULE:FUNCTION" in err
    code, _, err = run_main(capsys, "bench", "badpipe:not_a_flow")
    assert code == 1 and last_line(err).endswith("returned a int, not a DataFlow")
    code, _, err = run_main(capsys, "bench", "badpipe:missing")
    assert code == 1 and "has no attribute 'missing'" in last_line(err)
    code, _, err = run_main(capsys, "bench", "no_such_module_xyz:make")
    assert code == 1 and "cannot import module 'no_such_module_xyz'" in last_line(err)
    code, _, err = run_main(capsys, "bench", "missing_file.py:make")
    assert code == 2 and "no such file" in err
    code, _, err = run_main(capsys, "bench", "badpipe:make", "--size", "0")
    assert code == 2
    code, _, err = run_main(capsys, "bench", "badpipe:raises_later", "--size", "20")
    assert code == 1 and "in fails_at_5" in err
    assert last_line(err) == (
        "dataflow bench: error: the pipeline raised KeyError: 'no datapoint 5 here'"
    )


# -- convert and inspect --------------------------------------------------------------------------


def make_image_folder(root: Path) -> dict[str, int]:
    """cat/ and dog/ with JPEG and PNG files; returns relative path -> label."""
    rng = np.random.RandomState(0)
    expected = {}
    for label, cls in enumerate(["cat", "dog"]):
        (root / cls / "nested").mkdir(parents=True)
        for i in range(3):
            img = cv2.resize(rng.randint(0, 256, (4, 6, 3), dtype=np.uint8), (30 + i, 20 + i))
            name = f"{cls}/{i}.jpg" if i != 1 else f"{cls}/nested/{i}.png"
            assert cv2.imwrite(str(root / name), img)
            expected[name] = label
    (root / "cat" / "README.txt").write_text("not an image")
    return expected


def decoded(data) -> np.ndarray:
    return cv2.imdecode(np.asarray(data, dtype=np.uint8), cv2.IMREAD_COLOR)


@pytest.mark.timeout(60)
def test_convert_inspect_and_read_back_give_the_same_images_and_labels(tmp_path):
    images = tmp_path / "images"
    expected = make_image_folder(images)
    result = run_in(tmp_path, "convert", "images", "train.lmdb", "--no-shuffle", "--workers", "2")
    assert result.returncode == 0, result.stderr
    assert "wrote 6 image(s) to train.lmdb" in result.stdout
    assert "labels: 0=cat, 1=dog" in result.stdout

    points = list(LMDBSerializer.load(str(tmp_path / "train.lmdb"), shuffle=False))
    assert len(points) == 6
    ordered = sorted(expected, key=lambda p: (expected[p], p))  # class order, then sorted paths
    for (data, label), path in zip(points, ordered):
        assert label == expected[path]
        assert data.dtype == np.uint8 and data.ndim == 1
        assert data.tobytes() == (images / path).read_bytes()  # the file's bytes, unchanged
        assert np.array_equal(decoded(data), cv2.imread(str(images / path)))

    result = run_in(tmp_path, "inspect", "train.lmdb", "--num", "2")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "format: LMDB written by dataflow's LMDBSerializer" in out
    assert "count:  6 datapoints" in out
    assert "codec=msgpack-numpy/1" in out
    assert out.count("a list of 2 components") == 2
    assert "0: ndarray uint8 of shape" in out and "1: int with value 0" in out
    assert "an encoded JPEG image, 30x20 when decoded" in out


@pytest.mark.timeout(60)
def test_convert_shuffles_by_default_and_resizes_from_a_list(tmp_path):
    images = tmp_path / "images"
    expected = make_image_folder(images)
    result = run_in(tmp_path, "convert", "images", "shuffled.lmdb", "--workers", "1")
    assert result.returncode == 0, result.stderr
    points = list(LMDBSerializer.load(str(tmp_path / "shuffled.lmdb"), shuffle=False))
    got = sorted((int(label), data.tobytes()) for data, label in points)
    assert got == sorted((label, (images / p).read_bytes()) for p, label in expected.items())

    (tmp_path / "list.txt").write_text(
        "# path label\ndog/0.jpg 7\n\ncat/nested/1.png 3\ncat/2.jpg 3\n"
    )
    result = run_in(
        tmp_path, "convert", "images", "small.lmdb", "--list", "list.txt", "--resize", "10",
        "--no-shuffle",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    points = list(LMDBSerializer.load(str(tmp_path / "small.lmdb"), shuffle=False))
    assert [label for _, label in points] == [7, 3, 3]
    for (data, _), path in zip(points, ["dog/0.jpg", "cat/nested/1.png", "cat/2.jpg"]):
        assert data[:3].tobytes() == b"\xff\xd8\xff"  # re-encoded as JPEG
        img = decoded(data)
        original = cv2.imread(str(images / path))
        assert min(img.shape[:2]) == 10
        assert img.shape[1] == round(original.shape[1] * 10 / original.shape[0])


@pytest.mark.timeout(60)
def test_convert_reports_a_corrupt_image_by_name_and_skips_or_fails(tmp_path):
    images = tmp_path / "images"
    expected = make_image_folder(images)
    (images / "dog" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    whole = (images / "cat" / "0.jpg").read_bytes()
    (images / "cat" / "cut.jpg").write_bytes(whole[: len(whole) // 2])

    result = run_in(tmp_path, "convert", "images", "fail.lmdb")  # --on-error fail is the default
    assert result.returncode == 1
    error = last_line(result.stderr)
    assert error.startswith("dataflow convert: error: ")
    assert "cat/cut.jpg" in error or "dog/broken.jpg" in error
    assert sorted(os.listdir(tmp_path)) == ["images"]  # nothing written, no temporary file left

    result = run_in(tmp_path, "convert", "images", "skip.lmdb", "--on-error", "skip")
    assert result.returncode == 0, result.stderr
    assert "skipped 2 file(s)" in result.stdout
    for name in ("cat/cut.jpg", "dog/broken.jpg"):
        assert f"skipping {name}" in result.stderr
        assert f"  {name}: " in result.stdout
    points = list(LMDBSerializer.load(str(tmp_path / "skip.lmdb"), shuffle=False))
    got = sorted((int(label), data.tobytes()) for data, label in points)
    assert got == sorted((label, (images / p).read_bytes()) for p, label in expected.items())


@pytest.mark.timeout(60)
def test_convert_usage_and_runtime_errors(tmp_path, capsys):
    make_image_folder(tmp_path / "images")
    code, _, err = run_main(capsys, "convert", str(tmp_path / "nope"), str(tmp_path / "o.lmdb"))
    assert code == 2 and "is not a directory" in err
    (tmp_path / "taken.lmdb").write_bytes(b"x")
    code, _, err = run_main(
        capsys, "convert", str(tmp_path / "images"), str(tmp_path / "taken.lmdb")
    )
    assert code == 1 and "exists" in last_line(err)
    assert (tmp_path / "taken.lmdb").read_bytes() == b"x"
    (tmp_path / "bad_list.txt").write_text("cat/0.jpg 0\ncat/2.jpg zero\n")
    code, _, err = run_main(
        capsys, "convert", str(tmp_path / "images"), str(tmp_path / "o.lmdb"),
        "--list", str(tmp_path / "bad_list.txt"),
    )  # fmt: skip
    assert code == 1 and "line 2" in last_line(err) and "'cat/2.jpg zero'" in last_line(err)
    code, _, err = run_main(
        capsys, "convert", str(tmp_path / "images"), "x.lmdb", "--on-error", "x"
    )
    assert code == 2
    (tmp_path / "flat").mkdir()
    code, _, err = run_main(capsys, "convert", str(tmp_path / "flat"), str(tmp_path / "o.lmdb"))
    assert code == 1 and "no sub-folders" in last_line(err)
    assert not (tmp_path / "o.lmdb").exists()


@pytest.mark.timeout(60)
def test_inspect_every_serializer_format(tmp_path, capsys):
    from dataflow import DataFromList

    points = [[np.arange(3, dtype=np.int16) + i, i, f"item{i}"] for i in range(5)]
    NumpySerializer.save(DataFromList(points, shuffle=False), str(tmp_path / "d.npz"))
    TFRecordSerializer.save(DataFromList(points, shuffle=False), str(tmp_path / "d.tfrecord"))
    HDF5Serializer.save(
        DataFromList(points, shuffle=False), str(tmp_path / "d.h5"), ["a", "b", "c"]
    )
    for name, kind in (
        ("d.npz", "NumpySerializer .npz"),
        ("d.tfrecord", "TFRecord written by dataflow"),
        ("d.h5", "HDF5 written by dataflow"),
    ):
        code, out, err = run_main(capsys, "inspect", str(tmp_path / name), "--num", "1")
        assert code == 0, err
        assert kind in out and "5 datapoints" in out
        assert "0: ndarray int16 of shape (3,) in range [0, 2]" in out
        assert "2: str of len 5: 'item0'" in out
        assert "datapoint 1 of" not in out  # --num 1

    (tmp_path / "junk.bin").write_bytes(b"just some bytes, no format at all" * 4)
    result = run_in(tmp_path, "inspect", "junk.bin")
    assert result.returncode == 1
    assert last_line(result.stderr) == (
        "dataflow inspect: error: junk.bin: not a format dataflow reads (LMDB, NumpySerializer "
        ".npz, TFRecord, HDF5)"
    )
    code, _, err = run_main(capsys, "inspect", str(tmp_path / "missing.lmdb"))
    assert code == 2 and "no such file" in err


@pytest.mark.timeout(60)
def test_inspect_shows_tensorpack_pickles_only_when_allowed(tmp_path, capsys):
    import pickle

    import lmdb

    path = str(tmp_path / "tensorpack.lmdb")
    env = lmdb.open(path, subdir=False, map_size=1 << 24)
    with env.begin(write=True) as txn:
        keys = [b"%08d" % i for i in range(3)]
        for i, key in enumerate(keys):
            txn.put(key, pickle.dumps([np.zeros((2, 2), np.float32), i]))
        txn.put(b"__keys__", pickle.dumps(keys))
    env.close()

    code, out, err = run_main(capsys, "inspect", path)
    assert code == 0, err
    assert "tensorpack's LMDBSerializer" in out and "count:" in out and "3 datapoints" in out
    assert "--allow-pickle" in out and "DataFlow contents" not in out
    code, out, err = run_main(capsys, "inspect", path, "--allow-pickle", "--num", "3")
    assert code == 0, err
    assert "0: ndarray float32 of shape (2, 2) in range [0.0, 0.0]" in out
    assert "1: int with value 2" in out

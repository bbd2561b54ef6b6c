"""`dataflow convert` (dataflow.cli.convert), run as a user runs it: a subprocess."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from dataflow.serialize import LMDBSerializer
from test_cli_parser import last_line, run_in, run_main


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

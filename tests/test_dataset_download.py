"""Dataset downloads against a local HTTP server on 127.0.0.1 (never the internet).

The server (flows.LocalServer, conftest's local_server fixture: http.server in a thread, port 0)
serves tiny files in the published formats, supports HTTP Range, and can misbehave on purpose:
serve a corrupted file, close the connection half-way, ignore Range, or answer 404. The registry entries are monkeypatched with the tiny files' md5 and
size, and the downloader is pointed at the server through DATAFLOW_DATASET_MIRROR / base_url.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import threading
from dataclasses import replace

import pytest

from dataflow.dataset import Cifar10, DownloadError, Mnist, dataset_names, download
from dataflow.dataset._download import REGISTRY, get_dataset_path
from dataflow.errors import DataFlowArgumentError, DataFlowError
from flows import LocalServer  # noqa: F401 - test_cli imports it from here
from test_dataset import make_cifar10, make_mnist

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("offline_datasets", "no_leaks")]

MNIST_NAMES = [
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
]


def publish(monkeypatch, local_server, name, contents):
    """Serve ``contents`` (filename -> bytes) as dataset ``name`` and register their checksums."""
    source = REGISTRY[name]
    files = []
    for remote in source.files:
        if remote.filename in contents:
            data = contents[remote.filename]
            local_server.files[f"/{name}/{remote.filename}"] = data
            files.append(
                replace(
                    remote,
                    size=len(data),
                    md5=hashlib.md5(data).hexdigest(),
                    sha256=None,
                    urls=("http://127.0.0.1:9/unreachable",),
                )
            )
    monkeypatch.setitem(REGISTRY, name, replace(source, files=tuple(files)))


@pytest.fixture
def mnist_files(tmp_path):
    src = tmp_path / "published"
    make_mnist(src, n_train=12, n_test=5)
    return {name: (src / name).read_bytes() for name in MNIST_NAMES}


def test_reader_downloads_missing_files_through_the_mirror(
    tmp_path, local_server, monkeypatch, mnist_files
):
    publish(monkeypatch, local_server, "mnist", mnist_files)
    monkeypatch.setenv("DATAFLOW_DATASET_MIRROR", local_server.url)
    ds = Mnist("train", shuffle=False)  # dir=None: $DATAFLOW_DATASET/mnist_data
    assert len(ds) == 12
    folder = tmp_path / "dataset_root" / "mnist_data"
    assert sorted(os.listdir(folder)) == [
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
    ]
    for name in os.listdir(folder):
        assert (folder / name).read_bytes() == mnist_files[name]
    assert sorted(p for p, _ in local_server.requests) == [
        "/mnist/train-images-idx3-ubyte.gz",
        "/mnist/train-labels-idx1-ubyte.gz",
    ]


def test_download_by_name_fetches_everything_once(tmp_path, local_server, monkeypatch, mnist_files):
    assert {"mnist", "fashion_mnist", "cifar10", "cifar100", "svhn"} <= set(dataset_names())
    publish(monkeypatch, local_server, "mnist", mnist_files)
    target = tmp_path / "d"
    assert download("mnist", target, base_url=local_server.url, progress=False) == str(target)
    assert sorted(os.listdir(target)) == sorted(MNIST_NAMES)
    assert len(local_server.requests) == 4
    download(
        "mnist", str(target), base_url=local_server.url, progress=False
    )  # verifies, fetches nothing
    assert len(local_server.requests) == 4
    assert len(Mnist("test", dir=target)) == 5


def test_corrupted_download_is_a_clear_error_and_deletes_nothing_of_the_user(
    tmp_path, local_server, monkeypatch, mnist_files
):
    publish(monkeypatch, local_server, "mnist", mnist_files)
    good = mnist_files["t10k-images-idx3-ubyte.gz"]
    local_server.files["/mnist/t10k-images-idx3-ubyte.gz"] = good[:-1] + bytes([good[-1] ^ 0xFF])
    target = tmp_path / "d"
    target.mkdir()
    (target / "my_notes.txt").write_text("mine")
    (target / "t10k-labels-idx1-ubyte.gz").write_bytes(mnist_files["t10k-labels-idx1-ubyte.gz"])
    with pytest.raises(DownloadError, match=r"t10k-images-idx3-ubyte\.gz.*md5") as info:
        download("mnist", target, base_url=local_server.url, progress=False)
    assert isinstance(info.value, DataFlowError) and isinstance(info.value, OSError)
    assert info.value.path == str(target / "t10k-images-idx3-ubyte.gz")
    assert hashlib.md5(good).hexdigest() in str(info.value)
    assert not (target / "t10k-images-idx3-ubyte.gz").exists()
    assert not (target / "t10k-images-idx3-ubyte.gz.part").exists()
    assert (target / "my_notes.txt").read_text() == "mine"
    assert (target / "t10k-labels-idx1-ubyte.gz").read_bytes() == mnist_files[
        "t10k-labels-idx1-ubyte.gz"
    ]


def test_reader_reports_corrupted_download(tmp_path, local_server, monkeypatch, mnist_files):
    publish(monkeypatch, local_server, "mnist", mnist_files)
    local_server.files["/mnist/train-labels-idx1-ubyte.gz"] = b"garbage"
    monkeypatch.setenv("DATAFLOW_DATASET_MIRROR", local_server.url)
    with pytest.raises(DownloadError, match=r"train-labels-idx1-ubyte\.gz.*size"):
        Mnist("train", dir=tmp_path / "d")


def test_existing_file_with_wrong_checksum_is_reported_and_left_alone(
    tmp_path, local_server, monkeypatch, mnist_files
):
    publish(monkeypatch, local_server, "mnist", mnist_files)
    target = tmp_path / "d"
    target.mkdir()
    mine = mnist_files["train-labels-idx1-ubyte.gz"][::-1]  # same size, other content
    (target / "train-labels-idx1-ubyte.gz").write_bytes(mine)
    with pytest.raises(DownloadError, match=r"train-labels-idx1-ubyte\.gz exists.*untouched"):
        download("mnist", target, base_url=local_server.url, progress=False)
    assert (target / "train-labels-idx1-ubyte.gz").read_bytes() == mine
    assert local_server.requested("/mnist/train-labels-idx1-ubyte.gz") == []


def test_interrupted_download_resumes_with_range(tmp_path, local_server, monkeypatch, mnist_files):
    publish(monkeypatch, local_server, "mnist", mnist_files)
    path = "/mnist/train-images-idx3-ubyte.gz"
    local_server.truncate_once.add(path)
    target = tmp_path / "d"
    download("mnist", target, base_url=local_server.url, progress=False)
    data = mnist_files["train-images-idx3-ubyte.gz"]
    assert (target / "train-images-idx3-ubyte.gz").read_bytes() == data
    assert local_server.requested(path) == [None, f"bytes={len(data) // 2}-"]
    assert not any(name.endswith(".part") for name in os.listdir(target))


def test_interrupted_download_without_retries_keeps_part_and_resumes_next_time(
    tmp_path, local_server, monkeypatch, mnist_files
):
    publish(monkeypatch, local_server, "mnist", mnist_files)
    path = "/mnist/t10k-images-idx3-ubyte.gz"
    local_server.truncate_once.add(path)
    target = tmp_path / "d"
    with pytest.raises(DownloadError, match=r"t10k-images-idx3-ubyte\.gz.*\.part.*resumes"):
        download("mnist", target, base_url=local_server.url, progress=False, retries=0)
    data = mnist_files["t10k-images-idx3-ubyte.gz"]
    part = target / "t10k-images-idx3-ubyte.gz.part"
    assert part.read_bytes() == data[: len(data) // 2]
    assert not (target / "t10k-images-idx3-ubyte.gz").exists()
    download("mnist", target, base_url=local_server.url, progress=False, retries=0)
    assert (target / "t10k-images-idx3-ubyte.gz").read_bytes() == data
    assert local_server.requested(path) == [None, f"bytes={len(data) // 2}-"]
    assert not part.exists()


def test_server_ignoring_range_restarts_from_scratch(
    tmp_path, local_server, monkeypatch, mnist_files
):
    publish(monkeypatch, local_server, "mnist", mnist_files)
    path = "/mnist/t10k-images-idx3-ubyte.gz"
    local_server.ignore_range.add(path)
    target = tmp_path / "d"
    target.mkdir()
    (target / "t10k-images-idx3-ubyte.gz.part").write_bytes(b"stale bytes from elsewhere")
    download("mnist", target, base_url=local_server.url, progress=False)
    assert (target / "t10k-images-idx3-ubyte.gz").read_bytes() == mnist_files[
        "t10k-images-idx3-ubyte.gz"
    ]
    assert local_server.requested(path) == ["bytes=26-"]


def test_stale_part_that_does_not_verify_is_dropped_then_next_call_succeeds(
    tmp_path, local_server, monkeypatch, mnist_files
):
    publish(monkeypatch, local_server, "mnist", mnist_files)
    target = tmp_path / "d"
    target.mkdir()
    (target / "t10k-labels-idx1-ubyte.gz.part").write_bytes(b"\x00" * 10)
    with pytest.raises(DownloadError, match=r"t10k-labels-idx1-ubyte\.gz.*md5"):
        download("mnist", target, base_url=local_server.url, progress=False)
    assert not (target / "t10k-labels-idx1-ubyte.gz.part").exists()
    download("mnist", target, base_url=local_server.url, progress=False)
    assert (target / "t10k-labels-idx1-ubyte.gz").read_bytes() == mnist_files[
        "t10k-labels-idx1-ubyte.gz"
    ]


def test_http_404_names_the_file(tmp_path, local_server, monkeypatch, mnist_files):
    publish(monkeypatch, local_server, "mnist", mnist_files)
    del local_server.files["/mnist/train-labels-idx1-ubyte.gz"]
    with pytest.raises(DownloadError, match=r"train-labels-idx1-ubyte\.gz.*404"):
        download("mnist", tmp_path / "d", base_url=local_server.url, progress=False)
    assert not (tmp_path / "d" / "train-labels-idx1-ubyte.gz.part").exists()  # nothing received


def test_concurrent_downloads_of_one_dataset_take_turns(
    tmp_path, local_server, monkeypatch, mnist_files
):
    publish(monkeypatch, local_server, "mnist", mnist_files)
    target = tmp_path / "d"
    errors: list[BaseException] = []

    def run() -> None:
        try:
            download("mnist", target, base_url=local_server.url, progress=False)
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert sorted(os.listdir(target)) == sorted(MNIST_NAMES)
    for name in MNIST_NAMES:
        assert (target / name).read_bytes() == mnist_files[name]
        assert len(local_server.requested(f"/mnist/{name}")) == 1


def _tar_gz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_cifar_archive_is_downloaded_extracted_and_read(tmp_path, local_server, monkeypatch):
    src = tmp_path / "published"
    data = make_cifar10(src, per_batch=3, n_test=4)
    folder = src / "cifar-10-batches-py"
    archive = _tar_gz(
        {f"cifar-10-batches-py/{n}": (folder / n).read_bytes() for n in sorted(os.listdir(folder))}
    )
    publish(monkeypatch, local_server, "cifar10", {"cifar-10-python.tar.gz": archive})
    monkeypatch.setenv("DATAFLOW_DATASET_MIRROR", local_server.url)
    ds = Cifar10("test", shuffle=False)
    assert [label for _, label in ds] == data["test"][1]
    root = tmp_path / "dataset_root" / "cifar10_data"
    assert sorted(os.listdir(root)) == ["cifar-10-batches-py", "cifar-10-python.tar.gz"]
    assert len(Cifar10("train")) == 15
    assert len(local_server.requests) == 1


def test_archive_with_escaping_member_is_refused(tmp_path, local_server, monkeypatch):
    archive = _tar_gz({"cifar-10-batches-py/test_batch": b"x", "../escaped.txt": b"evil"})
    publish(monkeypatch, local_server, "cifar10", {"cifar-10-python.tar.gz": archive})
    monkeypatch.setenv("DATAFLOW_DATASET_MIRROR", local_server.url)
    target = tmp_path / "a" / "d"
    with pytest.raises(DownloadError, match=r"cifar-10-python\.tar\.gz.*\.\./escaped\.txt"):
        Cifar10("test", dir=target)
    assert not (tmp_path / "a" / "escaped.txt").exists()
    assert sorted(os.listdir(target)) == ["cifar-10-python.tar.gz"]


def test_dataset_folder_environment_variables(tmp_path, monkeypatch):
    monkeypatch.setenv("DATAFLOW_DATASET", str(tmp_path / "ours"))
    monkeypatch.setenv("TENSORPACK_DATASET", str(tmp_path / "theirs"))
    assert get_dataset_path("mnist_data") == str(tmp_path / "ours" / "mnist_data")
    monkeypatch.delenv("DATAFLOW_DATASET")
    assert get_dataset_path("mnist_data") == str(tmp_path / "theirs" / "mnist_data")
    monkeypatch.delenv("TENSORPACK_DATASET")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert get_dataset_path("x") == str(tmp_path / "home" / "dataflow_data" / "x")
    assert (tmp_path / "home" / "dataflow_data").is_dir()


def test_unknown_dataset_name_lists_the_known_ones():
    with pytest.raises(DataFlowArgumentError, match="imagenet.*cifar10"):
        download("imagenet")

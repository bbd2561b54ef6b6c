"""Resume of the dataset readers and ImageFromFile, on tiny real files the tests write: each
seeks to its position in the pass's (shuffled) order."""

from __future__ import annotations

import pytest

from dataflow import _state
from dataflow.dataset import (
    ILSVRC12,
    Caltech101Silhouettes,
    Cifar10,
    ILSVRC12Files,
    Mnist,
    SVHNDigit,
)
from dataflow.image import ImageFromFile
from resume_check import canon, check_resume
from test_dataset import (
    make_caltech101,
    make_cifar10,
    make_ilsvrc,
    make_mnist,
    make_svhn,
    write_jpeg,
)

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("datasets")
    make_mnist(root / "mnist", n_train=12)
    make_cifar10(root / "cifar", per_batch=3)
    make_svhn(root / "svhn", n=9)
    make_caltech101(root / "caltech")
    data_dir, meta_dir = make_ilsvrc(str(root / "ilsvrc"))
    files = [str(root / "images" / f"{i}.png") for i in range(7)]
    for i, path in enumerate(files):
        write_jpeg(path, (6, 5, 3), seed=i)
    return {"root": root, "ilsvrc": (data_dir, meta_dir), "files": files}


def _ilsvrc(r, cls):
    data_dir, meta_dir = r["ilsvrc"]
    return cls(data_dir, "train", meta_dir=meta_dir, shuffle=True)


READERS = {
    "mnist": lambda r: Mnist("train", dir=str(r["root"] / "mnist")),
    "cifar10": lambda r: Cifar10("train", dir=str(r["root"] / "cifar")),
    "svhn": lambda r: SVHNDigit("train", data_dir=str(r["root"] / "svhn"), shuffle=True),
    "caltech101": lambda r: Caltech101Silhouettes("train", dir=str(r["root"] / "caltech")),
    "ilsvrc12-files": lambda r: _ilsvrc(r, ILSVRC12Files),
    "ilsvrc12": lambda r: _ilsvrc(r, ILSVRC12),
    "image-from-file": lambda r: ImageFromFile(r["files"], channel=3, shuffle=True),
}


@pytest.mark.parametrize("name", sorted(READERS))
def test_dataset_readers_resume_exactly_at_every_k(root, name):
    assert _state.kind(type(READERS[name](root))) == "native"  # seeks, not replays
    check_resume(lambda: READERS[name](root), passes=3)


@pytest.mark.parametrize("name", sorted(READERS))
def test_dataset_readers_shard_by_seeking_and_resume_exactly(root, name):
    from dataflow import ShardByRank, set_seed

    def shard(rank, seeking=True):
        flow = ShardByRank(READERS[name](root), rank=rank, world_size=2)
        if not seeking:
            flow.seeks = lambda: False  # the same pipeline, reading every record
        return flow

    for rank in range(2):
        assert shard(rank).seeks(), name
        set_seed(4)
        got = [canon(dp) for dp in shard(rank)]
        set_seed(4)
        assert got == [canon(dp) for dp in shard(rank, seeking=False)], (name, rank)
    check_resume(lambda: shard(1), passes=2)

"""Resume of the dataset readers (dataflow.dataset) on tiny real files written by the tests, beyond
test_state_datasets.py: the readers and orders it leaves out at every k over 3 passes, and a
resumed pass that decodes only the images left."""

from __future__ import annotations

import pytest

import dataflow
from dataflow import _state
from dataflow.dataset import (
    BSDS500,
    ILSVRC12,
    Caltech101Silhouettes,
    Cifar10,
    Cifar100,
    FashionMnist,
    ILSVRC12Files,
    Mnist,
    Places365Standard,
    SVHNDigit,
    TinyImageNet,
)
from dataflow.dataset import ilsvrc as ilsvrc_module
from resume_check import canon, check_resume, save_after
from test_dataset import (
    WNIDS,
    make_bsds500,
    make_caltech101,
    make_cifar10,
    make_cifar100,
    make_ilsvrc,
    make_mnist,
    make_svhn,
    write_jpeg,
)

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("offline_datasets")]


def make_tiny(root):
    for i, wnid in enumerate(WNIDS[:2]):
        (root / "train").mkdir(parents=True, exist_ok=True)
        for k in range(3):
            write_jpeg(str(root / "train" / wnid / "images" / f"{wnid}_{k}.JPEG"), (8, 8, 3), i)
    (root / "wnids.txt").write_text("\n".join(WNIDS[:2]) + "\n")


def make_places(root):
    lines = []
    for i, cls in enumerate(["beach", "airfield", "beach", "canyon", "airfield"]):
        rel = f"train/{cls}/{i:08d}.jpg"
        write_jpeg(str(root / rel), (8, 8, 3), i)
        lines.append(rel)
    (root / "train.txt").write_text("\n".join(lines) + "\n")


def datasets(d):
    return {
        "mnist": lambda s: Mnist("train", shuffle=s, dir=str(d / "mnist")),
        "fashion-mnist": lambda s: FashionMnist("train", shuffle=s, dir=str(d / "mnist")),
        "cifar10": lambda s: Cifar10("train", shuffle=s, dir=str(d / "cifar10")),
        "cifar100": lambda s: Cifar100("train", shuffle=s, dir=str(d / "cifar100")),
        "svhn": lambda s: SVHNDigit("train", data_dir=str(d / "svhn"), shuffle=s),
        "caltech101": lambda s: Caltech101Silhouettes("train", shuffle=s, dir=str(d / "caltech")),
        "bsds500": lambda s: BSDS500("train", data_dir=str(d / "bsds"), shuffle=s),
        "ilsvrc12": lambda s: ILSVRC12(
            str(d / "ilsvrc" / "imagenet"), "train", meta_dir=str(d / "ilsvrc" / "meta"), shuffle=s
        ),
        "ilsvrc12-files": lambda s: ILSVRC12Files(
            str(d / "ilsvrc" / "imagenet"), "train", meta_dir=str(d / "ilsvrc" / "meta"), shuffle=s
        ),
        "tiny-imagenet": lambda s: TinyImageNet(str(d / "tiny"), "train", shuffle=s),
        "places365": lambda s: Places365Standard(str(d / "places"), "train", shuffle=s),
    }


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    d = tmp_path_factory.mktemp("datasets")
    make_mnist(str(d / "mnist"), n_train=9, n_test=2)
    make_cifar10(str(d / "cifar10"), per_batch=2, n_test=2)
    make_cifar100(str(d / "cifar100"), n_train=7, n_test=2)
    make_svhn(str(d / "svhn"), "train", n=7)
    make_caltech101(str(d / "caltech"))
    make_bsds500(str(d / "bsds"), "train", shapes=((321, 481, 3),) * 3)
    make_ilsvrc(str(d / "ilsvrc"))
    make_tiny(d / "tiny")
    make_places(d / "places")
    return d


# test_state_datasets.py runs the shuffled order of mnist, cifar10, svhn, caltech101, ilsvrc12 and
# ilsvrc12-files; here: the other readers in both orders, and those in file order.
NEW = ["bsds500", "cifar100", "fashion-mnist", "places365", "tiny-imagenet"]
SEEN = ["caltech101", "cifar10", "ilsvrc12", "ilsvrc12-files", "mnist", "svhn"]
CASES = [(n, s) for n in NEW for s in (False, True)] + [(n, False) for n in SEEN]


@pytest.mark.parametrize(("name", "shuffle"), CASES)
def test_datasets_resume_exactly_at_every_k(root, name, shuffle):
    build = datasets(root)[name]
    assert _state.kind(type(build(shuffle))) == "native"
    check_resume(lambda: build(shuffle), passes=3)


@pytest.mark.parametrize("shuffle", [False, True])
def test_a_resumed_ilsvrc12_pass_decodes_only_the_images_left(root, monkeypatch, shuffle):
    build = datasets(root)["ilsvrc12"]
    n = len(build(shuffle))
    dataflow.set_seed(2)
    whole = [canon(dp) for dp in build(shuffle)]
    dataflow.set_seed(2)
    first, state = save_after(build(shuffle), n - 2)
    decoded: list[str] = []
    real = ilsvrc_module.imread
    monkeypatch.setattr(
        ilsvrc_module, "imread", lambda path, who: decoded.append(path) or real(path, who)
    )
    ds = build(shuffle)
    ds.load_state_dict(state)
    rest = [canon(dp) for dp in ds]
    assert first + rest == whole
    assert len(decoded) == 2  # not n: the images before the position are not read again

"""dataflow.dataset readers on tiny datasets written in the exact published on-disk formats.

Each test builds its dataset in tmp_path (IDX gz files with the published magic numbers, CIFAR
pickle batches, .mat files via scipy, image trees with real JPEGs) and checks what the reader yields:
shapes, dtypes, label ranges, len, splits, shuffling and its reproducibility with a seed.
Downloads are tested in test_dataset_download.py. No test touches the network: conftest's
offline_datasets fixture points the dataset folder at tmp_path and every download at a closed
local port.
"""

from __future__ import annotations

import gzip
import inspect
import os
import pickle
import struct
import subprocess
import sys

import cv2
import numpy as np
import pytest
import scipy.io as sio

from dataflow._engine.seeding import set_seed
from dataflow.base import RNGDataFlow
from dataflow.dataset import (
    BSDS500,
    ILSVRC12,
    Caltech101Silhouettes,
    Cifar10,
    Cifar100,
    CifarBase,
    FashionMnist,
    ILSVRC12Files,
    ILSVRCMeta,
    Mnist,
    Places365Standard,
    SVHNDigit,
    TinyImageNet,
)
from dataflow.errors import DataFlowArgumentError, FormatError

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("offline_datasets", "unseeded")]


def _rng(seed=0):
    return np.random.RandomState(seed)


# -- writers of the published formats ------------------------------------------------------------


def write_idx(path, array, compress=True):
    """An IDX file: magic 0x0000 08 NDIM, big-endian uint32 dims, then unsigned bytes."""
    array = np.asarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    opener = gzip.open if compress else open
    with opener(path, "wb") as f:
        f.write(header + array.tobytes())


def make_mnist(directory, n_train=12, n_test=5, seed=0):
    os.makedirs(directory, exist_ok=True)
    rng = _rng(seed)
    data = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.randint(0, 256, size=(n, 28, 28)).astype(np.uint8)
        labels = rng.randint(0, 10, size=n).astype(np.uint8)
        write_idx(os.path.join(directory, f"{prefix}-images-idx3-ubyte.gz"), images)
        write_idx(os.path.join(directory, f"{prefix}-labels-idx1-ubyte.gz"), labels)
        data[prefix] = (images, labels)
    return data


def _cifar_batch(rng, n, label_keys, classes, batch_label):
    images = rng.randint(0, 256, size=(n, 32, 32, 3)).astype(np.uint8)
    batch = {
        b"batch_label": batch_label,
        b"data": images.transpose(0, 3, 1, 2).reshape(n, 3072),  # R, G, B planes per row
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }
    labels = {}
    for key, count in zip(label_keys, classes):
        labels[key] = [int(v) for v in rng.randint(0, count, size=n)]
        batch[key.encode()] = labels[key]
    return batch, images, labels


def make_cifar10(directory, per_batch=4, n_test=6, seed=0, protocol=2):
    folder = os.path.join(directory, "cifar-10-batches-py")
    os.makedirs(folder, exist_ok=True)
    rng = _rng(seed)
    out = {"train": ([], []), "test": ([], [])}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        n = n_test if name == "test_batch" else per_batch
        batch, images, labels = _cifar_batch(rng, n, ["labels"], [10], name.encode())
        with open(os.path.join(folder, name), "wb") as f:
            pickle.dump(batch, f, protocol=protocol)
        split = "test" if name == "test_batch" else "train"
        out[split][0].append(images)
        out[split][1].extend(labels["labels"])
    meta = {
        b"num_cases_per_batch": per_batch,
        b"label_names": [f"class{i}".encode() for i in range(10)],
        b"num_vis": 3072,
    }
    with open(os.path.join(folder, "batches.meta"), "wb") as f:
        pickle.dump(meta, f, protocol=protocol)
    return {k: (np.concatenate(v[0]), v[1]) for k, v in out.items()}


def make_cifar100(directory, n_train=10, n_test=5, seed=0):
    folder = os.path.join(directory, "cifar-100-python")
    os.makedirs(folder, exist_ok=True)
    rng = _rng(seed)
    out = {}
    for name, n in (("train", n_train), ("test", n_test)):
        batch, images, labels = _cifar_batch(
            rng, n, ["fine_labels", "coarse_labels"], [100, 20], name.encode()
        )
        with open(os.path.join(folder, name), "wb") as f:
            pickle.dump(batch, f, protocol=2)
        out[name] = (images, labels["fine_labels"], labels["coarse_labels"])
    meta = {
        b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
        b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)],
    }
    with open(os.path.join(folder, "meta"), "wb") as f:
        pickle.dump(meta, f, protocol=2)
    return out


def make_svhn(directory, name="train", n=7, seed=0):
    os.makedirs(directory, exist_ok=True)
    rng = _rng(seed)
    images = rng.randint(0, 256, size=(32, 32, 3, n)).astype(np.uint8)
    labels = rng.randint(1, 11, size=(n, 1)).astype(np.uint8)  # 10 stands for digit 0
    labels[0, 0] = 10
    sio.savemat(os.path.join(directory, f"{name}_32x32.mat"), {"X": images, "y": labels})
    return images, labels


def make_caltech101(directory, sizes=(("train", 6), ("val", 3), ("test", 4)), seed=0):
    os.makedirs(directory, exist_ok=True)
    rng = _rng(seed)
    content = {"classnames": np.array([f"class{i}" for i in range(101)], dtype=object)}
    for name, n in sizes:
        content[f"{name}_data"] = rng.randint(0, 2, size=(n, 784)).astype(np.float64)
        labels = rng.randint(1, 102, size=(n, 1)).astype(np.float64)
        labels[0, 0], labels[-1, 0] = 1, 101
        content[f"{name}_labels"] = labels
    sio.savemat(os.path.join(directory, "caltech101_silhouettes_28_split1.mat"), content)
    return content


def write_jpeg(path, shape, seed=0):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    image = _rng(seed).randint(0, 256, size=shape).astype(np.uint8)
    assert cv2.imwrite(path, image)
    return image


def make_bsds500(directory, split="train", shapes=((321, 481, 3), (481, 321, 3))):
    root = os.path.join(directory, "BSR", "BSDS500", "data")
    expected = {}
    for i, shape in enumerate(shapes):
        imgid = f"{100 + i}"
        write_jpeg(os.path.join(root, "images", split, imgid + ".jpg"), shape, seed=i)
        h, w = shape[:2]
        n_annot = 2 + i
        cells = np.empty((1, n_annot), dtype=object)
        votes = np.zeros((h, w), np.float32)
        for k in range(n_annot):
            boundaries = (_rng(10 * i + k).rand(h, w) < 0.3).astype(np.uint8)
            votes += boundaries
            cells[0, k] = {
                "Segmentation": np.ones((h, w), np.uint16),
                "Boundaries": boundaries,
            }
        gt_dir = os.path.join(root, "groundTruth", split)
        os.makedirs(gt_dir, exist_ok=True)
        sio.savemat(os.path.join(gt_dir, imgid + ".mat"), {"groundTruth": cells})
        frac = votes / n_annot
        expected[imgid] = frac if h < w else frac.T
    return expected


WNIDS = ["n01440764", "n01443537", "n01484850"]


def _blob_proto(array):
    """A Caffe BlobProto in protobuf wire format: channels(2), height(3), width(4), packed data(5)."""

    def varint(v):
        out = bytearray()
        while True:
            b = v & 0x7F
            v >>= 7
            out.append(b | (0x80 if v else 0))
            if not v:
                return bytes(out)

    c, h, w = array.shape
    data = np.asarray(array, "<f4").tobytes()
    msg = b"".join(varint(k << 3) + varint(v) for k, v in ((1, 1), (2, c), (3, h), (4, w)))
    return msg + varint(5 << 3 | 2) + varint(len(data)) + data


def make_ilsvrc(root, val_structure="original"):
    """An ILSVRC12 tree (train/, val/, test/) with Caffe's meta files; returns (dir, meta_dir)."""
    data_dir = os.path.join(root, "imagenet")
    meta_dir = os.path.join(root, "meta")
    os.makedirs(meta_dir, exist_ok=True)
    with open(os.path.join(meta_dir, "synsets.txt"), "w") as f:
        f.write("".join(w + "\n" for w in WNIDS))
    with open(os.path.join(meta_dir, "synset_words.txt"), "w") as f:
        f.write("".join(f"{w} thing number {i}\n" for i, w in enumerate(WNIDS)))
    train_lines, val_lines, test_lines = [], [], []
    seed = 0
    for label, wnid in enumerate(WNIDS):
        for k in range(2):
            rel = f"{wnid}/{wnid}_{k}.JPEG"
            write_jpeg(os.path.join(data_dir, "train", rel), (20 + k, 30, 3), seed=seed)
            train_lines.append(f"{rel} {label}")
            seed += 1
        val_name = f"ILSVRC2012_val_{label + 1:08d}.JPEG"
        sub = wnid if val_structure == "train" else ""
        write_jpeg(os.path.join(data_dir, "val", sub, val_name), (25, 17, 3), seed=seed)
        val_lines.append(f"{val_name} {label}")
        test_name = f"ILSVRC2012_test_{label + 1:08d}.JPEG"
        write_jpeg(os.path.join(data_dir, "test", test_name), (16, 16, 3), seed=seed + 100)
        test_lines.append(f"{test_name} 0")
        seed += 1
    for name, lines in (("train", train_lines), ("val", val_lines), ("test", test_lines)):
        with open(os.path.join(meta_dir, name + ".txt"), "w") as f:
            f.write("\n".join(lines) + "\n")
    mean = np.arange(3 * 4 * 5, dtype=np.float32).reshape(3, 4, 5)
    with open(os.path.join(meta_dir, "imagenet_mean.binaryproto"), "wb") as f:
        f.write(_blob_proto(mean))
    return data_dir, meta_dir


def _seeded_passes(make, seed=7, passes=2):
    set_seed(seed)
    ds = make()
    return [[_key(dp) for dp in ds] for _ in range(passes)]


def _key(dp):
    return tuple(x.tobytes() if isinstance(x, np.ndarray) else x for x in dp)


def assert_shuffling(make, n):
    """shuffle=True: each pass is a permutation; same seed, same passes; passes differ."""
    first = _seeded_passes(make)
    second = _seeded_passes(make)
    assert first == second
    assert sorted(first[0]) == sorted(first[1]) and len(first[0]) == n
    if n >= 6:
        assert first[0] != first[1]


# -- the tensorpack interface --------------------------------------------------------------------

REQUIRED = inspect.Parameter.empty


@pytest.mark.parametrize(
    ("cls", "params"),
    [
        (Mnist, {"train_or_test": REQUIRED, "shuffle": True, "dir": None}),
        (FashionMnist, {"train_or_test": REQUIRED, "shuffle": True, "dir": None}),
        (
            CifarBase,
            {"train_or_test": REQUIRED, "shuffle": None, "dir": None, "cifar_classnum": 10},
        ),
        (Cifar10, {"train_or_test": REQUIRED, "shuffle": None, "dir": None}),
        (Cifar100, {"train_or_test": REQUIRED, "shuffle": None, "dir": None}),
        (SVHNDigit, {"name": REQUIRED, "data_dir": None, "shuffle": True}),
        (BSDS500, {"name": REQUIRED, "data_dir": None, "shuffle": True}),
        (Caltech101Silhouettes, {"name": REQUIRED, "shuffle": True, "dir": None}),
        (ILSVRCMeta, {"dir": None}),
        (
            ILSVRC12Files,
            {"dir": REQUIRED, "name": REQUIRED, "meta_dir": None, "shuffle": None}
            | {"dir_structure": None},
        ),
        (
            ILSVRC12,
            {"dir": REQUIRED, "name": REQUIRED, "meta_dir": None, "shuffle": None}
            | {"dir_structure": None},
        ),
        (TinyImageNet, {"dir": REQUIRED, "name": REQUIRED, "shuffle": None}),
        (Places365Standard, {"dir": REQUIRED, "name": REQUIRED, "shuffle": None}),
    ],
)
def test_signatures_and_defaults_follow_tensorpack(cls, params):
    sig = list(inspect.signature(cls).parameters.values())
    assert {p.name: p.default for p in sig[: len(params)]} == params
    assert [p.name for p in sig[: len(params)]] == list(params)
    # anything we added comes after tensorpack's arguments and is keyword-only
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in sig[len(params) :])
    if cls is not ILSVRCMeta:
        assert issubclass(cls, RNGDataFlow)


# -- MNIST / Fashion-MNIST -----------------------------------------------------------------------


def test_mnist_reads_idx_files_with_documented_shapes_dtypes_and_ranges(tmp_path):
    data = make_mnist(tmp_path, n_train=12, n_test=5)
    for split, prefix in (("train", "train"), ("test", "t10k")):
        ds = Mnist(split, shuffle=False, dir=str(tmp_path))
        assert isinstance(ds, RNGDataFlow)
        images, labels = data[prefix]
        assert len(ds) == len(images)
        out = list(ds)
        assert len(out) == len(images)
        for k, (img, label) in enumerate(out):
            assert img.shape == (28, 28) and img.dtype == np.float32
            assert 0.0 <= img.min() and img.max() <= 1.0
            np.testing.assert_array_equal(img, images[k].astype(np.float32) / 255.0)
            assert isinstance(label, np.uint8) and label == labels[k] and 0 <= label <= 9


def test_mnist_header_magic_numbers_are_the_published_ones(tmp_path):
    make_mnist(tmp_path)
    with gzip.open(tmp_path / "train-images-idx3-ubyte.gz") as f:
        assert struct.unpack(">I", f.read(4))[0] == 2051
    with gzip.open(tmp_path / "train-labels-idx1-ubyte.gz") as f:
        assert struct.unpack(">I", f.read(4))[0] == 2049


def test_mnist_shuffle_is_default_and_reproducible_with_seed(tmp_path):
    make_mnist(tmp_path, n_train=12)
    assert Mnist("train", dir=tmp_path).shuffle is True
    assert_shuffling(lambda: Mnist("train", dir=tmp_path), 12)


def test_mnist_datapoints_own_their_arrays(tmp_path):
    make_mnist(tmp_path)
    ds = Mnist("test", shuffle=False, dir=tmp_path)
    first = next(iter(ds))[0]
    first[:] = -1
    assert next(iter(ds))[0].min() >= 0


def test_mnist_reads_uncompressed_idx_when_gz_is_absent(tmp_path):
    data = make_mnist(tmp_path)
    for name in os.listdir(tmp_path):
        os.remove(tmp_path / name)
    images, labels = data["t10k"]
    write_idx(tmp_path / "t10k-images-idx3-ubyte", images, compress=False)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", labels, compress=False)
    out = list(Mnist("test", shuffle=False, dir=tmp_path))
    assert [int(lbl) for _, lbl in out] == labels.tolist()


def test_mnist_bad_magic_and_truncated_files_name_the_file(tmp_path):
    data = make_mnist(tmp_path)
    images, labels = data["t10k"]
    # labels written where images belong: 1 dimension, magic 2049
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", labels)
    with pytest.raises(FormatError, match=r"t10k-images-idx3-ubyte\.gz.*2049.*expected 3"):
        Mnist("test", dir=tmp_path)
    raw = bytes([0, 0, 8, 3]) + struct.pack(">3I", *images.shape) + images.tobytes()[:-10]
    with gzip.open(tmp_path / "t10k-images-idx3-ubyte.gz", "wb") as f:
        f.write(raw)
    with pytest.raises(FormatError, match=r"t10k-images-idx3-ubyte\.gz.*truncated"):
        Mnist("test", dir=tmp_path)
    good = gzip.compress(bytes([0, 0, 8, 3]) + struct.pack(">3I", *images.shape) + images.tobytes())
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(good[: len(good) // 2])
    with pytest.raises(FormatError, match=r"t10k-images-idx3-ubyte\.gz"):
        Mnist("test", dir=tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"\x08\x03\x00\x00rest"))
    with pytest.raises(FormatError, match=r"not an IDX file"):
        Mnist("test", dir=tmp_path)


def test_mnist_images_and_labels_count_mismatch(tmp_path):
    data = make_mnist(tmp_path, n_test=5)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", data["t10k"][1][:4])
    with pytest.raises(FormatError, match="5 images but .* 4 labels"):
        Mnist("test", dir=tmp_path)


def test_mnist_argument_errors_name_the_argument(tmp_path):
    with pytest.raises(DataFlowArgumentError, match="train_or_test"):
        Mnist("val", dir=tmp_path)
    with pytest.raises(DataFlowArgumentError, match="dir"):
        Mnist("train", dir=3.5)


def test_fashion_mnist_same_format_and_label_names(tmp_path):
    make_mnist(tmp_path, n_train=6, n_test=3)
    ds = FashionMnist("test", shuffle=False, dir=tmp_path)
    assert len(ds) == 3
    img, label = next(iter(ds))
    assert img.shape == (28, 28) and img.dtype == np.float32
    names = ds.get_label_names()
    assert len(names) == 10 and names[0] == "T-shirt/top" and names[9] == "Ankle boot"


def test_mnist_default_dir_follows_env(tmp_path, monkeypatch):
    root = tmp_path / "root_for_env"
    make_mnist(root / "mnist_data")
    monkeypatch.setenv("DATAFLOW_DATASET", str(root))
    assert len(Mnist("train", shuffle=False)) == 12
    monkeypatch.delenv("DATAFLOW_DATASET")
    monkeypatch.setenv("TENSORPACK_DATASET", str(root))
    assert len(Mnist("test", shuffle=False)) == 5


# -- CIFAR ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_cifar10_reads_pickle_batches(tmp_path, protocol):
    data = make_cifar10(tmp_path, per_batch=4, n_test=6, protocol=protocol)
    train = Cifar10("train", dir=str(tmp_path), shuffle=False)
    test = Cifar10("test", dir=tmp_path)
    assert len(train) == 20 and len(test) == 6
    assert train.shuffle is False and test.shuffle is False
    assert Cifar10("train", dir=tmp_path).shuffle is True  # tensorpack: shuffle the train split
    out = list(train)
    images, labels = data["train"]
    for k, (img, label) in enumerate(out):
        assert img.shape == (32, 32, 3) and img.dtype == np.uint8
        np.testing.assert_array_equal(img, images[k])  # planes became HWC, RGB order kept
        assert type(label) is int and label == labels[k] and 0 <= label < 10
    assert [lbl for _, lbl in test] == data["test"][1]
    assert train.get_label_names() == [f"class{i}" for i in range(10)]


def test_cifar10_means(tmp_path):
    data = make_cifar10(tmp_path)
    ds = Cifar10("test", dir=tmp_path)
    both = np.concatenate([data["train"][0], data["test"][0]]).astype(np.float64)
    mean = ds.get_per_pixel_mean()
    assert mean.shape == (32, 32, 3) and mean.dtype == np.float32
    np.testing.assert_allclose(mean, both.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(
        ds.get_per_pixel_mean(("train",)), data["train"][0].mean(axis=0), rtol=1e-6
    )
    channel = ds.get_per_channel_mean()
    assert channel.shape == (3,)
    np.testing.assert_allclose(channel, both.mean(axis=(0, 1, 2)), rtol=1e-5)
    with pytest.raises(DataFlowArgumentError, match="names"):
        ds.get_per_pixel_mean(("val",))


def test_cifar10_shuffle_reproducible_with_seed(tmp_path):
    make_cifar10(tmp_path)
    assert_shuffling(lambda: Cifar10("train", dir=tmp_path), 20)


def test_cifar100_fine_labels_by_default_and_coarse_on_request(tmp_path):
    data = make_cifar100(tmp_path, n_train=10, n_test=5)
    train = Cifar100("train", dir=tmp_path, shuffle=False)
    assert len(train) == 10 and len(Cifar100("test", dir=tmp_path)) == 5
    images, fine, coarse = data["train"]
    out = list(train)
    assert all(len(dp) == 2 for dp in out)
    assert [lbl for _, lbl in out] == fine and all(0 <= v < 100 for v in fine)
    np.testing.assert_array_equal(np.stack([img for img, _ in out]), images)
    assert train.get_label_names() == [f"fine{i}" for i in range(100)]
    both = list(Cifar100("train", dir=tmp_path, shuffle=False, coarse_label=True))
    assert [dp[1] for dp in both] == fine and [dp[2] for dp in both] == coarse
    assert all(0 <= v < 20 for v in coarse)
    assert train.get_coarse_label_names() == [f"coarse{i}" for i in range(20)]


def test_cifar_reads_files_written_by_numpy_1_and_python_2_names(tmp_path):
    make_cifar10(tmp_path, protocol=2)
    batch = tmp_path / "cifar-10-batches-py" / "test_batch"
    raw = batch.read_bytes()
    assert b"numpy._core.multiarray" in raw
    batch.write_bytes(raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    assert len(list(Cifar10("test", dir=tmp_path))) == 6


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_cifar_malicious_pickle_cannot_execute_code(tmp_path):
    make_cifar10(tmp_path)
    marker = tmp_path / "pwned"
    evil = _Evil()
    evil.marker = marker
    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "wb") as f:
        pickle.dump({b"data": evil, b"labels": [0]}, f, protocol=2)
    with pytest.raises(FormatError, match=r"test_batch.*(posix|os)\.system"):
        Cifar10("test", dir=tmp_path)
    assert not marker.exists()


def test_cifar_bad_batches_name_the_file(tmp_path):
    make_cifar10(tmp_path)
    folder = tmp_path / "cifar-10-batches-py"
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 3072), np.uint8)}, f, protocol=2)
    with pytest.raises(FormatError, match=r"test_batch.*labels"):
        Cifar10("test", dir=tmp_path)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, f, protocol=2)
    with pytest.raises(FormatError, match=r"test_batch.*10"):
        Cifar10("test", dir=tmp_path)
    (folder / "test_batch").write_bytes(b"\x80\x02}q\x00(X")  # truncated pickle
    with pytest.raises(FormatError, match="test_batch"):
        Cifar10("test", dir=tmp_path)
    os.remove(folder / "data_batch_3")
    with pytest.raises(FormatError, match="data_batch_3"):
        Cifar10("train", dir=tmp_path)


# -- SVHN / Caltech101 / BSDS500 (.mat) ----------------------------------------------------------


def test_svhn_reads_mat_and_maps_ten_to_zero(tmp_path):
    images, labels = make_svhn(tmp_path, "train", n=7)
    make_svhn(tmp_path, "test", n=3, seed=1)
    ds = SVHNDigit("train", data_dir=str(tmp_path), shuffle=False)
    assert len(ds) == 7 and len(SVHNDigit("test", tmp_path)) == 3
    out = list(ds)
    for k, (img, label) in enumerate(out):
        assert img.shape == (32, 32, 3) and img.dtype == np.uint8
        np.testing.assert_array_equal(img, images[..., k])
        assert isinstance(label, np.uint8) and 0 <= label <= 9
        assert label == labels[k, 0] % 10
    assert out[0][1] == 0
    mean = SVHNDigit.get_per_pixel_mean(("train", "test"), data_dir=tmp_path)
    every = np.concatenate(
        [
            images.transpose(3, 0, 1, 2),
            sio.loadmat(tmp_path / "test_32x32.mat")["X"].transpose(3, 0, 1, 2),
        ]
    )
    assert mean.shape == (32, 32, 3)
    np.testing.assert_allclose(mean, every.mean(axis=0))
    assert_shuffling(lambda: SVHNDigit("train", tmp_path), 7)


def test_svhn_malformed_mat_names_the_file(tmp_path):
    sio.savemat(tmp_path / "train_32x32.mat", {"X": np.zeros((32, 32, 3, 2), np.uint8)})
    with pytest.raises(FormatError, match=r"train_32x32\.mat.*'y'"):
        SVHNDigit("train", tmp_path)
    with pytest.raises(DataFlowArgumentError, match="name"):
        SVHNDigit("validation", tmp_path)


def test_caltech101_silhouettes_splits(tmp_path):
    content = make_caltech101(tmp_path)
    for name, n in (("train", 6), ("val", 3), ("test", 4)):
        ds = Caltech101Silhouettes(name, shuffle=False, dir=str(tmp_path))
        assert len(ds) == n
        out = list(ds)
        for k, (img, label) in enumerate(out):
            assert img.shape == (28, 28) and img.dtype == np.float32
            assert set(np.unique(img)) <= {0.0, 1.0}
            np.testing.assert_array_equal(img, content[f"{name}_data"][k].reshape(28, 28))
            assert type(label) is int and 0 <= label <= 100
            assert label == content[f"{name}_labels"][k, 0] - 1
        assert out[0][1] == 0 and out[-1][1] == 100
    assert_shuffling(lambda: Caltech101Silhouettes("train", dir=tmp_path), 6)


def test_bsds500_images_and_edge_fractions(tmp_path):
    expected = make_bsds500(tmp_path, "train")
    make_bsds500(tmp_path, "val", shapes=((321, 481, 3),))
    ds = BSDS500("train", data_dir=str(tmp_path), shuffle=False)
    assert len(ds) == 2 and len(BSDS500("val", tmp_path)) == 1
    out = list(ds)
    for (img, label), imgid in zip(out, sorted(expected)):
        assert img.shape == (321, 481, 3) and img.dtype == np.uint8
        assert label.shape == (321, 481) and label.dtype == np.float32
        assert 0.0 <= label.min() and label.max() <= 1.0
        np.testing.assert_allclose(label, expected[imgid], atol=1e-6)
    assert_shuffling(lambda: BSDS500("train", tmp_path), 2)


def test_bsds500_missing_annotation_names_the_file(tmp_path):
    make_bsds500(tmp_path, "test", shapes=((321, 481, 3),))
    os.remove(tmp_path / "BSR" / "BSDS500" / "data" / "groundTruth" / "test" / "100.mat")
    with pytest.raises(FormatError, match=r"100\.mat"):
        BSDS500("test", tmp_path)


# -- ILSVRC12 ------------------------------------------------------------------------------------


def test_ilsvrc_meta(tmp_path):
    _, meta_dir = make_ilsvrc(tmp_path)
    meta = ILSVRCMeta(meta_dir)
    assert meta.get_synset_1000() == dict(enumerate(WNIDS))
    assert meta.get_synset_words_1000()[1] == f"{WNIDS[1]} thing number 1"
    assert meta.get_image_list("val")[0] == ("ILSVRC2012_val_00000001.JPEG", 0)
    assert meta.get_image_list("val", "train")[2] == (
        os.path.join(WNIDS[2], "ILSVRC2012_val_00000003.JPEG"),
        2,
    )
    assert meta.get_image_list("train")[0] == (f"{WNIDS[0]}/{WNIDS[0]}_0.JPEG", 0)
    mean = meta.get_per_pixel_mean()
    assert mean.shape == (4, 5, 3) and mean.dtype == np.float32
    np.testing.assert_array_equal(
        mean, np.arange(60, dtype=np.float32).reshape(3, 4, 5).transpose(1, 2, 0)
    )
    assert meta.get_per_pixel_mean((8, 10)).shape == (8, 10, 3)
    with pytest.raises(DataFlowArgumentError, match="dir_structure"):
        meta.get_image_list("val", "flat")


def test_ilsvrc12_train_val_test_layouts(tmp_path):
    data_dir, meta_dir = make_ilsvrc(tmp_path)
    train = ILSVRC12(data_dir, "train", meta_dir=meta_dir, shuffle=False)
    assert len(train) == 6 and ILSVRC12(data_dir, "train", meta_dir=meta_dir).shuffle is True
    out = list(train)
    for k, (img, label) in enumerate(out):
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
        assert img.shape[:2] == (20 + k % 2, 30)
        assert label == k // 2 and 0 <= label < 1000
    val = ILSVRC12(data_dir, "val", meta_dir=meta_dir)
    assert val.shuffle is False and val.dir_structure == "original"
    assert [lbl for _, lbl in val] == [0, 1, 2]
    paths = [path for path, _ in ILSVRC12Files(data_dir, "val", meta_dir=meta_dir)]
    for (img, _), path in zip(val, paths):
        np.testing.assert_array_equal(img, cv2.imread(path, cv2.IMREAD_COLOR))  # BGR, as imread
    test = ILSVRC12(data_dir, "test", meta_dir=meta_dir)
    assert [img.shape for img, _ in test] == [(16, 16, 3)] * 3
    assert_shuffling(lambda: ILSVRC12(data_dir, "train", meta_dir=meta_dir), 6)


def test_ilsvrc12_guesses_train_structure_for_val(tmp_path):
    data_dir, meta_dir = make_ilsvrc(tmp_path, val_structure="train")
    assert ILSVRCMeta.guess_dir_structure(os.path.join(data_dir, "val")) == "train"
    assert ILSVRCMeta.guess_dir_structure(os.path.join(data_dir, "test")) == "original"
    files = ILSVRC12Files(data_dir, "val", meta_dir=meta_dir)
    assert files.dir_structure == "train"
    out = list(files)
    assert [lbl for _, lbl in out] == [0, 1, 2]
    for (path, _), wnid in zip(out, WNIDS):
        assert isinstance(path, str) and os.path.isfile(path)
        assert os.path.basename(os.path.dirname(path)) == wnid
    # the wrong structure, forced: a clear error naming a missing file
    with pytest.raises(FormatError, match=r"ILSVRC2012_val_00000001\.JPEG.*original"):
        ILSVRC12Files(data_dir, "val", meta_dir=meta_dir, dir_structure="original")


def test_ilsvrc12_errors(tmp_path):
    data_dir, meta_dir = make_ilsvrc(tmp_path)
    with pytest.raises(DataFlowArgumentError, match="name"):
        ILSVRC12(data_dir, "validation", meta_dir=meta_dir)
    with pytest.raises(DataFlowArgumentError, match="dir"):
        ILSVRC12(str(tmp_path / "nope"), "train", meta_dir=meta_dir)
    bad = os.path.join(data_dir, "val", "ILSVRC2012_val_00000002.JPEG")
    with open(bad, "wb") as f:
        f.write(b"not a jpeg")
    with pytest.raises(FormatError, match="ILSVRC2012_val_00000002"):
        list(ILSVRC12(data_dir, "val", meta_dir=meta_dir))
    with open(os.path.join(meta_dir, "val.txt"), "a") as f:
        f.write("broken-line-without-label\n")
    with pytest.raises(FormatError, match=r"val\.txt:4"):
        ILSVRCMeta(meta_dir).get_image_list("val")


def test_ilsvrc12_training_bbox(tmp_path):
    bbox_dir = tmp_path / "bbox"
    (bbox_dir / WNIDS[0]).mkdir(parents=True)
    (bbox_dir / WNIDS[0] / f"{WNIDS[0]}_0.xml").write_text(
        "<annotation><size><width>30</width><height>20</height></size><object><name>x</name>"
        "<bndbox><xmin>1</xmin><ymin>2</ymin><xmax>13</xmax><ymax>14</ymax></bndbox>"
        "</object></annotation>"
    )
    imglist = [(f"{WNIDS[0]}/{WNIDS[0]}_0.JPEG", 0), (f"{WNIDS[0]}/{WNIDS[0]}_1.JPEG", 0)]
    boxes = ILSVRC12.get_training_bbox(str(bbox_dir), imglist)
    assert boxes[1] is None
    np.testing.assert_array_equal(boxes[0], np.array([1, 2, 13, 14], np.float32))
    assert boxes[0].dtype == np.float32


def test_tiny_imagenet_and_places(tmp_path):
    tiny = tmp_path / "tiny"
    (tiny).mkdir()
    (tiny / "wnids.txt").write_text("\n".join(WNIDS[:2]) + "\n")
    for i, wnid in enumerate(WNIDS[:2]):
        for k in range(2):
            write_jpeg(str(tiny / "train" / wnid / "images" / f"{wnid}_{k}.JPEG"), (64, 64, 3), i)
    write_jpeg(str(tiny / "val" / "images" / "val_0.JPEG"), (64, 64, 3))
    (tiny / "val" / "val_annotations.txt").write_text(f"val_0.JPEG\t{WNIDS[1]}\t0\t0\t9\t9\n")
    train = TinyImageNet(str(tiny), "train", shuffle=False)
    assert len(train) == 4 and [lbl for _, lbl in train] == [0, 0, 1, 1]
    img, label = next(iter(TinyImageNet(tiny, "val")))
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8 and label == 1

    places = tmp_path / "places"
    lines = []
    for i, cls in enumerate(["beach", "airfield", "beach"]):
        rel = f"train/{cls}/{i:08d}.jpg"
        write_jpeg(str(places / rel), (8, 8, 3), i)
        lines.append(rel)
    (places / "train.txt").write_text("\n".join(lines) + "\n")
    ds = Places365Standard(str(places), "train", shuffle=False)
    assert ds.get_label_names() == ["airfield", "beach"]
    assert len(ds) == 3 and [lbl for _, lbl in ds] == [1, 0, 1]
    assert_shuffling(lambda: Places365Standard(places, "train"), 3)


# -- optional dependencies -----------------------------------------------------------------------


def test_importing_dataflow_dataset_needs_neither_scipy_nor_opencv():
    probe = (
        "import sys, dataflow.dataset as d; print(len(d.__all__)); "
        "print([m for m in ('scipy', 'cv2') if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.split("\n")[1] == "[]"


def test_missing_scipy_or_opencv_is_a_clear_import_error(tmp_path, monkeypatch):
    make_svhn(tmp_path)
    data_dir, meta_dir = make_ilsvrc(tmp_path)
    monkeypatch.setitem(sys.modules, "scipy.io", None)
    with pytest.raises(ImportError, match="SVHNDigit.*pip install scipy"):
        SVHNDigit("train", tmp_path)
    with pytest.raises(ImportError, match="BSDS500.*scipy"):
        BSDS500("train", tmp_path)
    monkeypatch.setitem(sys.modules, "cv2", None)
    with pytest.raises(ImportError, match=r"ILSVRC12.*pydataflow\[image\]"):
        ILSVRC12(data_dir, "val", meta_dir=meta_dir)
    assert len(ILSVRC12Files(data_dir, "val", meta_dir=meta_dir)) == 3  # needs no decoder

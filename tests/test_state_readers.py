"""Resume of the file readers: LMDB (ours, tensorpack-style keys, a plain database), HDF5 and
SVMlight, written by the test; each seeks to its position instead of re-reading the pass."""

from __future__ import annotations

import h5py
import lmdb
import numpy as np
import pytest

import dataflow
from dataflow import (
    DataFromList,
    DiskCacheSerializer,
    HDF5Data,
    HDF5Serializer,
    LMDBData,
    LMDBSerializer,
    NumpySerializer,
    SVMLightData,
    TFRecordSerializer,
    codec,
)
from resume_check import check_resume, save_after

pytestmark = pytest.mark.timeout(120)

N = 23


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("readers")
    dps = [[np.arange(3, dtype=np.int32) + i, i] for i in range(N)]
    ours = str(root / "ours.lmdb")
    LMDBSerializer.save(DataFromList(dps, shuffle=False), ours)
    plain = str(root / "plain")
    env = lmdb.open(plain, subdir=True, map_size=1 << 24)
    with env.begin(write=True) as txn:
        for i in range(N):
            txn.put(f"k{i * 7 % 100:03d}".encode(), str(i).encode())
    env.close()
    h5 = str(root / "data.h5")
    with h5py.File(h5, "w") as f:
        f["x"] = np.arange(N * 2, dtype=np.float32).reshape(N, 2)
        f["y"] = np.arange(N, dtype=np.int64)
    for name, ser in (("npz", NumpySerializer), ("tfrecord", TFRecordSerializer)):
        ser.save(DataFromList(dps, shuffle=False), str(root / name))
    HDF5Serializer.save(
        DataFromList([[np.float32(i), i] for i in range(N)], shuffle=False),
        str(root / "ser.h5"),
        ["a", "b"],
    )
    DiskCacheSerializer.save(DataFromList(dps, shuffle=False), str(root / "cache"))
    svm = root / "data.svm"
    svm.write_text("".join(f"{i % 3} 1:{i} 4:{i / 2}\n" for i in range(N)))
    return {"ours": ours, "plain": plain, "h5": h5, "svm": str(svm), "root": root}


READERS = {
    "lmdb-data": lambda f: LMDBData(f["ours"], shuffle=False),
    "lmdb-data-shuffle": lambda f: LMDBData(f["ours"], shuffle=True),
    "lmdb-plain": lambda f: LMDBData(f["plain"], shuffle=False),
    "lmdb-plain-shuffle": lambda f: LMDBData(f["plain"], shuffle=True),
    "serializer": lambda f: LMDBSerializer.load(f["ours"], shuffle=False),
    "serializer-shuffle": lambda f: LMDBSerializer.load(f["ours"], shuffle=True),
    "serializer-verify": lambda f: LMDBSerializer.load(f["ours"], shuffle=True, verify=True),
    "hdf5": lambda f: HDF5Data(f["h5"], ["x", "y"], shuffle=False),
    "hdf5-shuffle": lambda f: HDF5Data(f["h5"], ["x", "y"], shuffle=True),
    "svmlight": lambda f: SVMLightData(f["svm"], shuffle=True),
    "numpy": lambda f: NumpySerializer.load(str(f["root"] / "npz"), shuffle=True),
    "tfrecord": lambda f: TFRecordSerializer.load(str(f["root"] / "tfrecord")),
    "hdf5-serializer": lambda f: HDF5Serializer.load(str(f["root"] / "ser.h5"), ["a", "b"]),
    "diskcache": lambda f: DiskCacheSerializer.load(str(f["root"] / "cache"), shuffle=True),
}


@pytest.mark.parametrize("name", sorted(READERS))
def test_readers_resume_exactly_at_every_k(files, name):
    check_resume(lambda: READERS[name](files), passes=3)


@pytest.mark.parametrize("shuffle", [False, True])
def test_lmdb_resume_decodes_only_what_is_left(files, monkeypatch, shuffle):
    dataflow.set_seed(3)
    _, state = save_after(LMDBSerializer.load(files["ours"], shuffle=shuffle), 20)
    decoded = []
    real = codec.decoder

    def counting(**kw):
        decode = real(**kw)

        def count(v):
            decoded.append(1)
            return decode(v)

        return count

    monkeypatch.setattr(codec, "decoder", counting)
    ds = LMDBSerializer.load(files["ours"], shuffle=shuffle)
    ds.load_state_dict(state)
    assert len(list(ds)) == N - 20
    assert len(decoded) == N - 20  # the 20 read before were not read again


def test_tfrecord_resume_seeks_to_the_byte_offset(files):
    _, state = save_after(TFRecordSerializer.load(str(files["root"] / "tfrecord")), 9)
    node = state["pipeline"]
    assert node["state"]["n"] == 9 and node["state"]["offset"] > 0


@pytest.mark.parametrize("name", sorted(READERS))
def test_every_reader_seeks_rather_than_replays(files, name):
    from dataflow import _state

    assert _state.kind(type(READERS[name](files))) == "native"

"""dataflow.format: LMDB, HDF5, SVMlight and Caffe readers, handles opened in reset_state (fork and
spawn safe), optional dependencies that fail only when used."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import subprocess
import sys
from pathlib import Path

import h5py
import lmdb
import numpy as np
import pytest

from dataflow import codec
from dataflow.errors import DataFlowArgumentError, FormatError
from dataflow.format import (
    CaffeLMDB,
    HDF5Data,
    LMDBData,
    LMDBDataDecoder,
    SVMLightData,
    parse_caffe_datum,
)
from dataflow.raw import DataFromList
from dataflow.serialize import LMDBSerializer
from test_codec import assert_same

FORK = multiprocessing.get_context("fork")
SPAWN = multiprocessing.get_context("spawn")


def test_public_names_match_tensorpack():
    import dataflow.format as fmt

    assert set(fmt.__all__) == {
        "HDF5Data",
        "LMDBData",
        "LMDBDataDecoder",
        "CaffeLMDB",
        "SVMLightData",
    }


def write_plain_lmdb(path: str, items: dict[bytes, bytes], subdir: bool = False) -> None:
    env = lmdb.open(path, subdir=subdir, map_size=1 << 24, lock=False)
    with env.begin(write=True) as txn:
        for k, v in items.items():
            txn.put(k, v)
    env.close()


@pytest.fixture
def saved_lmdb(tmp_path: Path) -> str:
    path = str(tmp_path / "s.lmdb")
    LMDBSerializer.save(DataFromList([[i, np.full(3, i)] for i in range(40)], shuffle=False), path)
    return path


# -- LMDBData ---------------------------------------------------------------------------------


def test_lmdbdata_yields_raw_pairs_without_bookkeeping_keys(saved_lmdb: str):
    ds = LMDBData(saved_lmdb, shuffle=False)
    assert len(ds) == 40
    pairs = list(ds)
    assert [k for k, _ in pairs] == [b"%08d" % i for i in range(40)]
    assert all(type(k) is bytes and type(v) is bytes for k, v in pairs)
    assert_same([7, np.full(3, 7)], codec.loads(pairs[7][1]))
    shuffled = list(LMDBData(saved_lmdb, shuffle=True))
    assert [k for k, _ in shuffled] != [k for k, _ in pairs]
    assert sorted(shuffled) == pairs


def test_lmdbdata_reads_any_lmdb_and_finds_keys_by_traversal(tmp_path: Path):
    path = str(tmp_path / "plain")
    items = {f"key{i:03}".encode(): f"value{i}".encode() for i in range(25)}
    write_plain_lmdb(path, items, subdir=True)
    ds = LMDBData(path, shuffle=True)  # no key list stored: found by one traversal
    assert len(ds) == 25 and sorted(ds.keys) == sorted(items)
    assert dict(map(tuple, ds)) == items
    assert dict(map(tuple, LMDBData(path, shuffle=False))) == items


def test_lmdbdata_keys_argument(tmp_path: Path, saved_lmdb: str):
    fmt_keys = LMDBData(saved_lmdb, shuffle=True, keys="{:08d}")
    assert sorted(k for k, _ in fmt_keys) == [b"%08d" % i for i in range(40)]
    some = LMDBData(saved_lmdb, shuffle=True, keys=["00000003", b"00000005"])
    assert len(some) == 2 and sorted(k for k, _ in some) == [b"00000003", b"00000005"]
    missing = LMDBData(saved_lmdb, shuffle=True, keys=[b"nope"])
    with pytest.raises(FormatError, match="nope"):
        list(missing)
    with pytest.raises(DataFlowArgumentError, match="keys"):
        LMDBData(saved_lmdb, keys=5)
    with pytest.raises(DataFlowArgumentError, match="keys\\[0\\]"):
        LMDBData(saved_lmdb, keys=[1])


def test_lmdbdata_argument_and_file_errors(tmp_path: Path):
    with pytest.raises(DataFlowArgumentError, match="no such file"):
        LMDBData(str(tmp_path / "missing"))
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(DataFlowArgumentError, match="without data.mdb"):
        LMDBData(str(tmp_path / "empty_dir"))
    junk = tmp_path / "junk"
    junk.write_bytes(b"not an lmdb at all" * 1000)
    with pytest.raises(FormatError, match="junk"):
        LMDBData(str(junk))
    with pytest.raises(DataFlowArgumentError, match="lmdb_path"):
        LMDBData(42)


def test_lmdb_truncated_file_is_refused_not_crashed(saved_lmdb: str, tmp_path: Path):
    data = Path(saved_lmdb).read_bytes()
    cut = tmp_path / "cut"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(FormatError, match="truncated|not a readable"):
        LMDBData(str(cut))


def test_lmdb_handles_open_in_reset_state_and_are_shared_per_file(saved_lmdb: str):
    a = LMDBData(saved_lmdb, shuffle=False)
    b = LMDBSerializer.load(saved_lmdb, shuffle=False)
    assert a._env is None and b._env is None  # the constructors closed what they opened
    assert len(list(a)) == 40 and len(list(b)) == 40  # one file, one env per process, shared
    assert a._env is b._env
    a.close()
    assert len(list(b)) == 40
    b.close()


def _iterate_in_child(ds, queue) -> None:
    try:
        queue.put(("ok", [dp[0] for dp in ds]))
    except BaseException as e:
        queue.put(("error", repr(e)))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("ctx", [FORK, SPAWN], ids=["fork", "spawn"])
def test_lmdb_reader_reset_in_the_parent_works_in_a_child(saved_lmdb: str, ctx):
    ds = LMDBSerializer.load(saved_lmdb, shuffle=False)
    expected = [dp[0] for dp in ds]  # the parent has the database open
    queue = ctx.Queue()
    proc = ctx.Process(target=_iterate_in_child, args=(ds, queue))
    proc.start()
    status, result = queue.get(timeout=50)
    proc.join(10)
    assert status == "ok", result
    assert result == expected == list(range(40))
    assert [dp[0] for dp in ds] == expected  # the parent's handle is untouched by the child


def test_lmdbdatadecoder_applies_the_decoder_and_drops_nones(saved_lmdb: str):
    def decoder(k, v):
        dp = codec.loads(v)
        return None if dp[0] % 2 else [k, dp[0]]

    ds = LMDBDataDecoder(LMDBData(saved_lmdb, shuffle=False), decoder)
    assert len(ds) == 40  # as tensorpack: len is the upstream's
    assert list(ds) == [[b"%08d" % i, i] for i in range(0, 40, 2)]
    with pytest.raises(DataFlowArgumentError, match="decoder"):
        LMDBDataDecoder(LMDBData(saved_lmdb), "not callable")


def test_lmdbdata_skips_a_tensorpack_keys_entry(tmp_path: Path):
    path = str(tmp_path / "tp")
    keys = [b"00000000", b"00000001"]
    items = {k: pickle.dumps([i]) for i, k in enumerate(keys)}
    items[b"__keys__"] = pickle.dumps(keys)
    write_plain_lmdb(path, items)
    ds = LMDBData(path, shuffle=False)
    assert len(ds) == 2 and [k for k, _ in ds] == keys


# -- Caffe ------------------------------------------------------------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    n &= (1 << 64) - 1
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def caffe_datum(c: int, h: int, w: int, data: bytes, label: int, floats=None) -> bytes:
    """A caffe.Datum protobuf, encoded by hand (fields 1-7 of caffe.proto)."""
    msg = b"\x08" + _varint(c) + b"\x10" + _varint(h) + b"\x18" + _varint(w)
    if data:
        msg += b"\x22" + _varint(len(data)) + data
    msg += b"\x28" + _varint(label)
    if floats is not None:
        packed = np.asarray(floats, "<f4").tobytes()
        msg += b"\x32" + _varint(len(packed)) + packed
    return msg


def test_caffe_lmdb_yields_hwc_images_and_labels(tmp_path: Path):
    rng = np.random.default_rng(0)
    chw = [rng.integers(0, 256, (3, 4, 5), dtype=np.uint8) for _ in range(6)]
    items = {b"%08d" % i: caffe_datum(3, 4, 5, img.tobytes(), i - 2) for i, img in enumerate(chw)}
    floats = np.arange(2 * 2 * 1, dtype=np.float32)
    items[b"00000006"] = caffe_datum(1, 2, 2, b"", 9, floats)
    items[b"00000007"] = b"\x0a\xff"  # garbage: dropped with a warning
    path = str(tmp_path / "caffe")
    write_plain_lmdb(path, items)
    out = list(CaffeLMDB(path, shuffle=False))
    assert len(out) == 7
    for i, img in enumerate(chw):
        assert out[i][0].shape == (4, 5, 3) and out[i][1] == i - 2
        assert np.array_equal(out[i][0], img.transpose(1, 2, 0))
    assert out[6][0].dtype == np.float32 and out[6][0].shape == (2, 2, 1) and out[6][1] == 9
    assert parse_caffe_datum(items[b"00000000"])["channels"] == 3


# -- HDF5Data ---------------------------------------------------------------------------------


def test_hdf5data_reads_a_plain_h5py_file_lazily(tmp_path: Path):
    path = str(tmp_path / "plain.h5")
    with h5py.File(path, "w") as f:  # as tensorpack's HDF5Serializer (or any tool) writes
        f["images"] = np.arange(50 * 6, dtype=np.uint8).reshape(50, 2, 3)
        f["labels"] = np.arange(50, dtype=np.int32)
        f.create_dataset("names", data=[f"n{i}" for i in range(50)], dtype=h5py.string_dtype())
    ds = HDF5Data(path, ["images", "labels", "names"], shuffle=False)
    assert len(ds) == 50
    out = list(ds)
    assert len(out) == 50
    assert np.array_equal(out[7][0], np.arange(42, 48, dtype=np.uint8).reshape(2, 3))
    assert out[7][1] == 7 and out[7][1].dtype == np.int32 and out[7][2] == "n7"
    shuffled = list(HDF5Data(path, ["labels"], shuffle=True))
    assert [int(dp[0]) for dp in shuffled] != list(range(50))
    assert sorted(int(dp[0]) for dp in shuffled) == list(range(50))
    assert ds._file is not None and HDF5Data(path, ["labels"])._file is None


def test_hdf5data_errors(tmp_path: Path):
    path = str(tmp_path / "x.h5")
    with h5py.File(path, "w") as f:
        f["a"] = np.zeros(5)
        f["b"] = np.zeros(6)
        f["s"] = 1.0
    with pytest.raises(DataFlowArgumentError, match="no dataset 'c'"):
        HDF5Data(path, ["c"])
    with pytest.raises(FormatError, match="different lengths"):
        HDF5Data(path, ["a", "b"])
    with pytest.raises(DataFlowArgumentError, match="scalar"):
        HDF5Data(path, ["s"])
    with pytest.raises(DataFlowArgumentError, match="data_paths"):
        HDF5Data(path, "a")
    garbage = tmp_path / "g.h5"
    garbage.write_bytes(os.urandom(4000))
    with pytest.raises(FormatError, match="g.h5"):
        HDF5Data(str(garbage), ["a"])


@pytest.mark.timeout(60)
def test_hdf5data_reset_in_the_parent_works_in_a_forked_child(tmp_path: Path):
    path = str(tmp_path / "f.h5")
    with h5py.File(path, "w") as f:
        f["a"] = np.arange(30)
    ds = HDF5Data(path, ["a"], shuffle=False)
    expected = [int(dp[0]) for dp in ds]
    queue = FORK.Queue()
    proc = FORK.Process(target=_iterate_in_child, args=(ds, queue))
    proc.start()
    status, result = queue.get(timeout=50)
    proc.join(10)
    assert status == "ok", result
    assert [int(x) for x in result] == expected == list(range(30))


# -- SVMLightData -----------------------------------------------------------------------------


def test_svmlightdata_yields_dense_rows_and_labels(tmp_path: Path):
    from sklearn.datasets import dump_svmlight_file

    rng = np.random.default_rng(3)
    X = rng.random((20, 7)) * (rng.random((20, 7)) > 0.6)
    y = rng.integers(0, 3, 20).astype(np.float64)
    path = str(tmp_path / "data.svm")
    dump_svmlight_file(X, y, path)
    ds = SVMLightData(path, shuffle=False)
    assert len(ds) == 20
    out = list(ds)
    for i, (row, label) in enumerate(out):
        assert row.shape == (7,) and row.dtype == np.float64
        assert np.allclose(row, X[i]) and label == y[i]
    shuffled = list(SVMLightData(path, shuffle=True))
    assert sorted(float(dp[1]) for dp in shuffled) == sorted(y.tolist())
    bad = tmp_path / "bad.svm"
    bad.write_text("this is not: svmlight\n")
    with pytest.raises(FormatError, match="bad.svm"):
        SVMLightData(str(bad))


# -- optional dependencies --------------------------------------------------------------------

MISSING = """
import sys
for name in {blocked!r}:
    sys.modules[name] = None  # as if not installed
import dataflow
from dataflow.format import LMDBData, HDF5Data, SVMLightData, CaffeLMDB
from dataflow.serialize import LMDBSerializer, HDF5Serializer
from dataflow.remote import RemoteDataZMQ, send_dataflow_zmq
try:
    {call}
except ImportError as e:
    print("IMPORTERROR:", e)
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "blocked, call, message",
    [
        (["lmdb"], "LMDBData('x')", "LMDBData requires lmdb: pip install 'pydataflow[lmdb]'"),
        (
            ["lmdb"],
            "LMDBSerializer.save(dataflow.DataFromList([[1]]), 'x')",
            "LMDBSerializer requires lmdb: pip install 'pydataflow[lmdb]'",
        ),
        (
            ["h5py"],
            "HDF5Data('x', ['a'])",
            "HDF5Data requires h5py: pip install 'pydataflow[hdf5]'",
        ),
        (
            ["zmq"],
            "RemoteDataZMQ('tcp://127.0.0.1:5555').reset_state()",
            "RemoteDataZMQ requires pyzmq: pip install 'pydataflow[remote]'",
        ),
        (
            ["sklearn", "sklearn.datasets"],
            "SVMLightData('x')",
            "SVMLightData requires scikit-learn: pip install scikit-learn",
        ),
    ],
)
def test_optional_dependencies_fail_only_when_used(tmp_path: Path, blocked, call, message):
    code = MISSING.format(blocked=blocked, call=call)
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=50, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert f"IMPORTERROR: {message}" in proc.stdout, proc.stdout + proc.stderr

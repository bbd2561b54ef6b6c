"""dataflow.serialize: what every serializer does (round trips keep edge dtypes exactly, writes are
atomic, readers check their header and detect corruption, fuzzed), the package's exports, and the
cases the per-format test files (test_serialize_<format>.py) share."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import lmdb
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dataflow._tfrecord as tfrecord
import dataflow.serialize as ser
from dataflow import codec
from dataflow.base import DataFlow
from dataflow.errors import (
    FormatError,
)
from dataflow.raw import DataFromGenerator, DataFromList
from dataflow.serialize import (
    DiskCacheSerializer,
    HDF5Serializer,
    LMDBSerializer,
    NumpySerializer,
    TFRecordSerializer,
)
from test_codec import assert_same

FUZZ = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)


def edge_datapoint(i: int, rng: np.random.Generator) -> list:
    """A datapoint with every edge case the codec-based serializers must keep."""
    return [
        i,
        bool(i % 2),
        2**31 + i * 1000,  # beyond int32
        np.int64(2**40 + i),
        rng.standard_normal(3).astype(np.float16),
        rng.integers(0, 256, (8, 6, 3), dtype=np.uint8),  # an image
        f"str-{i}-✓" * (i % 3),
        bytes(rng.integers(0, 256, i % 5, dtype=np.uint8)),
        [i, [float(i) / 3, None], (i, "t")],
        {"label": i % 10, "box": np.array([i, i + 1.5]), "tag": b"x"},
        np.array(i * 7),  # 0-d
        np.zeros((0, 4), np.float32),  # empty
        np.array([True, i % 3 == 0]),
    ]


def edge_flow(n: int = 60, seed: int = 1) -> DataFromList:
    rng = np.random.default_rng(seed)
    return DataFromList([edge_datapoint(i, rng) for i in range(n)], shuffle=False)


def hdf5_datapoint(i: int, rng: np.random.Generator) -> list:
    """The HDF5 variant: fixed structure, scalars and arrays only (HDF5 has no nested values)."""
    return [
        i,
        bool(i % 2),
        2**31 + i * 1000,
        i / 7,
        np.int64(2**40 + i),
        np.float16(i / 2),
        rng.standard_normal(3).astype(np.float16),
        rng.integers(0, 256, (8, 6, 3), dtype=np.uint8),
        f"str-{i}-✓" * (i % 3),
        bytes(rng.integers(0, 256, i % 5, dtype=np.uint8)),
        np.array(i * 7),
        np.zeros((0, 4), np.float32),
        np.array([True, i % 3 == 0]),
        np.array([f"u{i % 10}", "✓"]),  # unicode array
        np.array([i, 0], dtype="M8[s]"),  # datetime array
        np.datetime64(i, "D"),
    ]


HDF5_PATHS = [f"c{k}" for k in range(16)]


def hdf5_flow(n: int = 60, seed: int = 1) -> DataFromList:
    rng = np.random.default_rng(seed)
    return DataFromList([hdf5_datapoint(i, rng) for i in range(n)], shuffle=False)


def by_index(dps: list) -> list:
    return sorted(dps, key=lambda dp: dp[0])


# -- round trips ----------------------------------------------------------------------------------

SERIALIZERS = {
    "lmdb": (
        lambda df, p: LMDBSerializer.save(df, p),
        lambda p, shuffle: LMDBSerializer.load(p, shuffle=shuffle),
    ),
    "npz": (
        lambda df, p: NumpySerializer.save(df, p),
        lambda p, shuffle: NumpySerializer.load(p, shuffle=shuffle),
    ),
    "tfrecord": (
        lambda df, p: TFRecordSerializer.save(df, p),
        lambda p, shuffle: TFRecordSerializer.load(p),
    ),
    "diskcache": (
        lambda df, p: DiskCacheSerializer.save(df, p),
        lambda p, shuffle: DiskCacheSerializer.load(p, shuffle=shuffle),
    ),
}


@pytest.mark.parametrize("name", list(SERIALIZERS))
def test_round_trip_keeps_values_dtypes_shapes_and_count(tmp_path: Path, name: str):
    save, load = SERIALIZERS[name]
    src = edge_flow()
    expected = list(src)
    path = str(tmp_path / f"data.{name}")
    save(src, path)
    for shuffle in (False, True):
        ds = load(path, shuffle)
        assert len(ds) == len(expected)
        for _ in range(2):  # a second pass gives the same data
            got = list(ds)
            assert len(got) == len(expected) > 0
            if shuffle and name != "tfrecord":
                assert [dp[0] for dp in got] != [dp[0] for dp in expected]
                got = by_index(got)
            assert_same(expected, got)
    # decoded arrays are writable and do not alias what the next pass reads
    dp = next(iter(load(path, False)))
    dp[5][...] = 0
    assert_same(expected[0], next(iter(load(path, False))))


def test_empty_flow_round_trips_everywhere(tmp_path: Path):
    empty = DataFromList([], shuffle=False)
    for name, (save, load) in SERIALIZERS.items():
        path = str(tmp_path / name)
        save(empty, path)
        ds = load(path, False)
        assert len(ds) == 0 and list(ds) == []
    HDF5Serializer.save(empty, str(tmp_path / "e.h5"), ["a", "b"])
    ds = HDF5Serializer.load(str(tmp_path / "e.h5"), ["a", "b"])
    assert len(ds) == 0 and list(ds) == []


def test_writers_accept_a_flow_of_unknown_length(tmp_path: Path):
    def gen():
        for i in range(5):
            yield [i, np.arange(i)]

    for name, (save, load) in SERIALIZERS.items():
        path = str(tmp_path / name)
        save(DataFromGenerator(gen), path)
        assert_same(list(gen()), list(load(path, False)))


def test_writers_show_a_progress_bar_with_the_total(tmp_path: Path, capsys):
    LMDBSerializer.save(DataFromList([[i] for i in range(37)], shuffle=False), str(tmp_path / "a"))
    err = capsys.readouterr().err
    assert "LMDBSerializer" in err and "37/37" in err


# -- atomic writes ----------------------------------------------------------------------------


class Exploding(DataFlow):
    """Yields a few datapoints, then fails: a write that must leave nothing behind."""

    def __iter__(self):
        for i in range(50):
            yield [i, np.zeros(100)]
        raise RuntimeError("boom at 50")


@pytest.mark.parametrize("name", ["lmdb", "npz", "tfrecord", "hdf5", "diskcache"])
def test_a_failed_write_leaves_no_file(tmp_path: Path, name: str):
    path = str(tmp_path / "out")
    with pytest.raises(RuntimeError, match="boom at 50"):
        if name == "hdf5":
            HDF5Serializer.save(Exploding(), path, ["a", "b"])
        else:
            SERIALIZERS[name][0](Exploding(), path)
    assert os.listdir(tmp_path) == []


def test_a_failed_write_keeps_the_previous_file_intact(tmp_path: Path):
    path = str(tmp_path / "data.tfrecord")
    TFRecordSerializer.save(DataFromList([[1], [2]], shuffle=False), path)
    with pytest.raises(RuntimeError):
        TFRecordSerializer.save(Exploding(), path)
    assert list(TFRecordSerializer.load(path)) == [[1], [2]]


def test_an_unfinished_write_does_not_read_as_valid(tmp_path: Path):
    # What a writer killed mid-way leaves: the temporary file, with no (or an incomplete) header.
    tmp = str(tmp_path / "partial.tfrecord")
    with open(tmp, "wb") as f:
        tfrecord.write_record(f, codec.encode_header("tfrecord", codec.COUNT_UNKNOWN))
        tfrecord.write_record(f, codec.dumps([1]))
    with pytest.raises(FormatError, match="incomplete"):
        TFRecordSerializer.load(tmp)
    env = lmdb.open(str(tmp_path / "partial.lmdb"), subdir=False, lock=False)
    with env.begin(write=True) as txn:
        txn.put(b"00000000", codec.dumps([1]))
    env.close()
    with pytest.raises(FormatError, match="not written by LMDBSerializer"):
        LMDBSerializer.load(str(tmp_path / "partial.lmdb"))


# -- fuzzing the readers ----------------------------------------------------------------------

FUZZ_ROWS = [[i, np.arange(i, dtype=np.float16), f"s{i}", {"k": (i, b"b")}] for i in range(6)]
HDF5_FUZZ_ROWS = [
    [i, np.arange(3, dtype=np.float16) + i, np.full((2, 2), i, np.uint8)] for i in range(6)
]


_FUZZ_FILES: dict[str, bytes] = {}


def fuzz_file(kind: str) -> bytes:
    """The bytes of a small file of each kind (made once; the fuzz tests damage copies)."""
    if not _FUZZ_FILES:
        with tempfile.TemporaryDirectory() as d:
            df = DataFromList(FUZZ_ROWS, shuffle=False)
            NumpySerializer.save(df, os.path.join(d, "npz"))
            TFRecordSerializer.save(df, os.path.join(d, "tfrecord"))
            LMDBSerializer.save(df, os.path.join(d, "lmdb"))
            rows = DataFromList(HDF5_FUZZ_ROWS, shuffle=False)
            HDF5Serializer.save(rows, os.path.join(d, "h5"), ["a", "b", "c"])
            for name in ("npz", "tfrecord", "lmdb", "h5"):
                _FUZZ_FILES[name] = Path(d, name).read_bytes()
    return _FUZZ_FILES[kind]


def read_all(kind: str, path: str) -> list:
    if kind == "npz":
        return list(NumpySerializer.load(path, shuffle=False))
    if kind == "tfrecord":
        return list(TFRecordSerializer.load(path))
    if kind == "h5":
        return list(HDF5Serializer.load(path, ["a", "b", "c"], shuffle=False))
    return list(LMDBSerializer.load(path, shuffle=False))


def check_damaged(kind: str, blob: bytes, strict: bool) -> None:
    """Reading a damaged file raises FormatError or gives the original data (``strict``: exactly;
    else well-formed datapoints, for formats without checksums on every byte)."""
    expected = HDF5_FUZZ_ROWS if kind == "h5" else FUZZ_ROWS
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "f")
        Path(path).write_bytes(blob)
        try:
            got = read_all(kind, path)
        except FormatError:
            return
    if strict:
        assert_same(expected, got)
    else:
        assert len(got) == len(expected) and all(isinstance(dp, list) for dp in got)


def flip_bits(blob: bytes, data, max_flips: int = 4) -> bytes:
    buf = bytearray(blob)
    for _ in range(data.draw(st.integers(1, max_flips))):
        pos = data.draw(st.integers(0, len(buf) - 1))
        buf[pos] ^= 1 << data.draw(st.integers(0, 7))
    return bytes(buf)


@FUZZ
@given(st.sampled_from(["npz", "tfrecord", "h5"]), st.data())
def test_fuzz_bit_flips_give_format_error_or_the_data(kind, data):
    # npz (zip CRCs), TFRecord (CRC32C on every record) and HDF5 (Fletcher-32 and metadata
    # checksums) detect corruption: the data comes back exactly or not at all.
    check_damaged(kind, flip_bits(fuzz_file(kind), data), strict=True)


@FUZZ
@given(st.sampled_from(["npz", "tfrecord", "h5", "lmdb"]), st.data())
def test_fuzz_truncations_give_format_error(kind, data):
    blob = fuzz_file(kind)
    cut = data.draw(st.integers(0, len(blob) - 1))
    check_damaged(kind, blob[:cut], strict=True)


@settings(FUZZ, max_examples=50)
@given(st.sampled_from(["npz", "tfrecord", "h5", "lmdb"]), st.binary(max_size=5000))
def test_fuzz_random_bytes_give_format_error(kind, blob):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "f")
        Path(path).write_bytes(blob)
        with pytest.raises(FormatError):
            read_all(kind, path)


# -- the package ------------------------------------------------------------------------------


def test_the_package_exports_every_serializer_of_its_modules():
    import importlib
    import pkgutil

    seen = []
    for info in pkgutil.iter_modules(ser.__path__):
        module = importlib.import_module(f"dataflow.serialize.{info.name}")
        if info.name.startswith("_"):
            continue
        for name in module.__all__:
            assert getattr(ser, name) is getattr(module, name), name
            assert name in ser.__all__, name
            seen.append(name)
    assert sorted(seen) == sorted(ser.__all__)
    assert set(seen) >= {
        "LMDBSerializer",
        "NumpySerializer",
        "TFRecordSerializer",
        "HDF5Serializer",
        "DiskCacheSerializer",
    }

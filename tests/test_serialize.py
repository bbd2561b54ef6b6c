"""dataflow.serialize: every serializer round-trips edge dtypes exactly, writes atomically, checks
its header, detects corruption (fuzzed), reads tensorpack's files only with allow_pickle, and LMDB
scales to 100k datapoints under LocallyShuffleData and a parallel map."""

from __future__ import annotations

import os
import pickle
import struct
import tempfile
from pathlib import Path

import lmdb
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dataflow._lmdb_seal as seal
import dataflow._tfrecord as tfrecord
import dataflow.serialize as ser
from dataflow import codec
from dataflow.base import DataFlow
from dataflow.common import LocallyShuffleData
from dataflow.errors import (
    DataFlowArgumentError,
    DatapointError,
    FormatError,
    LengthUnknownError,
)
from dataflow.format import LMDBData
from dataflow.raw import DataFromGenerator, DataFromList
from dataflow.serialize import (
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


def test_hdf5_round_trip_keeps_values_dtypes_shapes_and_count(tmp_path: Path):
    src = hdf5_flow(300)
    expected = list(src)
    path = str(tmp_path / "data.h5")
    HDF5Serializer.save(src, path, HDF5_PATHS)
    for shuffle in (False, True):
        ds = HDF5Serializer.load(path, HDF5_PATHS, shuffle=shuffle)
        assert len(ds) == 300
        got = list(ds)
        assert len(got) == 300
        if shuffle:
            assert [dp[0] for dp in got] != list(range(300))
            got = by_index(got)
        assert_same(expected, got)


def test_hdf5_writes_in_bounded_blocks_and_reads_lazily(tmp_path: Path, monkeypatch):
    import dataflow.format as fmt

    monkeypatch.setattr(ser, "_H5_CHUNK_BYTES", 1024)
    monkeypatch.setattr(fmt, "_HDF5_BLOCK_BYTES", 512)
    rows = [[i, np.full(16, i, np.float64)] for i in range(1000)]
    path = str(tmp_path / "big.h5")
    HDF5Serializer.save(DataFromList(rows, shuffle=False), path, ["y", "x"])
    ds = HDF5Serializer.load(path, ["y", "x"], shuffle=True)
    ds.reset_state()
    dsets, _, block = ds._readers()
    assert block < 10  # a few rows at a time, never whole datasets
    got = by_index(list(ds))
    assert_same(rows, got)


def test_hdf5_refuses_inconsistent_datapoints(tmp_path: Path):
    path = str(tmp_path / "x.h5")
    ragged = DataFromList([[np.zeros((2, 3))], [np.zeros((2, 4))]], shuffle=False)
    with pytest.raises(DatapointError, match=r"datapoint 1, component 'a'.*\(2, 4\).*\(2, 3\)"):
        HDF5Serializer.save(ragged, path, ["a"])
    mixed = DataFromList([[1, "a"], [2, 3]], shuffle=False)
    with pytest.raises(DatapointError, match="datapoint 1, component 'b'"):
        HDF5Serializer.save(mixed, path, ["a", "b"])
    with pytest.raises(DatapointError, match="LMDBSerializer"):
        HDF5Serializer.save(DataFromList([[[1, 2]]], shuffle=False), path, ["a"])
    with pytest.raises(DatapointError, match="2 components"):
        HDF5Serializer.save(DataFromList([[1, 2]], shuffle=False), path, ["a"])
    with pytest.raises(DataFlowArgumentError, match="duplicates"):
        HDF5Serializer.save(DataFromList([[1, 2]], shuffle=False), path, ["a", "a"])
    assert os.listdir(tmp_path) == []  # failed writes leave nothing


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


def test_numpy_serializer_writes_exactly_the_given_name(tmp_path: Path):
    path = tmp_path / "no_suffix"
    NumpySerializer.save(DataFromList([[1]], shuffle=False), str(path))
    assert os.listdir(tmp_path) == ["no_suffix"]


# -- atomic writes ----------------------------------------------------------------------------


class Exploding(DataFlow):
    """Yields a few datapoints, then fails: a write that must leave nothing behind."""

    def __iter__(self):
        for i in range(50):
            yield [i, np.zeros(100)]
        raise RuntimeError("boom at 50")


@pytest.mark.parametrize("name", ["lmdb", "npz", "tfrecord", "hdf5"])
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


# -- LMDB -------------------------------------------------------------------------------------


def test_lmdb_refuses_to_overwrite_and_writes_into_a_directory(tmp_path: Path):
    df = DataFromList([[1], [2]], shuffle=False)
    path = str(tmp_path / "db")
    LMDBSerializer.save(df, path)
    with pytest.raises(DataFlowArgumentError, match="exists"):
        LMDBSerializer.save(df, path)
    folder = tmp_path / "dir"
    folder.mkdir()
    LMDBSerializer.save(df, str(folder))
    assert sorted(os.listdir(folder)) == ["data.mdb"]
    assert list(LMDBSerializer.load(str(folder), shuffle=False)) == [[1], [2]]
    with pytest.raises(DataFlowArgumentError, match="exists"):
        LMDBSerializer.save(df, str(folder))
    with pytest.raises(DataFlowArgumentError, match="write_frequency"):
        LMDBSerializer.save(df, str(tmp_path / "x"), write_frequency=0)
    with pytest.raises(DataFlowArgumentError, match="df"):
        LMDBSerializer.save([[1]], str(tmp_path / "x"))


def test_lmdb_grows_its_map_without_losing_a_transaction(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(ser, "_LMDB_INITIAL_MAP_SIZE", 1 << 16)
    rows = [[i, np.full(1000, i, np.int32)] for i in range(600)]  # ~2.4 MB
    path = str(tmp_path / "grow")
    LMDBSerializer.save(DataFromList(rows, shuffle=False), path, write_frequency=250)
    assert_same(rows, list(LMDBSerializer.load(path, shuffle=False)))


def test_lmdb_100k_sequential_shuffled_locally_shuffled_and_parallel_mapped(tmp_path: Path):
    n = 100_000
    path = str(tmp_path / "big.lmdb")

    def gen():
        for i in range(n):
            yield [i, np.array([i, -i], np.int64), str(i)]

    LMDBSerializer.save(DataFromGenerator(gen, size=n), path)

    seq = LMDBSerializer.load(path, shuffle=False)
    assert len(seq) == n
    got = list(seq)
    assert [dp[0] for dp in got] == list(range(n))
    assert all(dp[1][1] == -dp[0] and dp[2] == str(dp[0]) for dp in got[::997])

    shuffled = [dp[0] for dp in LMDBSerializer.load(path, shuffle=True)]
    assert shuffled != list(range(n)) and sorted(shuffled) == list(range(n))

    # tensorpack's recipe: sequential raw read, local shuffle, decode in worker processes; a
    # strict map passes on exactly the pass LocallyShuffleData makes. That pass is not a
    # permutation (as in tensorpack, the buffer carries over: up to buffer_size datapoints are
    # still in it when the pass ends, and as many from the source's next repetition took their
    # place), so it is checked for exactly that.
    from dataflow.parallel_map import MultiProcessMapData

    ds = LMDBData(path, shuffle=False)
    ds = LocallyShuffleData(ds, 2000)
    ds = MultiProcessMapData(ds, 2, lambda kv: codec.loads(kv[1]), buffer_size=500, strict=True)
    assert len(ds) == n
    with ds:
        out = list(ds)
    ids = [dp[0] for dp in out]
    counts = np.bincount(ids, minlength=n)
    missing, repeated = int((counts == 0).sum()), int((counts == 2).sum())
    assert len(ids) == n and counts.max() <= 2 and missing == repeated <= 2000
    assert ids != sorted(ids) and max(ids[:30_000]) < 33_000  # shuffled within the buffer's reach
    assert all(dp[1][0] == dp[0] and dp[1][1] == -dp[0] and dp[2] == str(dp[0]) for dp in out)


def write_tensorpack_lmdb(path: str, dps: list, keys_blob: bytes | None = None) -> None:
    """An LMDB laid out as tensorpack's LMDBSerializer writes it: '{:08}' keys, pickled values,
    and a pickled list of the keys under b'__keys__'."""
    env = lmdb.open(path, subdir=False, map_size=1 << 26, lock=False)
    keys = [f"{i:08}".encode("ascii") for i in range(len(dps))]
    with env.begin(write=True) as txn:
        for k, dp in zip(keys, dps):
            txn.put(k, pickle.dumps(dp, protocol=-1))
        txn.put(b"__keys__", keys_blob if keys_blob is not None else pickle.dumps(keys, -1))
    env.sync()
    env.close()


def test_reads_a_tensorpack_lmdb_only_with_allow_pickle(tmp_path: Path):
    dps = [[i, np.arange(i, dtype=np.float32), {"s": str(i)}] for i in range(30)]
    path = str(tmp_path / "tp.lmdb")
    write_tensorpack_lmdb(path, dps)
    with pytest.raises(FormatError, match="tensorpack.*allow_pickle=True"):
        LMDBSerializer.load(path)
    seq = LMDBSerializer.load(path, shuffle=False, allow_pickle=True)
    assert len(seq) == 30
    assert_same(dps, list(seq))
    shuffled = list(LMDBSerializer.load(path, shuffle=True, allow_pickle=True))
    assert_same(dps, by_index(shuffled))
    # the raw reader needs no pickle at all: __keys__ is read without running code
    raw = LMDBData(path, shuffle=True)
    assert len(raw) == 30 and raw.keys == [b"%08d" % i for i in range(30)]
    assert sorted(k for k, _ in raw) == raw.keys


def test_a_malicious_tensorpack_keys_list_runs_nothing(tmp_path: Path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = str(tmp_path / "evil.lmdb")
    write_tensorpack_lmdb(path, [[1], [2]], keys_blob=pickle.dumps([Payload()]))
    raw = LMDBData(path, shuffle=True)  # falls back to traversing the keys
    assert sorted(k for k, _ in raw) == [b"00000000", b"00000001"]
    with pytest.raises(FormatError):
        LMDBSerializer.load(path)
    assert not marker.exists()


def test_lmdb_refuses_other_files(tmp_path: Path):
    garbage = tmp_path / "garbage"
    garbage.write_bytes(os.urandom(10000))
    with pytest.raises(FormatError, match="garbage"):
        LMDBSerializer.load(str(garbage))
    tf = tmp_path / "tf"
    TFRecordSerializer.save(DataFromList([[1]], shuffle=False), str(tf))
    with pytest.raises(FormatError, match=str(tf)):
        LMDBSerializer.load(str(tf))
    with pytest.raises(DataFlowArgumentError, match="no such file"):
        LMDBSerializer.load(str(tmp_path / "missing"))


def test_lmdb_refuses_a_header_of_another_kind(tmp_path: Path):
    path = str(tmp_path / "odd.lmdb")
    env = lmdb.open(path, subdir=False, lock=False)
    with env.begin(write=True) as txn:
        txn.put(b"00000000", codec.dumps([1]))
        txn.put(b"__dataflow__", codec.encode_header("npz", 1))
    env.close()
    with pytest.raises(FormatError, match="odd.lmdb.*'npz'"):
        LMDBSerializer.load(path)


# -- TFRecord ---------------------------------------------------------------------------------


def slow_crc32c(data: bytes, crc: int = 0) -> int:
    crc ^= 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def test_crc32c_known_vectors():
    # RFC 3720 (iSCSI) B.4 and the classic check value
    assert tfrecord.crc32c(b"123456789") == 0xE3069283
    assert tfrecord.crc32c(b"") == 0
    assert tfrecord.crc32c(bytes(32)) == 0x8A9136AA
    assert tfrecord.crc32c(b"\xff" * 32) == 0x62A8AB43
    assert tfrecord.crc32c(bytes(range(32))) == 0x46DD794E
    assert tfrecord.crc32c(bytes(range(31, -1, -1))) == 0x113FDB5C
    assert tfrecord.masked_crc32c(b"") == 0xA282EAD8


@settings(FUZZ, max_examples=60)
@given(st.binary(max_size=3000), st.data())
def test_crc32c_matches_the_bitwise_definition(data, draw):
    assert tfrecord.crc32c(data) == slow_crc32c(data)
    cut = draw.draw(st.integers(0, len(data)))
    assert tfrecord.crc32c(data[cut:], tfrecord.crc32c(data[:cut])) == tfrecord.crc32c(data)


def test_crc32c_across_chunks_and_levels(monkeypatch):
    impl = tfrecord._Crc32c()
    monkeypatch.setattr(impl, "CHUNK", 1000)
    data = np.random.default_rng(5).integers(0, 256, 300_000, dtype=np.uint8).tobytes()
    expected = slow_crc32c(data[:5000])
    assert impl(data[:5000]) == expected
    assert impl(data) == tfrecord.crc32c(data)  # chunked vs one pass with three levels of combining
    assert impl(memoryview(data)[7:]) == tfrecord.crc32c(data[7:])


def test_tfrecord_framing_is_tensorflows(tmp_path: Path):
    path = str(tmp_path / "one.tfrecord")
    TFRecordSerializer.save(DataFromList([[5]], shuffle=False), path)
    raw = Path(path).read_bytes()
    records = []
    pos = 0
    while pos < len(raw):
        (length,) = struct.unpack_from("<Q", raw, pos)
        (lcrc,) = struct.unpack_from("<I", raw, pos + 8)
        data = raw[pos + 12 : pos + 12 + length]
        (dcrc,) = struct.unpack_from("<I", raw, pos + 12 + length)
        for blob, crc in ((raw[pos : pos + 8], lcrc), (data, dcrc)):
            c = slow_crc32c(blob)
            assert crc == (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF
        records.append(data)
        pos += 16 + length
    assert records[0].startswith(codec.MAGIC) and codec.loads(records[1]) == [5]


def test_tfrecord_reads_tensorpack_pickles_only_with_allow_pickle(tmp_path: Path):
    path = str(tmp_path / "tp.tfrecord")
    dps = [[i, np.arange(3) * i] for i in range(10)]
    with open(path, "wb") as f:
        for dp in dps:
            tfrecord.write_record(f, pickle.dumps(dp, -1))
    with pytest.raises(FormatError, match="allow_pickle"):
        TFRecordSerializer.load(path)
    ds = TFRecordSerializer.load(path, allow_pickle=True)
    with pytest.raises(LengthUnknownError):
        len(ds)
    assert_same(dps, list(ds))
    fixed = TFRecordSerializer.load(path, size=4, allow_pickle=True)
    assert len(fixed) == 4 and [dp[0] for dp in fixed] == [0, 1, 2, 3]


def test_tfrecord_detects_a_file_cut_at_a_record_boundary(tmp_path: Path):
    path = str(tmp_path / "cut.tfrecord")
    TFRecordSerializer.save(DataFromList([[i] for i in range(5)], shuffle=False), path)
    raw = Path(path).read_bytes()
    Path(path).write_bytes(raw[: len(raw) - (16 + len(codec.dumps([4])))])
    ds = TFRecordSerializer.load(path)
    with pytest.raises(FormatError, match="holds 4 datapoints but its header says 5"):
        list(ds)


# -- NumPy ------------------------------------------------------------------------------------


def test_numpy_reads_tensorpack_npz_only_with_allow_pickle(tmp_path: Path):
    path = str(tmp_path / "tp.npz")
    dps = [[i, np.arange(i)] for i in range(5)]
    buffer = np.empty(len(dps), dtype=object)
    for i, dp in enumerate(dps):
        buffer[i] = dp
    np.savez_compressed(path, buffer=buffer)
    with pytest.raises(FormatError, match="tensorpack.*allow_pickle=True"):
        NumpySerializer.load(path)
    assert_same(dps, list(NumpySerializer.load(path, shuffle=False, allow_pickle=True)))


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


# Records over ~2 KB live in LMDB overflow pages: data only, outside the structure's checksum.
BIG_ROWS = [[i, np.full(3000 + 500 * i, i, np.uint8), f"big{i}"] for i in range(6)]
_BIG_FILE: list[bytes] = []


def big_lmdb() -> bytes:
    if not _BIG_FILE:
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "big")
            LMDBSerializer.save(DataFromList(BIG_ROWS, shuffle=False), path)
            _BIG_FILE.append(Path(path).read_bytes())
    return _BIG_FILE[0]


def read_lmdb_blob(blob: bytes, verify: bool) -> list:
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "f")
        Path(path).write_bytes(blob)
        return list(LMDBSerializer.load(path, shuffle=False, verify=verify))


@settings(FUZZ, max_examples=100)
@given(st.data())
def test_fuzz_damaged_lmdb_overflow_records(data):
    # Damage inside a large record's bytes: verify=True gives FormatError naming the record;
    # without it, FormatError or a well-formed datapoint (the codec allows no other outcome).
    blob = big_lmdb()
    victim = data.draw(st.integers(0, len(BIG_ROWS) - 1))
    msg = codec.dumps(BIG_ROWS[victim])
    at = blob.index(msg)
    damaged = blob[:at] + flip_bits(msg, data) + blob[at + len(msg) :]
    with pytest.raises(FormatError, match=f"{victim:08d}"):
        read_lmdb_blob(damaged, verify=True)
    try:
        got = read_lmdb_blob(damaged, verify=False)
    except FormatError:
        return
    assert len(got) == len(BIG_ROWS) and all(isinstance(dp, list) for dp in got)


@settings(FUZZ, max_examples=100)
@given(st.data())
def test_fuzz_bit_flips_in_a_sealed_lmdb_with_verify_give_format_error_or_the_data(data):
    blob = flip_bits(big_lmdb(), data)
    try:
        got = read_lmdb_blob(blob, verify=True)
    except FormatError:
        return
    assert_same(BIG_ROWS, got)


def test_lmdb_seal_lists_exactly_the_pages_lmdb_reads(tmp_path: Path):
    # Several transactions (branch pages, pages freed and reused), small and overflow records.
    rows = [[i, np.full(10 if i % 7 else 3000, i % 250, np.uint8)] for i in range(3000)]
    path = str(tmp_path / "s.lmdb")
    LMDBSerializer.save(DataFromList(rows, shuffle=False), path, write_frequency=300)
    size = os.path.getsize(path)
    assert size % 4096 != 0  # a sealed file is never a whole number of pages
    found = seal.check_seal(path, path)
    assert found is not None and found.count == len(rows)
    # the walk over the sealed file's LMDB part (a copy, trimmed of the seal) finds the pages
    # lmdb counts: both meta pages, every branch and leaf page
    bare = str(tmp_path / "bare.lmdb")
    Path(bare).write_bytes(Path(path).read_bytes()[: found.data_len])
    psize, data_len, pages = seal.structural_pages(bare)
    env = lmdb.open(bare, subdir=False, readonly=True, lock=False)
    try:
        stat = env.stat()
        assert psize == stat["psize"] == found.psize and data_len == found.data_len
        assert stat["branch_pages"] > 0 and stat["overflow_pages"] > 0
        assert len(pages) == 2 + stat["branch_pages"] + stat["leaf_pages"]
        assert (env.info()["last_pgno"] + 1) * psize <= data_len
    finally:
        env.close()
    assert_same(rows, list(LMDBSerializer.load(path, shuffle=False, verify=True)))
    assert sorted(dp[0] for dp in LMDBSerializer.load(path, verify=True)) == list(range(3000))


@pytest.mark.timeout(120)
def test_lmdb_damage_to_any_structural_page_is_a_format_error(tmp_path: Path):
    rows = [[i, np.full(10 if i % 7 else 3000, i % 250, np.uint8)] for i in range(2000)]
    path = tmp_path / "s.lmdb"
    LMDBSerializer.save(DataFromList(rows, shuffle=False), str(path), write_frequency=300)
    blob = path.read_bytes()
    found = seal.check_seal(str(path), str(path))
    bare = tmp_path / "bare.lmdb"
    bare.write_bytes(blob[: found.data_len])
    psize, _, pages = seal.structural_pages(str(bare))
    damaged = tmp_path / "d.lmdb"
    for pgno in pages.tolist():
        # the page header, the first node pointers, a node in the middle, the last byte
        for off in (11, 17, psize // 2, psize - 1):
            buf = bytearray(blob)
            buf[pgno * psize + off] ^= 0x10
            damaged.write_bytes(bytes(buf))
            with pytest.raises(FormatError, match="damaged LMDB pages"):
                LMDBSerializer.load(str(damaged), shuffle=False)


def test_lmdb_damaged_or_missing_seal_is_a_format_error(tmp_path: Path):
    path = tmp_path / "s.lmdb"
    LMDBSerializer.save(DataFromList(FUZZ_ROWS, shuffle=False), str(path))
    blob = path.read_bytes()
    found = seal.check_seal(str(path), str(path))
    cases = {
        "magic": (blob[: -seal.FOOTER] + b"X" + blob[-seal.FOOTER + 1 :], "whole number of pages"),
        "footer": (blob[:-5] + bytes([blob[-5] ^ 1]) + blob[-4:], "seal is damaged"),
        "cut seal": (blob[:-3], "whole number of pages"),
        # an intact LMDB with our header but without its seal
        "no seal": (blob[: found.data_len], "seal is missing"),
    }
    for name, (damaged, message) in cases.items():
        p = tmp_path / name.replace(" ", "_")
        p.write_bytes(damaged)
        with pytest.raises(FormatError, match=message):
            list(LMDBSerializer.load(str(p), shuffle=False))


def test_lmdb_verify_needs_a_sealed_file(tmp_path: Path):
    path = str(tmp_path / "tp.lmdb")
    write_tensorpack_lmdb(path, [[1], [2]])
    with pytest.raises(DataFlowArgumentError, match="verify=True"):
        LMDBSerializer.load(path, allow_pickle=True, verify=True)
    with pytest.raises(DataFlowArgumentError, match="verify"):
        LMDBSerializer.load(path, allow_pickle=True, verify="yes")

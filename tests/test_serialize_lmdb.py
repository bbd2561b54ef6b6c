"""dataflow.serialize.lmdb: LMDBSerializer writes into a file or a directory, grows its map, scales to
100k datapoints under LocallyShuffleData and a parallel map, reads tensorpack's databases only with
allow_pickle, and its seal turns any damage into a FormatError."""

from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path

import lmdb
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dataflow._lmdb_seal as seal
import dataflow.serialize.lmdb as ser_lmdb
from dataflow import codec
from dataflow.common import LocallyShuffleData
from dataflow.errors import (
    DataFlowArgumentError,
    FormatError,
)
from dataflow.format import LMDBData
from dataflow.raw import DataFromGenerator, DataFromList
from dataflow.serialize import (
    LMDBSerializer,
    TFRecordSerializer,
)
from test_codec import assert_same
from test_serialize import (
    FUZZ,
    FUZZ_ROWS,
    by_index,
    flip_bits,
)

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
    monkeypatch.setattr(ser_lmdb, "_LMDB_INITIAL_MAP_SIZE", 1 << 16)
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


# -- silent corruption: the default readers verify every record ----------------------------------
# Records over 2 KB (LMDB overflow pages, outside the structure's checksum) and small ones.
CORRUPT_ROWS = [
    [i, np.arange(2100 + 700 * i, dtype=np.int64).astype(np.uint8), f"r{i}"] if i % 4 else [i, b"x"]
    for i in range(24)
]


def damage(blob: bytes, rng: np.random.Generator, records: list[bytes]) -> bytes:
    """1-16 random bytes changed: anywhere in the file, or (every other trial) inside records."""
    buf = bytearray(blob)
    for _ in range(int(rng.integers(1, 17))):
        if rng.random() < 0.5:
            rec = records[int(rng.integers(len(records)))]
            at = blob.index(rec) + int(rng.integers(len(rec)))
        else:
            at = int(rng.integers(len(buf)))
        buf[at] = (buf[at] + int(rng.integers(1, 256))) % 256  # a different byte
    return bytes(buf)


def corruption_outcomes(trials: int, read) -> dict[str, int]:
    """How reading a damaged copy of a sealed file ends: the data, a FormatError, or wrong data."""
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "c.lmdb")
        LMDBSerializer.save(DataFromList(CORRUPT_ROWS, shuffle=False), path)
        blob = Path(path).read_bytes()
        records = [codec.dumps(dp) for dp in CORRUPT_ROWS if len(codec.dumps(dp)) > 2048]
        outcomes = {"same": 0, "format_error": 0, "wrong": 0}
        damaged = os.path.join(d, "damaged.lmdb")
        for trial in range(trials):
            rng = np.random.default_rng(trial)
            Path(damaged).write_bytes(damage(blob, rng, records))
            try:
                got = read(damaged, shuffle=bool(trial % 2))
            except FormatError as e:
                assert damaged in str(e)  # names the file (and the key, for a record)
                outcomes["format_error"] += 1
                continue
            outcomes["same" if got else "wrong"] += 1
    return outcomes


def read_datapoints(path: str, shuffle: bool, **kw) -> bool:
    got = by_index(list(LMDBSerializer.load(path, shuffle=shuffle, **kw)))
    if len(got) != len(CORRUPT_ROWS):
        return False
    try:
        assert_same(CORRUPT_ROWS, got)
    except AssertionError:
        return False
    return True


def read_raw(path: str, shuffle: bool, **kw) -> bool:
    want = {lmdb_key_of(i): codec.dumps(dp) for i, dp in enumerate(CORRUPT_ROWS)}
    return dict((bytes(k), bytes(v)) for k, v in LMDBData(path, shuffle=shuffle, **kw)) == want


def lmdb_key_of(i: int) -> bytes:
    return b"%08d" % i


@pytest.mark.timeout(300)
def test_1000_corrupted_lmdb_files_never_give_a_wrong_datapoint_by_default():
    outcomes = corruption_outcomes(1000, read_datapoints)
    assert outcomes["wrong"] == 0, outcomes
    assert outcomes["format_error"] > 500, outcomes  # the damage did reach what is read
    # the opt-out reads unchecked, and the same damage then does get through
    unchecked = corruption_outcomes(
        200, lambda p, shuffle: read_datapoints(p, shuffle, verify=False)
    )
    assert unchecked["wrong"] > 0, unchecked


@pytest.mark.timeout(120)
def test_lmdbdata_verifies_the_records_of_a_sealed_file_by_default():
    outcomes = corruption_outcomes(300, read_raw)
    assert outcomes["wrong"] == 0 and outcomes["format_error"] > 100, outcomes
    unchecked = corruption_outcomes(100, lambda p, shuffle: read_raw(p, shuffle, verify=False))
    assert unchecked["wrong"] > 0, unchecked


def test_a_damaged_record_names_its_key_and_verify_false_reads_it(tmp_path: Path):
    path = tmp_path / "one.lmdb"
    LMDBSerializer.save(DataFromList(CORRUPT_ROWS, shuffle=False), str(path))
    blob = path.read_bytes()
    rec = codec.dumps(CORRUPT_ROWS[5])
    at = blob.index(rec) + len(rec) - 10  # inside the array's bytes: still decodes
    path.write_bytes(blob[:at] + bytes([blob[at] ^ 1]) + blob[at + 1 :])
    for shuffle in (False, True):
        with pytest.raises(FormatError, match=r"record b'00000005' is damaged"):
            list(LMDBSerializer.load(str(path), shuffle=shuffle))
        with pytest.raises(FormatError, match=r"record b'00000005' is damaged"):
            list(LMDBData(str(path), shuffle=shuffle))
        got = by_index(list(LMDBSerializer.load(str(path), shuffle=shuffle, verify=False)))
        assert len(got) == len(CORRUPT_ROWS)  # read, unchecked: the damaged array comes back
        assert not np.array_equal(got[5][1], CORRUPT_ROWS[5][1])
    # the fast CRC is zlib's CRC-32: files are the same with or without zlib_ng
    import zlib

    assert seal.crc32(rec) == zlib.crc32(rec)


def test_a_file_without_record_checksums_reads_as_before(tmp_path: Path):
    path = str(tmp_path / "tp.lmdb")
    write_tensorpack_lmdb(path, [[1], [2]])
    assert sorted(LMDBSerializer.load(path, allow_pickle=True)) == [[1], [2]]
    assert len(list(LMDBData(path, shuffle=False))) == 2
    with pytest.raises(DataFlowArgumentError, match="no record checksums"):
        LMDBData(path, verify=True)

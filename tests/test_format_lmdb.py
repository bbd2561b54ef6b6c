"""dataflow.format.lmdb: LMDBData over any LMDB (ours, tensorpack's, plain), keys, errors, truncated
files, handles opened in reset_state and shared per file, fork and spawn children, LMDBDataDecoder."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from dataflow import codec
from dataflow.errors import DataFlowArgumentError, FormatError
from dataflow.format import LMDBData, LMDBDataDecoder
from dataflow.raw import DataFromList
from dataflow.serialize import LMDBSerializer
from flows import run_in_child
from test_codec import assert_same
from test_format import first_components_in_child, write_plain_lmdb


@pytest.fixture
def saved_lmdb(tmp_path: Path) -> str:
    path = str(tmp_path / "s.lmdb")
    LMDBSerializer.save(DataFromList([[i, np.full(3, i)] for i in range(40)], shuffle=False), path)
    return path


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


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_lmdb_reader_reset_in_the_parent_works_in_a_child(saved_lmdb: str, method):
    ds = LMDBSerializer.load(saved_lmdb, shuffle=False)
    expected = [dp[0] for dp in ds]  # the parent has the database open
    status, result = run_in_child(first_components_in_child, ds, method=method, timeout=50)
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

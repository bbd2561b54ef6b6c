"""dataflow.serialize.diskcache: DiskCacheSerializer keeps tensorpack's layout (int keys in a
diskcache.Index) with the safe codec, shuffles, reads tensorpack's directories only with
allow_pickle, never unpickles otherwise, refuses bad paths and names its extra when missing."""

from __future__ import annotations

import pickle
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import diskcache
import numpy as np
import pytest

from dataflow import codec
from dataflow.errors import DataFlowArgumentError, FormatError
from dataflow.raw import DataFromList
from dataflow.serialize import DiskCacheSerializer
from test_codec import assert_same
from test_serialize import by_index, edge_flow


def rows(n: int = 40) -> list:
    return [[i, np.full((3, i % 4), i, np.int16), f"s{i}"] for i in range(n)]


def save(path: Path, dps: list, **kwargs) -> str:
    DiskCacheSerializer.save(DataFromList(dps, shuffle=False), str(path), **kwargs)
    return str(path)


def test_layout_is_tensorpacks_int_keys_in_an_index_with_codec_values(tmp_path: Path):
    dps = rows(12)
    path = save(tmp_path / "out.diskcache", dps)
    index = diskcache.Index(path)
    assert len(index) == 12 + 1  # the datapoints and our header
    for i, dp in enumerate(dps):
        assert isinstance(index[i], bytes)
        assert_same(dp, codec.loads(index[i]))
    header = codec.decode_header(index["__dataflow__"], "diskcache", path)
    assert header["count"] == 12


def test_shuffle_draws_a_new_order_each_pass_and_len_is_the_count(tmp_path: Path):
    dps = rows(60)
    path = save(tmp_path / "d", dps)
    ds = DiskCacheSerializer.load(path)  # tensorpack's default: shuffle=True
    assert len(ds) == 60
    first, second = [dp[0] for dp in ds], [dp[0] for dp in ds]
    assert sorted(first) == sorted(second) == list(range(60))
    assert first != list(range(60)) and first != second
    assert_same(dps, by_index(list(ds)))
    ordered = DiskCacheSerializer.load(path, shuffle=False)
    assert [dp[0] for dp in ordered] == list(range(60))


def test_write_frequency_only_changes_the_transactions(tmp_path: Path):
    src = edge_flow(25)
    expected = list(src)
    for freq in (1, 7, 5000):
        path = str(tmp_path / f"f{freq}")
        DiskCacheSerializer.save(src, path, write_frequency=freq)
        assert_same(expected, list(DiskCacheSerializer.load(path, shuffle=False)))


def test_a_loaded_flow_pickles_and_reopens_the_directory(tmp_path: Path):
    dps = rows(10)
    ds = DiskCacheSerializer.load(save(tmp_path / "d", dps), shuffle=False)
    list(ds)
    clone = pickle.loads(pickle.dumps(ds))
    assert_same(dps, list(clone))


def write_tensorpack_diskcache(path: Path, dps: list) -> str:
    """A directory as tensorpack's DiskCacheSerializer writes it: pickled datapoints under 0..n-1."""
    index = diskcache.Index(str(path))
    for i, dp in enumerate(dps):
        index[i] = pickle.dumps(dp, protocol=-1)
    index.cache.close()
    return str(path)


def test_reads_a_tensorpack_diskcache_only_with_allow_pickle(tmp_path: Path):
    dps = rows(15)
    path = write_tensorpack_diskcache(tmp_path / "tp", dps)
    with pytest.raises(FormatError, match="tensorpack.*allow_pickle=True"):
        DiskCacheSerializer.load(path)
    ds = DiskCacheSerializer.load(path, shuffle=False, allow_pickle=True)
    assert len(ds) == 15
    assert_same(dps, list(ds))
    assert_same(dps, by_index(list(DiskCacheSerializer.load(path, allow_pickle=True))))


class Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_values_diskcache_pickled_itself_are_never_unpickled(tmp_path: Path):
    marker = tmp_path / "pwned"
    path = save(tmp_path / "d", rows(5))
    # diskcache pickles any value that is not bytes/str/int/float: plant one in our directory
    index = diskcache.Index(path)
    index[2] = Payload(str(marker))
    index.cache.close()
    assert not marker.exists()
    ds = DiskCacheSerializer.load(path, shuffle=False)
    with pytest.raises(FormatError, match="datapoint 2 is a pickle.*allow_pickle=True"):
        list(ds)
    assert not marker.exists()


def test_a_value_file_outside_the_directory_is_refused(tmp_path: Path):
    secret = tmp_path / "secret"
    secret.write_bytes(codec.dumps(["not yours"]))
    path = save(tmp_path / "d", rows(3))
    con = sqlite3.connect(str(Path(path, "cache.db")))
    # MODE_BINARY: the value lives in the file the row names
    con.execute(
        "UPDATE Cache SET mode = ?, filename = ?, value = NULL WHERE key = 1 AND raw = 1",
        (diskcache.core.MODE_BINARY, "../secret"),
    )
    con.commit()
    con.close()
    with pytest.raises(FormatError, match="datapoint 1.*outside the cache directory"):
        list(DiskCacheSerializer.load(path, shuffle=False))


def test_save_refuses_bad_paths_and_arguments(tmp_path: Path):
    dps = rows(3)
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(DataFlowArgumentError, match="not a directory"):
        save(a_file, dps)
    full = tmp_path / "full"
    full.mkdir()
    (full / "other").write_text("x")
    with pytest.raises(DataFlowArgumentError, match="not empty"):
        save(full, dps)
    assert sorted(p.name for p in full.iterdir()) == ["other"]
    with pytest.raises(DataFlowArgumentError, match="write_frequency"):
        save(tmp_path / "w", dps, write_frequency=0)
    with pytest.raises(DataFlowArgumentError, match="df"):
        DiskCacheSerializer.save([[1]], str(tmp_path / "w"))
    with pytest.raises(DataFlowArgumentError, match="path"):
        DiskCacheSerializer.save(DataFromList(dps), 3)
    # accepted: an existing empty directory, and missing parents (created, as tensorpack did)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_same(dps, list(DiskCacheSerializer.load(save(empty, dps), shuffle=False)))
    nested = tmp_path / "a" / "b" / "c"
    assert_same(dps, list(DiskCacheSerializer.load(save(nested, dps), shuffle=False)))
    # a directory that was saved into is no longer empty
    with pytest.raises(DataFlowArgumentError, match="not empty"):
        save(nested, dps)


def test_load_refuses_what_is_not_a_diskcache_of_ours(tmp_path: Path):
    with pytest.raises(DataFlowArgumentError, match="does not exist"):
        DiskCacheSerializer.load(str(tmp_path / "missing"))
    assert not (tmp_path / "missing").exists()  # and it did not create it
    a_file = tmp_path / "file"
    a_file.write_bytes(b"\0" * 100)
    with pytest.raises(DataFlowArgumentError, match="not a directory"):
        DiskCacheSerializer.load(str(a_file))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FormatError, match="not a diskcache directory"):
        DiskCacheSerializer.load(str(empty))
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "cache.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(FormatError, match="garbage.*not a readable diskcache"):
        DiskCacheSerializer.load(str(garbage))
    # one entry more than the header's count
    path = save(tmp_path / "d", rows(4))
    index = diskcache.Index(path)
    index[4] = codec.dumps([4])
    index.cache.close()
    with pytest.raises(FormatError, match="holds 5 entries besides its header, which says 4"):
        DiskCacheSerializer.load(path)
    # a missing datapoint (the count kept)
    path = save(tmp_path / "e", rows(4))
    index = diskcache.Index(path)
    del index[1]
    index["extra"] = b"keeps the number of entries"
    index.cache.close()
    with pytest.raises(FormatError, match="datapoint 1 is missing"):
        list(DiskCacheSerializer.load(path, shuffle=False))


@pytest.mark.timeout(60)
def test_without_diskcache_the_error_names_the_extra(tmp_path: Path):
    code = f"""
        import sys
        sys.modules["diskcache"] = None  # as if not installed
        import dataflow
        from dataflow.serialize import DiskCacheSerializer
        calls = [
            lambda: DiskCacheSerializer.save(dataflow.DataFromList([[1]]), {str(tmp_path / "x")!r}),
            lambda: DiskCacheSerializer.load({str(tmp_path)!r}),
        ]
        for call in calls:
            try:
                call()
            except ImportError as e:
                assert "DiskCacheSerializer requires diskcache: pip install 'pydataflow[diskcache]'" in str(e), e
            else:
                raise SystemExit("no ImportError")
        """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=50
    )
    assert result.returncode == 0, result.stderr
    assert list(tmp_path.iterdir()) == []

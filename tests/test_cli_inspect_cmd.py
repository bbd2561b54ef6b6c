"""`dataflow inspect` (dataflow.cli.inspect_cmd), run as a user runs it: a subprocess."""

from __future__ import annotations

import numpy as np
import pytest

from dataflow.serialize import HDF5Serializer, NumpySerializer, TFRecordSerializer
from test_cli_parser import last_line, run_in, run_main


@pytest.mark.timeout(60)
def test_inspect_every_serializer_format(tmp_path, capsys):
    from dataflow import DataFromList

    points = [[np.arange(3, dtype=np.int16) + i, i, f"item{i}"] for i in range(5)]
    NumpySerializer.save(DataFromList(points, shuffle=False), str(tmp_path / "d.npz"))
    TFRecordSerializer.save(DataFromList(points, shuffle=False), str(tmp_path / "d.tfrecord"))
    HDF5Serializer.save(
        DataFromList(points, shuffle=False), str(tmp_path / "d.h5"), ["a", "b", "c"]
    )
    for name, kind in (
        ("d.npz", "NumpySerializer .npz"),
        ("d.tfrecord", "TFRecord written by dataflow"),
        ("d.h5", "HDF5 written by dataflow"),
    ):
        code, out, err = run_main(capsys, "inspect", str(tmp_path / name), "--num", "1")
        assert code == 0, err
        assert kind in out and "5 datapoints" in out
        assert "0: ndarray int16 of shape (3,) in range [0, 2]" in out
        assert "2: str of len 5: 'item0'" in out
        assert "datapoint 1 of" not in out  # --num 1

    (tmp_path / "junk.bin").write_bytes(b"just some bytes, no format at all" * 4)
    result = run_in(tmp_path, "inspect", "junk.bin")
    assert result.returncode == 1
    assert last_line(result.stderr) == (
        "dataflow inspect: error: junk.bin: not a format dataflow reads (LMDB, NumpySerializer "
        ".npz, TFRecord, HDF5)"
    )
    code, _, err = run_main(capsys, "inspect", str(tmp_path / "missing.lmdb"))
    assert code == 2 and "no such file" in err


@pytest.mark.timeout(60)
def test_inspect_shows_tensorpack_pickles_only_when_allowed(tmp_path, capsys):
    import pickle

    import lmdb

    path = str(tmp_path / "tensorpack.lmdb")
    env = lmdb.open(path, subdir=False, map_size=1 << 24)
    with env.begin(write=True) as txn:
        keys = [b"%08d" % i for i in range(3)]
        for i, key in enumerate(keys):
            txn.put(key, pickle.dumps([np.zeros((2, 2), np.float32), i]))
        txn.put(b"__keys__", pickle.dumps(keys))
    env.close()

    code, out, err = run_main(capsys, "inspect", path)
    assert code == 0, err
    assert "tensorpack's LMDBSerializer" in out and "count:" in out and "3 datapoints" in out
    assert "--allow-pickle" in out and "DataFlow contents" not in out
    code, out, err = run_main(capsys, "inspect", path, "--allow-pickle", "--num", "3")
    assert code == 0, err
    assert "0: ndarray float32 of shape (2, 2) in range [0.0, 0.0]" in out
    assert "1: int with value 2" in out

"""dataflow.format, the package: its public names are tensorpack's, every reader imports without its
optional dependency and says what to install when used; helpers the per-format tests share."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import lmdb
import pytest


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


def first_components_in_child(ds, conn) -> None:
    """For flows.run_in_child: send ("ok", [dp[0] for dp in ds]), or ("error", repr) if it raised."""
    try:
        conn.send(("ok", [dp[0] for dp in ds]))
    except BaseException as e:
        conn.send(("error", repr(e)))


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

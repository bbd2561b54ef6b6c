"""``dataflow inspect``: describe a file written by a serializer (LMDB, .npz, TFRecord, HDF5): its
format, header, count and first datapoints.

(Named ``inspect_cmd`` so that it is not mistaken for the standard library's ``inspect``.)
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from itertools import islice
from typing import Any

import numpy as np

from ..errors import DataFlowArgumentError, FormatError
from ._shared import _human_bytes, _path_size

_LMDB_MAGIC_AT_16 = b"\xde\xc0\xef\xbe"  # MDB_MAGIC 0xBEEFC0DE in the meta page, little-endian
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_ZIP_MAGIC = b"PK\x03\x04"
_IMAGE_MAGIC = {b"\xff\xd8\xff": "JPEG", b"\x89PNG": "PNG", b"BM": "BMP", b"RIFF": "WebP"}


def _detect_format(path: str) -> str:
    from .. import codec

    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, "data.mdb")):
            return "lmdb"
        raise FormatError(f"{path} is a directory without data.mdb (not an LMDB database)")
    with open(path, "rb") as f:
        head = f.read(64)
    if head[16:20] == _LMDB_MAGIC_AT_16:
        return "lmdb"
    if head.startswith(_HDF5_MAGIC):
        return "hdf5"
    if head.startswith(_ZIP_MAGIC):
        return "npz"
    if head[12 : 12 + len(codec.MAGIC)] == codec.MAGIC:
        return "tfrecord"
    if len(head) >= 12 and path.endswith((".tfrecord", ".tfrecords")):
        return "tfrecord"
    raise FormatError(
        f"{path}: not a format dataflow reads (LMDB, NumpySerializer .npz, TFRecord, HDF5)"
    )


def _format_header(info: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in info.items() if k != "count")


def _inspect_lmdb(path: str, allow_pickle: bool) -> tuple[list[tuple[str, str]], Any]:
    from .. import codec
    from .._lazy import require
    from ..format import LMDB_HEADER_KEY, TENSORPACK_KEYS_KEY, LMDBData
    from ..serialize import LMDBSerializer

    lmdb = require("lmdb", "lmdb", who="dataflow inspect")
    subdir = os.path.isdir(path)
    try:
        env = lmdb.open(path, subdir=subdir, readonly=True, lock=False, readahead=False)
    except lmdb.Error as e:
        raise FormatError(f"{path}: cannot open it as an LMDB database: {e}") from e
    try:
        with env.begin() as txn:
            entries = int(env.stat()["entries"])
            header = txn.get(LMDB_HEADER_KEY)
            has_keys = txn.get(TENSORPACK_KEYS_KEY) is not None
    finally:
        env.close()
    if header is not None:
        info = codec.decode_header(header, "lmdb", path)
        rows = [
            ("format", "LMDB written by dataflow's LMDBSerializer"),
            ("header", _format_header(info)),
            ("count", f"{info['count']} datapoints"),
        ]
        return rows, LMDBSerializer.load(path, shuffle=False)
    if has_keys:
        rows = [
            ("format", "LMDB written by tensorpack's LMDBSerializer (pickled values)"),
            ("header", "none (tensorpack's __keys__ record)"),
            ("count", f"{entries - 1} datapoints"),
        ]
        if not allow_pickle:
            rows.append(
                (
                    "datapoints",
                    "not shown: they are pickles, and unpickling runs code chosen by the file's "
                    "author. Pass --allow-pickle if you trust this file.",
                )
            )
            return rows, None
        return rows, LMDBSerializer.load(path, shuffle=False, allow_pickle=True)
    rows = [
        ("format", "LMDB of raw key/value records (not written by a serializer)"),
        ("header", "none"),
        ("count", f"{entries} records, shown as [key, value] bytes"),
    ]
    return rows, LMDBData(path, shuffle=False)


def _inspect_npz(path: str, allow_pickle: bool) -> tuple[list[tuple[str, str]], Any]:
    from .. import codec
    from ..serialize import NumpySerializer

    try:
        with np.load(path, allow_pickle=False) as npz:
            names = list(npz.files)
            header = npz["dataflow_header"] if "dataflow_header" in names else None
            legacy_len = len(npz["buffer"]) if header is None and "buffer" in names else None
    except ValueError:  # an object array: tensorpack's pickled buffer
        header, legacy_len = None, None
        names = ["buffer"]
    except Exception as e:
        raise FormatError(f"{path}: not a readable .npz file ({type(e).__name__}: {e})") from e
    if header is not None:
        info = codec.decode_header(header.tobytes(), "npz", path)
        rows = [
            ("format", "NumpySerializer .npz written by dataflow"),
            ("header", _format_header(info)),
            ("count", f"{info['count']} datapoints"),
        ]
        return rows, NumpySerializer.load(path, shuffle=False)
    if "buffer" not in names:
        raise FormatError(f"{path}: a .npz file not written by NumpySerializer (arrays: {names})")
    rows = [
        ("format", "NumpySerializer .npz written by tensorpack (pickled datapoints)"),
        ("header", "none"),
        ("count", f"{legacy_len} datapoints" if legacy_len is not None else "unknown"),
    ]
    if not allow_pickle:
        rows.append(("datapoints", "not shown: they are pickles (pass --allow-pickle to read)"))
        return rows, None
    return rows, NumpySerializer.load(path, shuffle=False, allow_pickle=True)


def _inspect_tfrecord(path: str, allow_pickle: bool) -> tuple[list[tuple[str, str]], Any]:
    from .. import codec
    from ..serialize import TFRecordSerializer

    # The first record (TFRecord framing: uint64 length, uint32 CRC, data, uint32 CRC) holds
    # dataflow's header; TFRecordSerializer.load checks the framing and CRCs of the whole file.
    with open(path, "rb") as f:
        head = f.read(12)
        length = int.from_bytes(head[:8], "little") if len(head) == 12 else 0
        first = f.read(min(length, 1 << 20))
    if first.startswith(codec.MAGIC):
        info = codec.decode_header(first, "tfrecord", path)
        rows = [
            ("format", "TFRecord written by dataflow's TFRecordSerializer"),
            ("header", _format_header(info)),
            ("count", f"{info['count']} datapoints"),
        ]
        return rows, TFRecordSerializer.load(path)
    rows = [
        ("format", "TFRecord without a dataflow header (tensorpack's pickles, or TensorFlow's)"),
        ("header", "none"),
        ("count", "unknown (TFRecord has no index)"),
    ]
    if not allow_pickle:
        rows.append(("datapoints", "not shown: pass --allow-pickle if tensorpack wrote it"))
        return rows, None
    return rows, TFRecordSerializer.load(path, allow_pickle=True)


def _inspect_hdf5(path: str, allow_pickle: bool) -> tuple[list[tuple[str, str]], Any]:
    from .. import codec
    from .._lazy import require
    from ..format import HDF5_HEADER_ATTR
    from ..serialize import HDF5Serializer

    h5py = require("h5py", "hdf5", who="dataflow inspect")
    datasets: list[str] = []
    with h5py.File(path, "r") as f:
        raw = f.attrs.get(HDF5_HEADER_ATTR)
        f.visititems(
            lambda name, obj: (
                datasets.append(f"{name} {obj.shape} {obj.dtype}")
                if isinstance(obj, h5py.Dataset)
                else None
            )
        )
    if raw is not None:
        info = codec.decode_header(np.void(raw).tobytes(), "hdf5", path)
        paths = list(info.get("data_paths", []))
        rows = [
            ("format", "HDF5 written by dataflow's HDF5Serializer"),
            ("header", _format_header(info)),
            ("count", f"{info['count']} datapoints"),
            ("datasets", "; ".join(datasets)),
        ]
        return rows, HDF5Serializer.load(path, paths, shuffle=False)
    rows = [
        ("format", "HDF5 (not written by HDF5Serializer)"),
        ("header", "none"),
        ("datasets", "; ".join(datasets) or "none"),
        ("datapoints", "not shown: read it with HDF5Data(path, [dataset paths])"),
    ]
    return rows, None


@contextlib.contextmanager
def _print_data_to_stdout() -> Iterator[None]:
    """Route PrintData's descriptions (the ``dataflow.common`` logger) to stdout, for a while."""
    log = logging.getLogger("dataflow.common")
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    saved = (log.level, log.propagate)
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(saved[0])
        log.propagate = saved[1]


def _encoded_image_note(index: Any, component: Any) -> str | None:
    """A line about a component that holds an encoded image (as ``convert`` stores them)."""
    if isinstance(component, np.ndarray) and component.dtype == np.uint8 and component.ndim == 1:
        data = component.tobytes()
    elif isinstance(component, (bytes, bytearray)):
        data = bytes(component)
    else:
        return None
    kind = next((k for magic, k in _IMAGE_MAGIC.items() if data.startswith(magic)), None)
    if kind is None:
        return None
    try:
        from ..image import imdecode

        img = imdecode(data, 3)
    except (ImportError, FormatError):
        return f"  ({index}: {kind} bytes that do not decode)"
    return f"  ({index}: an encoded {kind} image, {img.shape[1]}x{img.shape[0]} when decoded)"


def run_inspect(args: argparse.Namespace) -> int:
    from ..common import PrintData

    path = args.file
    if not os.path.exists(path):
        raise DataFlowArgumentError(f"{path}: no such file or directory")
    kind = _detect_format(path)
    inspectors = {
        "lmdb": _inspect_lmdb,
        "npz": _inspect_npz,
        "tfrecord": _inspect_tfrecord,
        "hdf5": _inspect_hdf5,
    }
    rows, flow = inspectors[kind](path, args.allow_pickle)
    rows.insert(0, ("file", path))
    rows.append(("size", _human_bytes(_path_size(path))))
    width = max(len(k) for k, _ in rows) + 1
    for key, value in rows:
        print(f"{key + ':':<{width}} {value}")
    if flow is None or args.num == 0:
        if flow is not None:
            flow.close()
        return 0
    print(f"\nfirst {args.num} datapoint(s):")
    sys.stdout.flush()
    shown = 0
    with flow, _print_data_to_stdout():
        described = PrintData(flow, num=args.num, name=os.path.basename(path.rstrip(os.sep)))
        for dp in islice(described, args.num):
            shown += 1
            items = dp.items() if isinstance(dp, dict) else enumerate(dp)
            for index, component in items if isinstance(dp, (list, tuple, dict)) else []:
                note = _encoded_image_note(index, component)
                if note:
                    print(note)
            sys.stdout.flush()
    if shown == 0:
        print("(the file holds no datapoints)")
    return 0

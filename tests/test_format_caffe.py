"""dataflow.format.caffe: CaffeLMDB reads caffe.Datum records (bytes and float data, HWC), drops
records it cannot parse."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dataflow.format import CaffeLMDB, parse_caffe_datum
from test_format import write_plain_lmdb


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

"""dataflow.serialize.tfrecord and dataflow._tfrecord: TensorFlow's framing and CRC32C, written and
checked without TensorFlow; tensorpack's pickled records only with allow_pickle."""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dataflow._tfrecord as tfrecord
from dataflow import codec
from dataflow.errors import (
    FormatError,
    LengthUnknownError,
)
from dataflow.raw import DataFromList
from dataflow.serialize import (
    TFRecordSerializer,
)
from test_codec import assert_same
from test_serialize import (
    FUZZ,
)

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

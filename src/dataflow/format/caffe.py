"""CaffeLMDB: Caffe's LMDB layout (values are ``caffe.Datum`` protobufs, parsed here without
protobuf), read through LMDBData and LMDBDataDecoder."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._lazy import require
from .lmdb import LMDBData, LMDBDataDecoder

logger = logging.getLogger(__name__)


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def parse_caffe_datum(buf: bytes) -> dict[str, Any]:
    """Parse a serialized ``caffe.Datum`` protobuf (no protobuf library needed).

    Returns a dict with ``channels``, ``height``, ``width``, ``label`` (ints), ``data`` (bytes),
    ``float_data`` (float32 array) and ``encoded`` (bool). Raises ValueError on a malformed message.
    """
    fields: dict[str, Any] = {
        "channels": 0,
        "height": 0,
        "width": 0,
        "label": 0,
        "data": b"",
        "encoded": False,
    }
    floats: list[np.ndarray] = []
    pos = 0
    n = len(buf)
    names = {1: "channels", 2: "height", 3: "width", 5: "label", 7: "encoded"}
    while pos < n:
        tag, pos = _read_varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _read_varint(buf, pos)
            if number in names:
                if number == 5 and value >= 2**63:  # label is an int32: negative as 10 bytes
                    value -= 2**64
                fields[names[number]] = bool(value) if number == 7 else value
        elif wire == 2:
            length, pos = _read_varint(buf, pos)
            if pos + length > n:
                raise ValueError("truncated field")
            chunk = buf[pos : pos + length]
            pos += length
            if number == 4:
                fields["data"] = bytes(chunk)
            elif number == 6:  # packed float_data
                if length % 4:
                    raise ValueError("bad packed float_data")
                floats.append(np.frombuffer(chunk, dtype="<f4"))
        elif wire == 5:
            if pos + 4 > n:
                raise ValueError("truncated field")
            if number == 6:  # unpacked float_data
                floats.append(np.frombuffer(buf[pos : pos + 4], dtype="<f4"))
            pos += 4
        elif wire == 1:
            pos += 8
            if pos > n:
                raise ValueError("truncated field")
        else:
            raise ValueError(f"unsupported wire type {wire}")
    fields["float_data"] = (
        np.concatenate(floats).astype(np.float32) if floats else np.empty(0, np.float32)
    )
    return fields


class _CaffeDecoder:
    def __init__(self) -> None:
        self.warned = 0

    def __call__(self, key: bytes, value: bytes) -> list | None:
        try:
            d = parse_caffe_datum(value)
            if d["encoded"]:
                cv2 = require("cv2", "image", who="CaffeLMDB (encoded images)")
                img = cv2.imdecode(np.frombuffer(d["data"], np.uint8), cv2.IMREAD_UNCHANGED)
                if img is None:
                    raise ValueError("cannot decode the encoded image")
                if img.ndim == 2:
                    img = img[:, :, None]
                return [img, d["label"]]
            c, h, w = d["channels"], d["height"], d["width"]
            if d["data"]:
                img = np.frombuffer(d["data"], dtype=np.uint8)
            else:
                img = d["float_data"]
            img = img.reshape(c, h, w).transpose(1, 2, 0)
            return [np.ascontiguousarray(img), d["label"]]
        except ImportError:
            raise
        except Exception as e:
            self.warned += 1
            if self.warned <= 10:
                logger.warning("CaffeLMDB: cannot read key %r, dropped: %s", key, e)
            return None


def CaffeLMDB(lmdb_path: str, shuffle: bool = True, keys: Sequence | str | None = None):
    """Read a Caffe-format LMDB whose values are ``caffe.Datum`` protobufs.

    Yields ``[image, label]``: the image HWC (uint8 from ``data``, float32 from ``float_data``, or
    decoded with OpenCV when the datum is ``encoded``), the label an int. A record that cannot be
    parsed is dropped with a warning (the first ten are logged), as in tensorpack. The protobuf is
    parsed directly: neither Caffe nor protobuf is needed, only ``lmdb``.

    Note that Caffe's LMDBs usually hold raw pixels rather than JPEG, so they are large and slow to
    read from disk; LMDBSerializer with JPEG bytes is the efficient layout.

    Args:
        lmdb_path, shuffle, keys: as for :class:`LMDBData`.

    Example::

        ds = CaffeLMDB("/data/ilsvrc12_val_lmdb", shuffle=False)
    """
    lmdb_data = LMDBData(lmdb_path, shuffle, keys)
    return LMDBDataDecoder(lmdb_data, _CaffeDecoder())

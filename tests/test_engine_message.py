"""dataflow._engine.message: arrays of every dtype kind travel through a ring with dtype, shape and
type intact."""

from __future__ import annotations

import numpy as np

from test_engine_transport import _roundtrip


def test_arrays_of_every_dtype_kind_round_trip_with_dtype_shape_and_type_intact():
    # Plain dtypes travel as (buffer, dtype string, shape); the rest keep numpy's own pickling.
    # Either way the receiver gets what was sent, byte order and metadata included.
    arrays = [
        np.array(True),
        np.array(2.5),
        np.arange(5, dtype=np.int8),
        np.arange(7, dtype=">i4"),
        np.arange(3, dtype=np.uint64),
        np.linspace(0, 1, 9, dtype=np.float16),
        np.array([1 + 2j, 3j], dtype=np.complex128),
        np.array(["2026-12-05T10:00", "NaT"], dtype="datetime64[ns]"),
        np.array([3, -4], dtype="timedelta64[s]"),
        np.array([b"ab", b"c"], dtype="S3"),
        np.array(["xy", "z"], dtype=">U2"),
        np.zeros((0, 4), dtype=np.float32),
        np.arange(6000.0).reshape(60, 100),  # large: out of band
        np.zeros(3, dtype=[("a", "<i4"), ("b", "<f8")]),  # structured
        np.array([{"k": 1}, None], dtype=object),
        np.ma.masked_array([1, 2, 3], mask=[0, 1, 0]),  # a subclass
        np.array([1, 2], dtype=np.dtype(np.int64, metadata={"unit": "m"})),
        np.arange(24, dtype=np.int16).reshape(2, 3, 4).transpose(1, 0, 2),  # not contiguous
    ]
    (out,) = _roundtrip(1 << 20, [arrays])
    assert len(out) == len(arrays)
    for a, b in zip(arrays, out):
        assert type(b) is type(a)
        assert b.dtype == a.dtype and b.dtype.str == a.dtype.str, (a.dtype, b.dtype)
        assert b.dtype.metadata == a.dtype.metadata
        assert b.shape == a.shape
        np.testing.assert_array_equal(b, a)
        assert b.flags.writeable
    assert (out[15].mask == arrays[15].mask).all()

"""dataflow.codec: exact round trips of every type it holds, no code execution, FormatError on any
malformed input (fuzzed), and the file header."""

from __future__ import annotations

import collections
import enum
import pickle
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataflow import codec
from dataflow.errors import DatapointError, FormatError
from flows import assert_same  # test_format and test_serialize import it from here

FUZZ = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)


EDGE_VALUES = [
    None,
    True,
    False,
    0,
    -1,
    2**31 + 5,
    2**63 - 1,
    2**63,
    2**64 - 1,
    -(2**63),
    2**64,  # beyond msgpack: an extension
    -(2**200),
    1.5,
    float("inf"),
    float("nan"),
    -0.0,
    3 + 4j,
    "",
    "héllo wörld ✓",
    b"",
    b"\x00\xff\x80",
    [],
    (),
    {},
    [1, [2, [3, []]]],
    (1, (2, (3,))),
    {"a": 1, 2: "b", (1, 2): [3], b"k": None, 1.5: 2, None: 3, True: 4},
    np.bool_(True),
    np.int8(-5),
    np.uint64(2**64 - 1),
    np.int64(-(2**63)),
    np.float16(1.5),
    np.float32(np.nan),
    np.complex64(1 - 2j),
    np.datetime64("2024-01-02T03:04:05", "s"),
    np.timedelta64(5, "ms"),
    np.str_("unicode ✓"),
    np.bytes_(b"ab"),
    np.array(7),
    np.array(True),
    np.array(2.5, dtype=np.float16),
    np.zeros((0,), np.float32),
    np.zeros((3, 0, 2), np.int64),
    np.arange(24, dtype=np.uint8).reshape(2, 3, 4),
    np.array([2**40, -(2**62)], dtype=np.int64),
    np.array([True, False, True]),
    np.linspace(0, 1, 7, dtype=np.float16),
    np.array([1 + 2j, 3j], dtype=np.complex128),
    np.array(["a", "bcd", ""]),
    np.array([b"x", b"yz\x00"]),
    np.array(["2020-01-01", "NaT"], dtype="M8[D]"),
    np.zeros(2, dtype=[("a", "<i4"), ("b", "<f8", (2,))]),
    np.zeros(3, dtype=">i4") + 7,  # big-endian stays big-endian
    np.arange(100, dtype=np.int32).reshape(10, 10)[::2, 1::3],  # not contiguous
    np.asfortranarray(np.arange(6, dtype=np.float64).reshape(2, 3)),
    np.random.default_rng(0).integers(0, 256, (64, 48, 3), dtype=np.uint8),  # an image
]


@pytest.mark.parametrize("value", EDGE_VALUES, ids=lambda v: type(v).__name__)
@pytest.mark.parametrize("copy", [False, True])
def test_each_value_round_trips_with_its_type(value, copy):
    assert_same(value, codec.loads(codec.dumps(value), copy=copy))


def test_a_datapoint_mixing_everything_round_trips():
    dp = [
        np.arange(12, dtype=np.float16).reshape(3, 4),
        (np.array(1), {"img": np.zeros((2, 2, 3), np.uint8), "labels": (1, 2**40)}),
        [b"jpeg", "caption", None, [np.array([], dtype=np.int8)]],
        np.int64(9),
    ]
    assert_same(dp, codec.loads(codec.dumps(dp)))


def test_subclasses_come_back_as_their_base_type():
    class Color(enum.IntEnum):
        RED = 3

    Point = collections.namedtuple("Point", "x y")
    value = [
        Color.RED,
        collections.OrderedDict(b=1, a=2),
        Point(1, 2),
        np.array([[1, 2]]).view(ArraySubclass),
        bytearray(b"ab"),
    ]
    out = codec.loads(codec.dumps(value))
    assert out[0] == 3 and type(out[0]) is int
    assert out[1] == {"b": 1, "a": 2} and type(out[1]) is dict and list(out[1]) == ["b", "a"]
    assert out[2] == (1, 2) and type(out[2]) is tuple
    assert type(out[3]) is np.ndarray and out[3].tolist() == [[1, 2]]
    assert out[4] == b"ab"


def test_arrays_view_the_buffer_without_a_copy_unless_asked():
    arr = np.arange(1000, dtype=np.float64)
    buf = bytearray(codec.dumps([arr]))
    (view,) = codec.loads(buf)
    assert np.array_equal(view, arr) and not view.flags.owndata
    view[0] = 42.0  # a writable buffer gives writable views onto it
    assert codec.loads(buf)[0][0] == 42.0

    (readonly,) = codec.loads(bytes(buf))
    assert not readonly.flags.writeable  # bytes are immutable: the view is read-only

    (owned,) = codec.loads(bytes(buf), copy=True)
    assert owned.flags.writeable and owned.flags.owndata and owned.flags.aligned
    owned[1] = -1.0
    assert codec.loads(buf)[0][1] == 1.0


def test_large_array_data_is_aligned_in_the_message():
    arr = np.ones((256, 256), np.float32)
    msg = codec.dumps([1, arr, "x"])
    base = np.frombuffer(msg, np.uint8).ctypes.data
    (_, view, _) = codec.loads(msg)
    assert (view.ctypes.data - base) % 64 == 0


class Opaque:
    def __eq__(self, other):
        return type(other) is type(self)


class ArraySubclass(np.ndarray):
    pass


def test_object_arrays_and_unknown_types_need_pickle():
    for value in ([Opaque()], np.array([1, "a"], dtype=object), {1, 2}, [lambda: 0]):
        with pytest.raises(DatapointError, match="allow_pickle"):
            codec.dumps(value)
    msg = codec.dumps([Opaque(), {1, 2}], allow_pickle=True)
    with pytest.raises(FormatError, match="allow_pickle"):
        codec.loads(msg)
    assert codec.loads(msg, allow_pickle=True) == [Opaque(), {1, 2}]
    with pytest.raises(DatapointError, match="cannot pickle"):
        codec.dumps([lambda: 0], allow_pickle=True)


def test_encoding_errors_name_the_problem():
    with pytest.raises(DatapointError, match="surrogates|encode"):
        codec.dumps(["\udcff"])
    deep = []
    for _ in range(codec._MAX_NESTED + 1):
        deep = (deep,)
    with pytest.raises(DatapointError, match="nested"):
        codec.dumps(deep)


def test_decoding_never_runs_a_pickle(tmp_path: Path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    raw_pickle = pickle.dumps(Payload())
    codec_pickle = codec.dumps([Payload()], allow_pickle=True)
    for data in (raw_pickle, codec_pickle, b"\xc1" + raw_pickle):
        with pytest.raises(FormatError):
            codec.loads(data)
    assert not marker.exists()


def test_plain_messages_are_plain_msgpack():
    import msgpack

    assert codec.dumps([1, "a", b"b", 2.5]) == msgpack.packb([1, "a", b"b", 2.5])


def test_thread_safety_of_encoding_and_decoding():
    values = [[i, (i, (np.full(3, i),)), {"k": np.float16(i)}] for i in range(300)]
    errors = []

    def work():
        try:
            for v in values:
                assert_same(v, codec.loads(codec.dumps(v)))
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors


def test_decoder_function_matches_loads():
    dec = codec.decoder(copy=True)
    msg = codec.dumps([np.arange(5), (1, 2)])
    assert_same(codec.loads(msg), dec(msg))
    with pytest.raises(FormatError):
        dec(b"\xc1\x00")


# -- fuzzing --------------------------------------------------------------------------------------

SAMPLES = [
    codec.dumps(v)
    for v in (
        [1, 2.5, "x", b"y", None],
        [np.arange(10, dtype=np.float16), (np.array(3), {"a": np.zeros((2, 2), np.uint8)})],
        {"k": (1, (2, np.int64(-7))), "big": 2**70, "c": 1j},
        [np.array(["ab", "c"]), np.zeros(2, dtype=[("a", "<i4")])],
    )
]


def _decode_or_format_error(data) -> None:
    try:
        codec.loads(data)
        codec.loads(data, copy=True)
    except FormatError:
        pass


@FUZZ
@given(st.binary(max_size=300))
def test_fuzz_random_bytes_give_a_value_or_format_error(data):
    _decode_or_format_error(data)
    _decode_or_format_error(b"\xc1" + data)  # random data behind the out-of-band marker


@FUZZ
@given(st.sampled_from(SAMPLES), st.data())
def test_fuzz_truncations_give_format_error(msg, data):
    cut = data.draw(st.integers(0, len(msg) - 1))
    with pytest.raises(FormatError):
        codec.loads(msg[:cut])


@FUZZ
@given(st.sampled_from(SAMPLES), st.data())
def test_fuzz_bit_flips_give_a_value_or_format_error(msg, data):
    buf = bytearray(msg)
    for _ in range(data.draw(st.integers(1, 8))):
        pos = data.draw(st.integers(0, len(buf) - 1))
        buf[pos] ^= 1 << data.draw(st.integers(0, 7))
    _decode_or_format_error(bytes(buf))


@FUZZ
@given(st.sampled_from(SAMPLES), st.binary(min_size=1, max_size=20), st.data())
def test_fuzz_spliced_bytes_give_a_value_or_format_error(msg, junk, data):
    pos = data.draw(st.integers(0, len(msg)))
    _decode_or_format_error(msg[:pos] + junk + msg[pos:])


_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=10)
    | st.binary(max_size=10)
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=4).map(tuple)
        | st.dictionaries(st.text(max_size=5) | st.integers(), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(FUZZ, max_examples=100)
@given(_values)
def test_fuzz_generated_values_round_trip(value):
    assert_same(value, codec.loads(codec.dumps(value)))


# -- header -----------------------------------------------------------------------------------


def test_header_round_trip_and_checks():
    header = codec.encode_header("lmdb", 123, extra=[1, 2])
    info = codec.decode_header(header, "lmdb", "f.lmdb")
    assert info["count"] == 123 and info["codec"] == codec.CODEC_NAME and info["extra"] == [1, 2]
    with pytest.raises(FormatError, match="f.lmdb.*'tfrecord'"):
        codec.decode_header(header, "tfrecord", "f.lmdb")
    with pytest.raises(FormatError, match="f.x: not a file written by dataflow"):
        codec.decode_header(b"garbage" * 5, "lmdb", "f.x")
    with pytest.raises(FormatError, match="f.x"):
        codec.decode_header(header[:12], "lmdb", "f.x")
    with pytest.raises(FormatError, match="incomplete"):
        codec.decode_header(codec.encode_header("lmdb", codec.COUNT_UNKNOWN), "lmdb", "f.x")


def test_header_refuses_other_codecs_and_newer_versions():
    import msgpack

    def forged(**fields):
        info = {"format_version": 1, "codec": codec.CODEC_NAME, "kind": "npz", **fields}
        return codec.MAGIC + (5).to_bytes(8, "little") + msgpack.packb(info)

    assert codec.decode_header(forged(), "npz", "a.npz")["count"] == 5
    with pytest.raises(FormatError, match="a.npz.*codec 'pickle'"):
        codec.decode_header(forged(codec="pickle"), "npz", "a.npz")
    with pytest.raises(FormatError, match="a.npz.*version 99.*upgrade"):
        codec.decode_header(forged(format_version=99), "npz", "a.npz")


@FUZZ
@given(st.data())
def test_fuzz_headers_give_a_header_or_format_error(data):
    buf = bytearray(codec.encode_header("npz", 10))
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(buf) - 1))
        buf[pos] ^= 1 << data.draw(st.integers(0, 7))
    cut = data.draw(st.integers(0, len(buf)))
    try:
        info = codec.decode_header(bytes(buf[:cut]), "npz", "h")
    except FormatError:
        return
    assert isinstance(info["count"], int)

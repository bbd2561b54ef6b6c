"""dataflow.remote: a sender process feeds a RemoteDataZMQ receiver exactly; garbage, pickles and
oversized messages are dropped, never executed, never fatal (faults: test_remote_faults.py)."""

from __future__ import annotations

import logging
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataflow import codec
from dataflow.errors import DataFlowArgumentError, DatapointError, LengthUnknownError
from dataflow.raw import DataFromList
from dataflow.remote import MESSAGE_TAG, RemoteDataZMQ, send_dataflow_zmq
from flows import assert_same

pytestmark = pytest.mark.usefixtures("no_leaks")

MAKE_DP = textwrap.dedent(
    """
    import numpy as np

    def make_dp(i):
        return [
            i,
            np.full((4, 5), i, dtype=np.int32),
            np.arange(i % 7, dtype=np.float16),
            {"label": i % 10, "name": str(i), "big": np.zeros(3000, np.uint8) + (i % 256)},
            (np.int64(2**40 + i), b"\\x00" * (i % 3)),
        ]
    """
)
namespace: dict = {}
exec(MAKE_DP, namespace)
make_dp = namespace["make_dp"]

SENDER = (
    MAKE_DP
    + """
import sys
from dataflow.raw import DataFromGenerator
from dataflow.remote import send_dataflow_zmq

n = int(sys.argv[2])
send_dataflow_zmq(DataFromGenerator(lambda: map(make_dp, range(n)), size=n), sys.argv[1])
"""
)


def test_public_names_match_tensorpack():
    import dataflow.remote as remote

    assert set(remote.__all__) == {"send_dataflow_zmq", "RemoteDataZMQ"}


@pytest.mark.timeout(120)
def test_a_sender_process_feeds_the_receiver_exactly():
    n = 10_000
    ds = RemoteDataZMQ("tcp://127.0.0.1:*")
    ds.reset_state()
    (endpoint,) = ds.endpoints
    assert endpoint.startswith("tcp://127.0.0.1:") and not endpoint.endswith(":*")
    with pytest.raises(LengthUnknownError):
        len(ds)
    sender = subprocess.Popen(
        [sys.executable, "-c", SENDER, endpoint, str(n)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        it = iter(ds)
        for i in range(n):
            assert_same(make_dp(i), next(it), f"datapoint {i}")
        # the sender loops forever: the next pass starts again at 0
        assert next(it)[0] == 0
        assert ds.cnt1 == n + 1 and ds.cnt2 == 0 and ds.dropped == 0
    finally:
        sender.kill()
        sender.wait(10)
        ds.close()


@pytest.mark.timeout(60)
def test_garbage_pickles_and_oversized_messages_are_dropped_not_run(tmp_path: Path, caplog):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    ds = RemoteDataZMQ("tcp://127.0.0.1:*", max_message_size=10_000)
    ds.reset_state()
    ctx = zmq.Context()
    raw = ctx.socket(zmq.PUSH)
    raw.connect(ds.endpoints[0])
    bad = [
        [b"garbage"],  # one frame
        [MESSAGE_TAG, b"\x93\x01"],  # truncated msgpack
        [MESSAGE_TAG, pickle.dumps(Payload())],  # a raw pickle
        [MESSAGE_TAG, codec.dumps([Payload()], allow_pickle=True)],  # a pickle in the codec
        [pickle.dumps(Payload()), pickle.dumps(Payload())],  # a pickle as the tag
        [MESSAGE_TAG, codec.dumps(5)],  # not a datapoint
        [MESSAGE_TAG, b"a", b"b"],  # three frames
        [MESSAGE_TAG, b"\xc1\xff\xff\xff\xff"],  # out-of-band header pointing nowhere
    ]
    try:
        with caplog.at_level(logging.WARNING, logger="dataflow.remote"):
            for frames in bad:
                raw.send_multipart(frames)
            raw.send_multipart([MESSAGE_TAG, codec.dumps([42, np.arange(3)])])
            dp = next(iter(ds))  # everything before it was dropped
        assert_same([42, np.arange(3)], dp)
        assert ds.dropped == len(bad) and ds.cnt1 == 1
        assert not marker.exists()
        logged = caplog.text
        assert "frames, expected 2" in logged
        assert "allow_pickle" in logged and "not a datapoint" in logged
    finally:
        raw.close(linger=0)
        ctx.term()
        ds.close()


@pytest.mark.timeout(60)
def test_two_endpoints_and_a_connecting_receiver(tmp_path: Path):
    ctx = zmq.Context()
    pushers = [ctx.socket(zmq.PUSH) for _ in range(2)]
    ports = [s.bind_to_random_port("tcp://127.0.0.1") for s in pushers]
    ipc = f"ipc://{tmp_path}/feed"
    pushers[1].close(linger=0)
    pushers[1] = ctx.socket(zmq.PUSH)
    pushers[1].bind(ipc)
    ds = RemoteDataZMQ(f"tcp://127.0.0.1:{ports[0]}", ipc, bind=False)
    ds.reset_state()
    try:
        for i in range(3):
            pushers[0].send_multipart([MESSAGE_TAG, codec.dumps([0, i])])
            pushers[1].send_multipart([MESSAGE_TAG, codec.dumps([1, i])])
        it = iter(ds)
        got = sorted(next(it) for _ in range(6))
        assert got == [[s, i] for s in range(2) for i in range(3)]
        assert ds.cnt1 == 3 and ds.cnt2 == 3
    finally:
        for s in pushers:
            s.close(linger=0)
        ctx.term()
        ds.close()


def test_argument_errors():
    with pytest.raises(DataFlowArgumentError, match="addr1"):
        RemoteDataZMQ("localhost:5555")
    with pytest.raises(DataFlowArgumentError, match="hwm"):
        RemoteDataZMQ("tcp://127.0.0.1:1", hwm=0)
    with pytest.raises(DataFlowArgumentError, match="format"):
        send_dataflow_zmq(DataFromList([[1]]), "tcp://127.0.0.1:1", format="pickle")
    with pytest.raises(DataFlowArgumentError, match="df"):
        send_dataflow_zmq([[1]], "tcp://127.0.0.1:1")


@pytest.mark.timeout(30)
def test_sender_refuses_what_the_codec_cannot_encode():
    class Opaque:
        pass

    with pytest.raises(DatapointError, match="Opaque"):
        send_dataflow_zmq(DataFromList([[Opaque()]]), "tcp://127.0.0.1:*", bind=True)


class FakeFrame:
    """What recv_multipart(copy=False) returns, for fuzzing the decoder without sockets."""

    def __init__(self, data: bytes) -> None:
        self.bytes = data
        self.buffer = memoryview(bytearray(data))

    def __len__(self) -> int:
        return len(self.bytes)


VALID = codec.dumps([1, np.arange(4, dtype=np.float16), {"a": (2, b"x")}])


@settings(
    max_examples=100, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(st.data())
def test_fuzz_messages_are_decoded_or_dropped(data):
    ds = RemoteDataZMQ("tcp://127.0.0.1:1", max_message_size=5000)
    choice = data.draw(st.sampled_from(["random", "flipped", "cut"]))
    if choice == "random":
        payload = data.draw(st.binary(max_size=400))
    else:
        buf = bytearray(VALID)
        if choice == "flipped":
            for _ in range(data.draw(st.integers(1, 6))):
                pos = data.draw(st.integers(0, len(buf) - 1))
                buf[pos] ^= 1 << data.draw(st.integers(0, 7))
        else:
            buf = buf[: data.draw(st.integers(0, len(buf) - 1))]
        payload = bytes(buf)
    tag = MESSAGE_TAG if data.draw(st.booleans()) else data.draw(st.binary(max_size=8))
    frames = [FakeFrame(tag), FakeFrame(payload)][: data.draw(st.integers(1, 2))]
    dp = ds._decode(frames, 0)
    if dp is None:
        assert ds.dropped == 1
    else:
        assert isinstance(dp, (list, tuple, dict)) and ds.dropped == 0

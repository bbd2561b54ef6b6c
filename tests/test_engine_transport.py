"""dataflow._engine.transport: the shared-memory ring round-trips small, large and fragmented
messages, bounds unread items, reads large arrays in place (zero copy) without ever stalling the
writer on arrays the caller holds, and makes them private copies in a forked child."""

from __future__ import annotations

import gc
import multiprocessing
import os
import time

import numpy as np
import pytest

from dataflow._engine.message import encode
from dataflow._engine.shm import SharedSegment
from dataflow._engine.transport import Ring
from dataflow.base import DataFlow
from dataflow.parallel import MultiProcessRunnerZMQ
from flows import Megabytes, open_fds


def _roundtrip(ring_bytes: int, objs: list) -> list:
    """Write ``objs`` through one ring and read them back, interleaving as room allows."""
    seg = SharedSegment(Ring.bytes_needed(ring_bytes))
    producer, consumer = Ring(seg.buf), Ring(seg.buf)
    out = []
    try:
        for obj in objs:
            msg = encode(obj)
            if msg.size > producer.max_record:
                producer.start_fragments(msg)
                while not producer.try_write_fragments():
                    ok, got = consumer.read()
                    if ok:
                        out.append(got)
            else:
                while not producer.try_write(msg):
                    ok, got = consumer.read()
                    assert ok, "a ring with room to free must have something to read"
                    out.append(got)
        while True:
            ok, got = consumer.read()
            if not ok:
                break
            out.append(got)
    finally:
        producer.release()
        consumer.release()
        seg.close()
    return out


def test_ring_round_trips_small_large_and_fragmented_messages():
    rng = np.random.default_rng(0)
    objs = []
    for i in range(300):
        kind = i % 5
        if kind == 0:
            objs.append([i, 0.5, "text", {"k": (1, 2)}])
        elif kind == 1:
            objs.append([i, rng.integers(0, 255, size=rng.integers(1, 3000), dtype=np.uint8)])
        elif kind == 2:  # out of band, fits whole
            objs.append({"a": rng.standard_normal((64, 65)).astype(np.float32), "i": i})
        elif kind == 3:  # larger than half the ring: fragments
            objs.append([i, rng.integers(0, 1 << 30, size=40000, dtype=np.int64)])
        else:  # a non-contiguous array and a Fortran-ordered one
            objs.append(
                [i, np.arange(20000.0).reshape(100, 200)[:, ::2], np.asfortranarray(np.eye(70))]
            )
    out = _roundtrip(1 << 18, objs)
    assert len(out) == len(objs)
    for a, b in zip(objs, out):
        if isinstance(a, dict):
            assert a["i"] == b["i"] and a["a"].dtype == b["a"].dtype
            np.testing.assert_array_equal(a["a"], b["a"])
            continue
        assert a[0] == b[0]
        for x, y in zip(a[1:], b[1:]):
            if isinstance(x, np.ndarray):
                assert x.dtype == y.dtype and x.shape == y.shape
                np.testing.assert_array_equal(x, y)
                assert y.flags.writeable
            else:
                assert x == y


def test_ring_received_arrays_do_not_alias_the_ring():
    big = np.arange(100000, dtype=np.int64)
    seg = SharedSegment(Ring.bytes_needed(1 << 22))
    producer, consumer = Ring(seg.buf), Ring(seg.buf)
    assert producer.try_write(encode([big]))
    ok, (got,) = consumer.read()
    assert ok
    assert producer.try_write(encode([big * 0]))  # overwrites the same region eventually
    ok, (zero,) = consumer.read()
    np.testing.assert_array_equal(got, big)
    assert not zero.any()
    producer.release()
    consumer.release()
    seg.close()


def test_item_cap_bounds_unread_messages():
    seg = SharedSegment(Ring.bytes_needed(1 << 16))
    producer, consumer = Ring(seg.buf, item_cap=3), Ring(seg.buf, item_cap=3)
    written = 0
    while producer.try_write(encode([written])):
        written += 1
    assert written == 3
    consumer.read()
    assert producer.try_write(encode(["more"]))
    producer.release()
    consumer.release()
    seg.close()


def test_empty_ring_accepts_a_record_larger_than_its_write_offset():
    """Regression: an empty ring whose write position was past 1 MiB tried to jump back to its
    start even when the record (bigger than that offset) did not fit there; try_write then failed
    forever and a parallel map hung with tasks stuck in the consumer's outbox."""
    seg = SharedSegment(Ring.bytes_needed(8 << 20))
    try:
        producer, consumer = Ring(seg.buf), Ring(seg.buf)
        first = encode(np.zeros(1_163_000, dtype=np.uint8))
        assert producer.try_write(first)
        ok, _ = consumer.read()
        assert ok  # the ring is empty again, its write position about 1.1 MiB in
        bigger = encode(np.arange(1_200_000, dtype=np.uint32).astype(np.uint8))
        assert bigger.size > producer._wpos % producer.cap > (1 << 20)
        assert producer.try_write(bigger)
        ok, value = consumer.read()
        assert ok and np.array_equal(value, np.arange(1_200_000, dtype=np.uint32).astype(np.uint8))
        del value
        producer.release()
        consumer.release()
    finally:
        seg.close()


@pytest.mark.parametrize("payload", ["inline", "buffers", "fragmented"])
def test_item_counts_return_to_zero_after_draining_messages_of_several_items(payload):
    """A message counts ``n_items`` against the cap on both sides, whatever its layout: a small
    pickle, one with out-of-band buffers, or one cut into fragments."""
    seg = SharedSegment(Ring.bytes_needed(1 << 18))
    producer, consumer = Ring(seg.buf, item_cap=10), Ring(seg.buf, item_cap=10)
    try:
        if payload == "inline":
            obj: object = [1, 2, 3]
        elif payload == "buffers":
            obj = [np.arange(2000, dtype=np.int64)] * 3
        else:
            obj = [np.arange(40000, dtype=np.int64)] * 3  # 320 KB a buffer: fragments
        for round_ in range(4):  # more items in total than the cap: counts must come back
            msg = encode(obj, 3)
            if msg.size > producer.max_record:
                producer.start_fragments(msg)
                while not producer.try_write_fragments():
                    ok, _ = consumer.read()
                    assert not ok  # a fragment was read; the message is not complete yet
            else:
                assert producer.try_write(msg), f"round {round_}: ring refused a message"
            assert producer.unread_items() == 3
            got = None
            while got is None:
                ok, value = consumer.read()
                if ok:
                    got = value
            assert len(got) == 3
            assert producer.unread_items() == 0, f"round {round_}: items left after draining"
            del got, value
    finally:
        producer.release()
        consumer.release()
        seg.close()


def test_item_cap_holds_back_a_message_that_fragments():
    """With a cap of one message, a fragmented message may not start while the previous one is
    unread: the cap bounds what is in transit whatever the message size."""
    seg = SharedSegment(Ring.bytes_needed(1 << 18))
    producer, consumer = Ring(seg.buf, item_cap=1), Ring(seg.buf, item_cap=1)
    try:
        assert producer.try_write(encode(["small"]))
        big = encode([np.arange(40000, dtype=np.int64)])
        assert big.size > producer.max_record
        producer.start_fragments(big)
        wpos = producer._wpos
        assert not producer.try_write_fragments()
        assert producer._wpos == wpos, "a fragment was written past the item cap"
        ok, value = consumer.read()
        assert ok and value == ["small"]
        done = producer.try_write_fragments()
        while not done:
            consumer.read()
            done = producer.try_write_fragments()
        got = None
        while got is None:
            ok, value = consumer.read()
            if ok:
                got = value
        np.testing.assert_array_equal(got[0], np.arange(40000, dtype=np.int64))
        assert producer.unread_items() == 0
        del got, value
    finally:
        producer.release()
        consumer.release()
        seg.close()


@pytest.mark.timeout(60)
def test_arrays_held_by_the_caller_never_stall_the_workers():
    # 120 MB of arrays kept alive through a 16 MB ring: the held records must be evacuated
    # (private copies, same addresses) instead of blocking the writer forever.
    with MultiProcessRunnerZMQ(Megabytes(120), num_proc=2, start_method="fork") as ds:
        held = list(ds)
        assert len(held) == 120
        for arr, i in held:
            assert arr[0] == i % 251 and arr[-1] == i % 251 and (arr == i % 251).all()
        held[3][0][:] = 7  # arrays read in place are ordinary writable arrays
        assert (held[3][0] == 7).all() and held[4][0][0] == held[4][1] % 251
        del held, arr
        gc.collect()
        for _ in range(3):  # and the rings work on afterwards
            for arr, i in ds:
                assert arr[0] == i % 251 and arr[-1] == i % 251


@pytest.mark.timeout(60)
def test_zero_copy_arrays_outlive_the_flow():
    ds = MultiProcessRunnerZMQ(Megabytes(10), num_proc=1, start_method="fork")
    fds = set(open_fds())
    kept = list(ds)
    ds.close()
    assert not multiprocessing.active_children()
    for arr, i in kept:  # still readable after close: the mapping lives as long as they do
        assert (arr == i % 251).all()
    del kept, arr
    gc.collect()
    assert set(open_fds()) <= fds


class AfterMarker(DataFlow):
    """Yields ``items`` once ``marker`` exists (polled with a deadline)."""

    def __init__(self, marker: str, items: list) -> None:
        self.marker = marker
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self):
        deadline = time.monotonic() + 20
        while not os.path.exists(self.marker) and time.monotonic() < deadline:
            time.sleep(0.01)
        for arr, i in self.items:
            yield [int(arr[0]), int(arr[-1]), i]


@pytest.mark.timeout(60)
def test_arrays_read_in_place_are_private_copies_in_a_forked_child(tmp_path):
    marker = str(tmp_path / "parent-moved-on")
    with MultiProcessRunnerZMQ(Megabytes(40), num_proc=1, start_method="fork") as ds:
        it = iter(ds)
        held = [next(it) for _ in range(8)]
        # Fork a worker that reads the held arrays, let the parent drop them and read on (the ring
        # reuses their records), and only then let the child look: it must see its own copies.
        with MultiProcessRunnerZMQ(
            AfterMarker(marker, held), num_proc=1, start_method="fork"
        ) as child:
            child.reset_state()
            del held
            gc.collect()
            for _ in range(30):
                next(it)
            open(marker, "w").close()
            out = list(child)
    assert out == [[i % 251, i % 251, i] for i in range(8)]

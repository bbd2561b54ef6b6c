"""The parallel engine (dataflow._engine): transport, supervision and lifecycle, with real
processes and threads: rings round-trip any message, workers die with their parent, Ctrl-C stops
everything, and hundreds of create/iterate/close cycles leave nothing behind."""

from __future__ import annotations

import gc
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from dataflow._engine.message import encode
from dataflow._engine.shm import SharedSegment
from dataflow._engine.transport import Ring
from dataflow._engine.workers import pid_alive
from dataflow.base import DataFlow
from dataflow.errors import DataFlowArgumentError, WorkerDied, WorkerError
from dataflow.parallel import MultiProcessRunner, MultiProcessRunnerZMQ, MultiThreadRunner
from dataflow.parallel_map import (
    MultiProcessMapAndBatchData,
    MultiProcessMapData,
    MultiThreadMapData,
)

METHODS = ["fork", "forkserver", "spawn"]


class Count(DataFlow):
    def __init__(self, n: int | None = None) -> None:
        self.n = n

    def __len__(self) -> int:
        if self.n is None:
            raise NotImplementedError
        return self.n

    def __iter__(self):
        i = 0
        while self.n is None or i < self.n:
            yield [i, 0.5]
            i += 1


def double(dp):
    return [dp[0] * 2, dp[1]]


def vector(dp):
    return [np.full(8, dp[0], dtype=np.int64), dp[0]]


# -- transport -------------------------------------------------------------------------------------


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


# -- supervision -----------------------------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", METHODS)
def test_sigkill_of_a_worker_raises_worker_died_quickly(method):
    ds = MultiProcessRunnerZMQ(Count(), num_proc=2, start_method=method)
    it = iter(ds)
    next(it)
    victim = ds.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)
    t0 = time.monotonic()
    with pytest.raises(WorkerDied) as info:
        for _ in it:  # the other worker keeps producing: death must still be noticed
            pass
    assert time.monotonic() - t0 < 2.0
    msg = str(info.value)
    assert f"pid {victim}" in msg and "SIGKILL" in msg and "worker 0" in msg
    assert info.value.exitcode == -signal.SIGKILL
    ds.close()
    assert not multiprocessing.active_children()


def exit_quietly(dp):
    if dp[0] == 5:
        os._exit(7)
    return dp


@pytest.mark.timeout(60)
def test_worker_calling_os_exit_raises_worker_died_with_its_exit_code():
    ds = MultiProcessMapData(Count(100), 2, exit_quietly, strict=True, start_method="fork")
    with pytest.raises(WorkerDied, match="exit code 7"):
        list(ds)
    ds.close()


@pytest.mark.timeout(60)
def test_flow_recovers_with_fresh_workers_after_a_death():
    ds = MultiProcessRunnerZMQ(Count(), num_proc=2, start_method="fork")
    it = iter(ds)
    next(it)
    old = ds.worker_pids()
    os.kill(old[1], signal.SIGKILL)
    with pytest.raises(WorkerDied):
        for _ in it:
            pass
    assert not multiprocessing.active_children()  # the broken pool is gone at once
    it = iter(ds)
    assert len([next(it) for _ in range(100)]) == 100  # a fresh pool
    assert set(ds.worker_pids()).isdisjoint(old)
    ds.close()


# -- lifecycle -------------------------------------------------------------------------------------


def _fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def _shm() -> set[str]:
    """Named segments of ``multiprocessing.shared_memory`` (prefix ``psm_``) in ``/dev/shm``.

    Only those: other programs on the machine create and remove files there (semaphores...)
    while a test runs."""
    if not os.path.isdir("/dev/shm"):
        return set()
    return {name for name in os.listdir("/dev/shm") if name.startswith("psm_")}


def _ring_mappings() -> int:
    """Shared-memory mappings of this process still alive: ring segments (memfd
    ``dataflow-ring``) or named segments (``/dev/shm``)."""
    with open("/proc/self/maps") as f:
        return sum("dataflow-ring" in line or "/dev/shm/" in line for line in f)


def _cycle(i: int) -> None:
    kind = i % 5
    if kind == 0:
        ds = MultiProcessRunnerZMQ(Count(), num_proc=2, start_method="fork")
        it = iter(ds)
        for _ in range(50):
            next(it)
        del it
    elif kind == 1:
        ds = MultiProcessMapData(Count(200), 2, double, strict=True, start_method="fork")
        assert len(list(ds)) == 200
    elif kind == 2:
        ds = MultiProcessMapAndBatchData(Count(300), 2, vector, 16, start_method="fork")
        assert len(list(ds)) == 300 // 16
    elif kind == 3:
        ds = MultiThreadMapData(Count(200), 3, double, strict=True)
        assert len(list(ds)) == 200
    else:
        ds = MultiThreadRunner(lambda: Count(100), 20, 2)
        assert len(list(ds)) == 100
    ds.close()


@pytest.mark.timeout(300)
def test_200_cycles_leave_no_process_thread_fd_or_shm_segment():
    _cycle(0)
    _cycle(3)
    gc.collect()
    # Leaks are looked for in this process (its maps and fds), not in /dev/shm as a whole: other
    # programs on the machine create and remove segments there meanwhile.
    fds, threads, maps = _fds(), threading.active_count(), _ring_mappings()
    assert not multiprocessing.active_children()
    for i in range(200):
        _cycle(i)
    gc.collect()
    assert not multiprocessing.active_children()
    assert threading.active_count() == threads
    assert _ring_mappings() == maps
    assert _fds() == fds


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", METHODS)
def test_garbage_collection_and_context_manager_stop_workers(method):
    with MultiProcessRunner(Count(), 10, 2, start_method=method) as ds:
        it = iter(ds)
        next(it)
        pids = ds.worker_pids()
    assert all(not pid_alive(p) for p in pids)
    ds = MultiProcessMapData(Count(), 2, double, start_method=method)
    it = iter(ds)
    next(it)
    pids = ds.worker_pids()
    del ds, it
    gc.collect()
    assert all(not pid_alive(p) for p in pids)
    assert not multiprocessing.active_children()


def test_close_is_idempotent_and_before_start():
    ds = MultiProcessRunnerZMQ(Count(10), num_proc=2, start_method="fork")
    ds.close()
    ds.close()
    with MultiProcessMapData(Count(10), 2, double, strict=True, start_method="fork") as ds:
        assert sorted(x[0] for x in ds) == [2 * i for i in range(10)]
        ds.close()
        ds.close()


# A consumer with two pools. It prints the worker pids once every worker has produced something,
# so that all four are past their start-up (death signal armed, SIGINT ignored) when a test acts.
_PARENT_SCRIPT = """
import sys, time
from dataflow import get_worker_info
from dataflow.base import DataFlow
from dataflow.parallel import MultiProcessRunnerZMQ
from dataflow.parallel_map import MultiProcessMapData

class Count(DataFlow):
    def __iter__(self):
        info = get_worker_info()
        i = 0
        while True:
            yield [i, info.id if info is not None else -1]
            i += 1

def ident(dp):
    return [dp[0], get_worker_info().id]

def every_worker_produced(it):
    seen = set()
    while len(seen) < 2:
        seen.add(next(it)[1])

if __name__ == "__main__":
    method = sys.argv[1]
    runner = MultiProcessRunnerZMQ(Count(), num_proc=2, start_method=method)
    mapper = MultiProcessMapData(Count(), 2, ident, start_method=method)
    r, m = iter(runner), iter(mapper)
    every_worker_produced(r)
    every_worker_produced(m)
    print(*(runner.worker_pids() + mapper.worker_pids()), flush=True)
    {tail}
"""


def _wait_gone(pids: list[int], limit: float) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        if not any(pid_alive(p) for p in pids):
            return time.monotonic() - t0
        time.sleep(0.02)  # polling with a deadline: nothing to wait on for foreign processes
    alive = [p for p in pids if pid_alive(p)]
    for p in alive:
        os.kill(p, signal.SIGKILL)
    raise AssertionError(f"workers {alive} still alive {limit} s later")


@pytest.mark.timeout(90)
@pytest.mark.parametrize("method", METHODS)
def test_workers_die_within_2s_of_a_sigkilled_parent(tmp_path, method):
    script = tmp_path / "parent.py"
    script.write_text(_PARENT_SCRIPT.replace("{tail}", "time.sleep(600)"))
    proc = subprocess.Popen(
        [sys.executable, str(script), method], stdout=subprocess.PIPE, text=True
    )
    try:
        line = proc.stdout.readline()
        pids = [int(p) for p in line.split()]
        assert len(pids) == 4 and all(pid_alive(p) for p in pids)
        proc.kill()
        proc.wait(10)
        assert _wait_gone(pids, 2.0) < 2.0
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.timeout(90)
@pytest.mark.parametrize("method", METHODS)
def test_ctrl_c_raises_keyboard_interrupt_in_the_consumer_and_stops_workers(tmp_path, method):
    tail = textwrap.dedent(
        """
        import multiprocessing
        try:
            print("ready", flush=True)  # inside the try: Ctrl-C from now on lands here
            while True:
                next(r); next(m)
        except KeyboardInterrupt:
            print("KeyboardInterrupt", len(multiprocessing.active_children()), flush=True)
            sys.exit(3)
        """
    ).replace("\n", "\n    ")
    script = tmp_path / "consumer.py"
    script.write_text(_PARENT_SCRIPT.replace("{tail}", tail))
    proc = subprocess.Popen(
        [sys.executable, str(script), method],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    try:
        pids = [int(p) for p in proc.stdout.readline().split()]
        assert len(pids) == 4
        assert proc.stdout.readline().strip() == "ready"
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does: every process of the group
        out, _ = proc.communicate(timeout=20)
        assert proc.returncode == 3
        assert out.startswith("KeyboardInterrupt")
        assert _wait_gone(pids, 2.0) < 2.0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# -- pickling under spawn/forkserver ---------------------------------------------------------------


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_unpicklable_map_func_fails_at_reset_state_naming_it(method):
    ds = MultiProcessMapData(Count(10), 2, lambda dp: dp, start_method=method)
    with pytest.raises(DataFlowArgumentError, match=r"map_func \(function .*<lambda>\)") as info:
        ds.reset_state()
    assert method in str(info.value)
    assert not multiprocessing.active_children()
    ds.close()


class Holder(DataFlow):
    def __init__(self):
        self.inner = Count(5)
        self.lock = threading.Lock()

    def __iter__(self):
        return iter(self.inner)


def test_unpicklable_dataflow_fails_at_reset_state_naming_the_attribute():
    ds = MultiProcessRunner(Holder(), 10, 2, start_method="spawn")
    with pytest.raises(DataFlowArgumentError, match=r"ds\.lock"):
        ds.reset_state()
    assert not multiprocessing.active_children()


def test_bad_start_method_is_an_argument_error():
    with pytest.raises(DataFlowArgumentError, match="start_method"):
        MultiProcessRunner(Count(1), 1, 1, start_method="thread")


# -- zero-copy reads -------------------------------------------------------------------------------


class Megabytes(DataFlow):
    """Arrays of 1 MB (read in place by the consumer), each filled with its index."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        for i in range(self.n):
            yield [np.full(1 << 20, i % 251, dtype=np.uint8), i]


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
    fds = _fds()
    kept = list(ds)
    ds.close()
    assert not multiprocessing.active_children()
    for arr, i in kept:  # still readable after close: the mapping lives as long as they do
        assert (arr == i % 251).all()
    del kept, arr
    gc.collect()
    assert _fds() <= fds


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


@pytest.mark.timeout(60)
def test_named_shared_memory_fallback_works_and_is_unlinked(monkeypatch):
    import dataflow._engine.shm as shm_module

    monkeypatch.setattr(shm_module, "_HAVE_MEMFD", False)  # as on a platform without memfd
    shm = _shm()
    with MultiProcessRunnerZMQ(Megabytes(6), num_proc=2, start_method="fork") as ds:
        ds.reset_state()
        ours = {seg._shm.name for seg in ds._pool._segs}  # one named segment per worker
        assert len(ours) == 2 and ours <= _shm() - shm
        out = list(ds)
    assert len(out) == 6 and all((arr == i % 251).all() for arr, i in out)
    assert not ours & _shm()


@pytest.mark.timeout(90)
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_interpreter_exit_without_close_stops_the_workers(tmp_path, method):
    script = tmp_path / "exits.py"
    script.write_text(_PARENT_SCRIPT.replace("{tail}", "sys.exit(0)"))
    proc = subprocess.Popen(
        [sys.executable, str(script), method], stdout=subprocess.PIPE, text=True
    )
    try:
        pids = [int(p) for p in proc.stdout.readline().split()]
        assert len(pids) == 4
        assert proc.wait(20) == 0  # exits promptly: nothing waits on the running workers
        assert _wait_gone(pids, 2.0) < 2.0
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.timeout(60)
def test_workers_started_from_a_thread_outlive_that_thread():
    # The kernel's death signal follows the thread that started a worker: a pool started from a
    # helper thread must keep its workers when that thread ends.
    ds = MultiProcessRunnerZMQ(Count(), num_proc=2, hwm=1, start_method="fork")
    starter = threading.Thread(target=ds.reset_state)
    starter.start()
    starter.join()
    task = f"/proc/self/task/{starter.native_id}"
    deadline = time.monotonic() + 10
    while os.path.exists(task):  # until the kernel has ended the thread itself
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert len(_take_n(ds, 3000)) == 3000  # more than the workers can have buffered
    assert all(pid_alive(p) for p in ds.worker_pids())
    ds.close()


def _take_n(ds, n):
    it = iter(ds)
    out = [next(it) for _ in range(n)]
    it.close()
    return out


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


# -- array encoding --------------------------------------------------------------------------------


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


# -- lazy waiting ----------------------------------------------------------------------------------


def test_wait_policy_goes_lazy_only_after_a_run_of_short_sleeps_and_back_when_data_stops():
    from dataflow._engine import workers as w

    policy = w._WaitPolicy()
    for _ in range(w._LAZY_AFTER - 1):
        assert policy.lazy_timeout() is None
        policy.after_eager(0.001, woken=True)
    assert policy.lazy_timeout() is None
    policy.after_eager(0.0005, woken=False)  # a timeout is not a message arriving: start over
    for _ in range(w._LAZY_AFTER):
        assert policy.lazy_timeout() is None
        policy.after_eager(0.001, woken=True)
    timeout = policy.lazy_timeout()
    assert timeout == pytest.approx(w._LAZY_FACTOR * 0.001)
    policy.after_lazy(found=True)
    for _ in range(w._LAZY_RUN - 1):  # lazy while the sleeps keep finding messages...
        assert policy.lazy_timeout() == pytest.approx(timeout)
        policy.after_lazy(found=True)
    assert policy.lazy_timeout() is None  # ... but one sleep in a run measures the pace again
    policy.after_eager(0.05, woken=True)  # and a long wait means messages come slowly now
    assert policy.lazy_timeout() is None

    for _ in range(w._LAZY_AFTER):
        policy.lazy_timeout()
        policy.after_eager(w._LAZY_IDLE_S, woken=True)
    assert policy.lazy_timeout() == pytest.approx(w._LAZY_MAX_S)  # capped
    policy.after_lazy(found=False)  # nothing came in a whole lazy sleep: eager again
    assert policy.lazy_timeout() is None


def _always_lazy(ds):
    """Make ``ds``'s consumer sleep lazily for a minute every time it waits: every wake-up it
    still gets must then come from a worker ringing (a missed one would hit the test timeout)."""
    from dataflow._engine import workers as w

    class AlwaysLazy(w._WaitPolicy):
        def lazy_timeout(self):
            return 60.0

    ds.reset_state()
    ds._pool._wait = AlwaysLazy()
    return ds


def fail_at_40(dp):
    if dp[0] == 40:
        raise KeyError("no label for 40")
    return dp


@pytest.mark.timeout(60)
def test_lazily_sleeping_consumer_is_woken_by_workers_without_tasks_errors_full_rings_and_deaths():
    # Workers without tasks (a tiny buffer keeps them short), batching maps flushing at a pass end.
    ds = _always_lazy(MultiProcessMapData(Count(300), 2, double, buffer_size=4, strict=True))
    for _ in range(2):
        assert sorted(dp[0] for dp in ds) == list(range(0, 600, 2))
    ds.close()
    ds = _always_lazy(MultiProcessMapAndBatchData(Count(256), 2, vector, 16, strict=True))
    assert sorted(int(i) for b in ds for i in b[1]) == list(range(256))
    ds.close()
    # An error in map_func.
    ds = _always_lazy(MultiProcessMapData(Count(200), 2, fail_at_40, strict=True))
    t0 = time.monotonic()
    with pytest.raises(WorkerError, match="no label for 40"):
        list(ds)
    assert time.monotonic() - t0 < 10
    ds.close()
    # A runner whose ring fills up (1 MB arrays through 16 MB rings), then dies.
    ds = _always_lazy(MultiProcessRunnerZMQ(Megabytes(10**6), num_proc=2, start_method="fork"))
    it = iter(ds)
    for _ in range(100):
        arr, i = next(it)
        assert arr[0] == i % 251
    os.kill(ds.worker_pids()[0], signal.SIGKILL)
    t0 = time.monotonic()
    with pytest.raises(WorkerDied):
        for _ in it:
            pass
    assert time.monotonic() - t0 < 10
    ds.close()


class StallsAfterOnePass(DataFlow):
    """One pass of ``n`` items, then a pass whose upstream never yields (a stuck reader)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.passes = 0

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        self.passes += 1
        if self.passes > 1:
            threading.Event().wait()
        for i in range(self.n):
            yield [i]


@pytest.mark.timeout(60)
def test_lazily_sleeping_consumer_is_woken_by_the_end_of_a_pass_of_a_stuck_worker():
    # The end-of-pass marker is news: a worker whose next pass is stuck must still ring for it,
    # or the consumer would sleep out its whole lazy timeout before ending the pass.
    ds = _always_lazy(MultiProcessRunnerZMQ(StallsAfterOnePass(50), 2, shard=True))
    assert sorted(dp[0] for dp in ds) == list(range(50))
    ds.close()

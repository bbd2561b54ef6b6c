"""dataflow._engine.workers: the pools' supervision (a dead worker raises WorkerDied quickly, a flow
recovers with fresh workers), lifecycle (hundreds of create/iterate/close cycles leave nothing
behind; GC and context managers stop workers), what must pickle under spawn/forkserver, and the
consumer's lazy waiting (woken by every kind of news)."""

from __future__ import annotations

import gc
import multiprocessing
import os
import signal
import threading
import time

import numpy as np
import pytest

from dataflow._engine.workers import pid_alive
from dataflow.base import DataFlow
from dataflow.errors import DataFlowArgumentError, WorkerDied, WorkerError
from dataflow.parallel import MultiProcessRunner, MultiProcessRunnerZMQ, MultiThreadRunner
from dataflow.parallel_map import (
    MultiProcessMapAndBatchData,
    MultiProcessMapData,
    MultiThreadMapData,
)
from flows import METHODS, Count, Megabytes, double, open_fds, ring_mappings


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


def vector(dp):
    return [np.full(8, dp[0], dtype=np.int64), dp[0]]


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
    fds, threads, maps = set(open_fds()), threading.active_count(), len(ring_mappings())
    assert not multiprocessing.active_children()
    for i in range(200):
        _cycle(i)
    gc.collect()
    assert not multiprocessing.active_children()
    assert threading.active_count() == threads
    assert len(ring_mappings()) == maps
    assert set(open_fds()) == fds


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

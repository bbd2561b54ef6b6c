"""dataflow._engine.worker_process: worker processes die with their parent (SIGKILL, interpreter
exit without close), ignore Ctrl-C (the consumer raises KeyboardInterrupt and stops them), and
outlive the thread that started them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from dataflow._engine.workers import pid_alive
from dataflow.parallel import MultiProcessRunnerZMQ
from flows import METHODS, Count

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

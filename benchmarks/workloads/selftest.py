"""SELFTEST: pipelines that misbehave on purpose, to check that the harness catches each fault.

Not a benchmark and not run by default: ``run.py --smoke --workloads SELFTEST`` must fail, with one
CHECK line per config naming the fault: ``leak_process`` leaves a child process running after the
case exits, ``leak_shm`` leaves a /dev/shm file named after its pid behind, ``leak_shm_mapped``
one with an anonymous name that it maps through the window, ``wrong_checksum`` yields a wrong value,
``crash`` kills its own process mid-pass, and ``good`` does nothing wrong (it must pass), nor does
``slow_start``, whose first batch comes only after ``SLOW_START_S`` (the harness must warm up for
that long before its window).
"""

from __future__ import annotations

import mmap
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from workloads._common import Built

NAME = "SELFTEST"
TITLE = "harness self-test (faults on purpose)"
METRIC = "ns/dp"
TIMING = "in_call"
N = 4096
BATCH = 64


def make_source() -> list[int]:
    return list(range(N))


def expected_pass() -> tuple[int, tuple]:
    return N, (N * (N - 1) // 2,)


def batch_stats(batch: Any) -> tuple[int, tuple]:
    return len(batch), (sum(batch),)


def _batches(source: list[int]) -> Iterator[list[int]]:
    for i in range(0, len(source), BATCH):
        yield source[i : i + BATCH]


def build_good(source: list[int]) -> Built:
    return Built(lambda: _batches(source))


def build_leak_process(source: list[int]) -> Built:
    # A child that outlives the case (never waited for, never killed).
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    return Built(lambda: _batches(source))


def build_leak_shm(source: list[int]) -> Built:
    path = f"/dev/shm/dataflow-bench-selftest-{os.getpid()}"
    handle = open(path, "wb")  # written, closed, never unlinked
    handle.write(b"\0" * (1 << 20))
    handle.close()
    return Built(lambda: _batches(source))


def build_leak_shm_mapped(source: list[int]) -> Built:
    # A segment with a name that says nothing of its owner, mapped through the window, never
    # unlinked: the harness knows it is the case's because the case maps it.
    path = f"/dev/shm/dataflow-bench-selftest-{uuid.uuid4().hex}"
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    os.ftruncate(fd, 1 << 20)
    segment = mmap.mmap(fd, 1 << 20)
    os.close(fd)
    segment[:4] = b"leak"

    def epoch() -> Iterator[list[int]]:
        assert segment[:4] == b"leak"
        return _batches(source)

    return Built(epoch)


def build_wrong_checksum(source: list[int]) -> Built:
    def epoch() -> Iterator[list[int]]:
        for batch in _batches(source):
            yield [x + (x == 7) for x in batch]

    return Built(epoch)


SLOW_START_S = 0.25


def build_slow_start(source: list[int]) -> Built:
    # Stands for workers that take a while to start (the delay is the behaviour under test).
    def epoch() -> Iterator[list[int]]:
        if not started:
            started.append(True)
            time.sleep(SLOW_START_S)
        return _batches(source)

    started: list[bool] = []
    return Built(epoch)


def build_crash(source: list[int]) -> Built:
    def epoch() -> Iterator[list[int]]:
        for i, batch in enumerate(_batches(source)):
            if i == 10:
                os._exit(3)
            yield batch

    return Built(epoch)


IMPORTS: dict[str, Callable[[], None]] = {"ours": lambda: None}
BUILDERS: dict[str, dict[str, Callable[[list], Built]]] = {
    "ours": {
        "good": build_good,
        "leak_process": build_leak_process,
        "leak_shm": build_leak_shm,
        "leak_shm_mapped": build_leak_shm_mapped,
        "wrong_checksum": build_wrong_checksum,
        "crash": build_crash,
        "slow_start": build_slow_start,
    }
}

"""Helpers shared by the test files: import them with ``import flows``.

pytest puts tests/ on sys.path (rootdir-relative "prepend" import mode, no __init__.py), and spawn
and forkserver workers inherit that path, so every class and function here pickles by reference
(``flows.double``) and a worker unpickles it by importing this module. Keep it light: a spawned
worker imports it (numpy and dataflow only; heavier modules are imported where they are used).
Fixtures are in conftest.py (no_leaks, unseeded, offline_datasets, local_server).

Paths
    REPO_ROOT, TESTS_DIR, BENCHMARKS_DIR
Start methods
    METHODS             ["fork", "forkserver", "spawn"]: every start method the engine offers
Sources (DataFlow)
    Count(n=None)       [0], [1], ..., [n-1] with len n; endless, len unknown, when n is None
    Megabytes(n)        n x [1 MB uint8 array filled with i % 251, i]: read in place by a consumer
    Src(items)          yields items in order (len: their number); counts .passes begun, .read
    NoLen(items)        a Src whose len is unknown;  OneShot(items): a Src that is not reentrant
    ints(n, start=0)    Src([[start], ..., [start + n - 1]]);  firsts(dps): [dp[0] for dp in dps]
    Random()            endless [own rng draw, numpy global draw] (an RNGDataFlow)
    WhoAmI()            4 x [worker id, num_workers, kind], as get_worker_info() says in the worker
    RaisingSource(datapoints, error, message, length=None)
                        yields datapoints, then raises error(f"{message} at {time.time()!r}")
    Terminating()       [0], [1], [2], then raises DataFlowTerminated
    SelfSharding()      0..19, split among workers by the source itself (shards_itself = True)
Map functions (module level, so they pickle under spawn and forkserver)
    double, triple      [x] -> [2x], [3x]
    slow_double         double with uneven costs (0..3 ms): workers finish out of order
    drop_thirds         None (dropped) for multiples of 3, else [x]
    features            [x] -> [2x3 float32 array of x, x, x is even]
    noisy               [x] -> [x, a draw of numpy's global generator]
    fail_on_13          raises ZeroDivisionError("no thirteen at <time>") on [13]
    die_on_7            os._exit(1) on [7]: the worker dies under the map
Iterating, waiting, child processes
    take(ds, n)         the first n datapoints of a new pass, whose iterator is closed after
    wait_until(condition, timeout, what)
                        polls condition with a deadline; AssertionError naming what
    run_in_child(target, *args, method="fork", timeout=30)
                        target(*args, conn) in a child process; what it conn.send()s; exit code 0
Comparing
    assert_same(expected, actual, where)   equal values with the same types, dtypes and shapes
Leak checks (conftest's no_leaks uses them)
    open_fds(), ring_mappings(), shm_segments(), child_pids(), record_created_shm(monkeypatch),
    Held.now(), LifetimeHelpers, leftover_children(), leaks_since(before, created_shm)
Servers
    LocalServer         HTTP on 127.0.0.1 (port 0) with Range support and fault injection
"""

from __future__ import annotations

import dataclasses
import gc
import itertools
import multiprocessing
import os
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from dataflow._engine.context import get_worker_info
from dataflow.base import DataFlow, DataFlowTerminated, RNGDataFlow

# -- paths -----------------------------------------------------------------------------------------

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent
BENCHMARKS_DIR = REPO_ROOT / "benchmarks"

METHODS = ["fork", "forkserver", "spawn"]


# -- sources ---------------------------------------------------------------------------------------


class Count(DataFlow):
    """[0], [1], ..., [n-1] (len n); without ``n`` endless, and len raises NotImplementedError."""

    def __init__(self, n: int | None = None) -> None:
        self.n = n

    def __len__(self) -> int:
        if self.n is None:
            raise NotImplementedError
        return self.n

    def __iter__(self):
        i = 0
        while self.n is None or i < self.n:
            yield [i]
            i += 1


class Megabytes(DataFlow):
    """Arrays of 1 MB (read in place by the consumer), each filled with its index."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        for i in range(self.n):
            yield [np.full(1 << 20, i % 251, dtype=np.uint8), i]


class Src(DataFlow):
    """Yields the given datapoints in order; counts the passes begun and datapoints read."""

    def __init__(self, items):
        self.items = list(items)
        self.passes = 0
        self.read = 0

    def __len__(self):
        return len(self.items)

    def __iter__(self):
        self.passes += 1
        for dp in self.items:
            self.read += 1
            yield dp


class NoLen(Src):
    """Finite, but does not know its len."""

    def __len__(self):
        raise NotImplementedError


class OneShot(Src):
    """A Src that allows one live iterator at a time (reentrant = False)."""

    reentrant = False


def ints(n, start=0):
    return Src([[i] for i in range(start, start + n)])


def firsts(dps):
    return [dp[0] for dp in dps]


class Random(RNGDataFlow):
    """Endless [draw of its own rng, draw of numpy's global generator]."""

    def __iter__(self):
        while True:
            yield [int(self.rng.randint(1 << 30)), int(np.random.randint(1 << 30))]


class WhoAmI(DataFlow):
    """Four datapoints [worker id, num_workers, kind] as the worker running it sees itself."""

    def __len__(self) -> int:
        return 4

    def __iter__(self):
        info = get_worker_info()
        for _ in range(4):
            yield [info.id, info.num_workers, info.kind]


class RaisingSource(DataFlow):
    """Yields ``datapoints``, then raises ``error(f"{message} at {time.time()!r}")``.

    The time at the end of the message lets a test measure how long the error took to reach the
    consumer. ``length``: what len says (None: unknown).
    """

    def __init__(
        self,
        datapoints: list,
        error: type[BaseException] = ValueError,
        message: str = "broken source",
        length: int | None = None,
    ) -> None:
        self.datapoints = datapoints
        self.error = error
        self.message = message
        self.length = length

    def __len__(self) -> int:
        if self.length is None:
            raise NotImplementedError
        return self.length

    def __iter__(self):
        yield from self.datapoints
        raise self.error(f"{self.message} at {time.time()!r}")


class Terminating(DataFlow):
    """[0], [1], [2], then DataFlowTerminated (tensorpack's way for a source to end a stream)."""

    def __iter__(self):
        for i in range(3):
            yield [i]
        raise DataFlowTerminated()


class SelfSharding(DataFlow):
    """0..19, split among the workers by the source itself (worker w yields w, w + n, ...)."""

    shards_itself = True

    def __len__(self) -> int:
        return 20

    def __iter__(self):
        info = get_worker_info()
        return iter([[i] for i in range(info.id, 20, info.num_workers)])


# -- map functions ---------------------------------------------------------------------------------


def double(dp):
    return [dp[0] * 2]


def triple(dp):
    return [dp[0] * 3]


def slow_double(dp):
    time.sleep(0.0005 * (dp[0] % 7))  # uneven costs: workers finish out of order
    return [dp[0] * 2]


def drop_thirds(dp):
    return None if dp[0] % 3 == 0 else [dp[0]]


def fail_on_13(dp):
    if dp[0] == 13:
        raise ZeroDivisionError(f"no thirteen at {time.time()!r}")
    return dp


def features(dp):
    i = dp[0]
    return [np.full((2, 3), i, dtype=np.float32), i, i % 2 == 0]


def noisy(dp):
    return [dp[0], float(np.random.rand())]


def die_on_7(dp):
    if dp[0] == 7:
        os._exit(1)
    return dp


# -- iterating, waiting, child processes -----------------------------------------------------------


def take(ds, n: int) -> list:
    """The first ``n`` datapoints of a new pass over ``ds`` (fewer if the pass is shorter); the
    pass's iterator is closed afterwards, as an abandoned one would be."""
    it = iter(ds)
    try:
        return list(itertools.islice(it, n))
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            close()


def wait_until(condition: Callable[[], Any], timeout: float, what: str) -> None:
    """Poll ``condition`` every 10 ms until it holds; AssertionError naming ``what`` after
    ``timeout`` seconds. For what a test cannot wait on otherwise (a file another process writes,
    a thread the kernel ends)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.01)


def run_in_child(target: Callable[..., Any], *args: Any, method: str = "fork", timeout=30) -> Any:
    """Run ``target(*args, conn)`` in a child process started with ``method`` and return the
    first thing it sends on ``conn``; the child must send within ``timeout`` seconds and exit 0.
    Under spawn and forkserver ``target`` and ``args`` must pickle (define them at module level)."""
    ctx = multiprocessing.get_context(method)
    parent_end, child_end = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=target, args=(*args, child_end))
    proc.start()
    child_end.close()
    try:
        assert parent_end.poll(timeout), "child sent nothing"
        return parent_end.recv()
    finally:
        parent_end.close()
        proc.join(timeout)
        assert proc.exitcode == 0


# -- comparing -------------------------------------------------------------------------------------


def assert_same(expected, actual, where="value"):
    """Equal values, and the same types, dtypes and shapes, recursively."""
    if isinstance(expected, np.ndarray):
        assert type(actual) is np.ndarray, where
        assert actual.dtype == expected.dtype, where
        assert actual.shape == expected.shape, where
        assert actual.tobytes() == np.ascontiguousarray(expected).tobytes(), where
        return
    if isinstance(expected, (bytearray, memoryview)):
        assert actual == bytes(expected), where
        return
    if isinstance(expected, dict):
        assert type(actual) is dict and list(actual) == list(expected), where
        for k in expected:
            assert_same(expected[k], actual[k], f"{where}[{k!r}]")
        return
    if isinstance(expected, (list, tuple)) and type(expected) in (list, tuple):
        assert type(actual) is type(expected) and len(actual) == len(expected), where
        for i, (a, b) in enumerate(zip(expected, actual)):
            assert_same(a, b, f"{where}[{i}]")
        return
    assert type(actual) is type(expected), (where, expected, actual)
    if isinstance(expected, float) and expected != expected:
        assert actual != actual, where
    elif isinstance(expected, np.generic):
        assert actual.dtype == expected.dtype and actual.tobytes() == expected.tobytes(), where
    else:
        assert actual == expected, where


# -- leak checks -----------------------------------------------------------------------------------


def open_fds() -> dict[int, str]:
    """This process's open file descriptors and what each refers to (``pipe:[1234]``, a path...)."""
    fds = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            fds[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:  # the descriptor listdir itself used, closed by now
            pass
    return fds


def ring_mappings() -> set[str]:
    """This process's shared-memory mappings (lines of /proc/self/maps): ring segments (memfd
    ``dataflow-ring``) or named segments (``/dev/shm``)."""
    with open("/proc/self/maps") as f:
        return {line.strip() for line in f if "dataflow-ring" in line or "/dev/shm/" in line}


def shm_segments() -> set[str]:
    """Named segments of ``multiprocessing.shared_memory`` (prefix ``psm_``) in ``/dev/shm``.

    Only those: other programs on the machine create and remove files there (semaphores...)
    while a test runs, and so do the tests of other pytest-xdist workers: what a test created
    itself is known from :func:`record_created_shm`."""
    if not os.path.isdir("/dev/shm"):
        return set()
    return {name for name in os.listdir("/dev/shm") if name.startswith("psm_")}


def record_created_shm(monkeypatch) -> set[str]:
    """From now until ``monkeypatch`` undoes it, the name of every shared-memory segment this
    process creates goes into the returned set."""
    from multiprocessing import shared_memory

    created: set[str] = set()
    init = shared_memory.SharedMemory.__init__

    def recording_init(self, name=None, create=False, size=0):
        init(self, name, create, size)
        if create:
            created.add(self.name)

    monkeypatch.setattr(shared_memory.SharedMemory, "__init__", recording_init)
    return created


def child_pids(parent: int | None = None) -> set[int]:
    """Processes whose parent is ``parent`` (default: this process), zombies included."""
    parent = os.getpid() if parent is None else parent
    pids = set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:  # gone meanwhile
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
            pids.add(int(name))
    return pids


@dataclasses.dataclass
class LifetimeHelpers:
    """What libraries start on first use and keep for the life of the interpreter: not a leak of
    the test that happened to start them. multiprocessing's resource tracker (started by the
    first spawn or forkserver worker, or named shared memory) and forkserver (a process and a
    descriptor each), and tqdm's monitor thread (started by the first progress bar)."""

    pids: set[int]
    fds: set[int]
    threads: set[threading.Thread]

    @classmethod
    def now(cls) -> LifetimeHelpers:
        import sys
        from multiprocessing import forkserver, resource_tracker

        server, tracker = forkserver._forkserver, resource_tracker._resource_tracker
        pids = {getattr(server, "_forkserver_pid", None), getattr(tracker, "_pid", None)}
        fds = {getattr(server, "_forkserver_alive_fd", None), getattr(tracker, "_fd", None)}
        tqdm = sys.modules.get("tqdm")
        monitor = getattr(getattr(tqdm, "tqdm", None), "monitor", None)
        return cls(
            {p for p in pids if p is not None},
            {f for f in fds if f is not None},
            {monitor} if isinstance(monitor, threading.Thread) else set(),
        )

    @staticmethod
    def start_lazy_ones() -> None:
        """Create what is cheap to create ahead: tqdm's multiprocessing lock (a semaphore mapped
        from /dev/shm, made by the first progress bar), so that it is there before a test."""
        import tqdm

        tqdm.tqdm.get_lock()


@dataclasses.dataclass
class Held:
    """What this process holds at one moment: threads, file descriptors, shared-memory mappings."""

    threads: set[threading.Thread]
    fds: dict[int, str]
    mappings: set[str]

    @classmethod
    def now(cls) -> Held:
        return cls(set(threading.enumerate()), open_fds(), ring_mappings())


def leftover_children() -> list[str]:
    """Child processes still there: multiprocessing's children, any other child of this process
    (subprocesses, unreaped zombies), and children of this process's forkserver (whose workers
    are its children, not ours); LifetimeHelpers excepted. One line each."""
    children = multiprocessing.active_children()
    problems = [f"child process left: {p!r}" for p in children]
    helpers = LifetimeHelpers.now().pids
    known = helpers | {p.pid for p in children}
    for parent in (None, *helpers):
        for pid in sorted(child_pids(parent) - known):
            problems.append(f"child process left: pid {pid} ({_describe(pid)})")
    return problems


def leaks_since(before: Held, created_shm: set[str]) -> list[str]:
    """Threads, file descriptors and shared-memory mappings held now but not in ``before``, and
    the segments of ``created_shm`` still in /dev/shm; one line each (empty: nothing leaked).
    Collects garbage first: a flow dropped in a reference cycle is closed by the collector."""
    gc.collect()
    now = Held.now()
    helpers = LifetimeHelpers.now()
    problems = [
        f"thread left: {t.name} ({t!r})"
        for t in now.threads - before.threads - helpers.threads
        if t.is_alive()
    ]
    for fd, target in sorted(now.fds.items()):
        if before.fds.get(fd) != target and fd not in helpers.fds:
            problems.append(f"fd {fd} left open: {target}")
    problems += [f"shared memory still mapped: {m}" for m in sorted(now.mappings - before.mappings)]
    problems += [f"/dev/shm segment left: {n}" for n in sorted(created_shm & shm_segments())]
    return problems


def _describe(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone meanwhile"
    return f"state {state}: {cmdline or '?'}"


# -- servers ---------------------------------------------------------------------------------------


class LocalServer:
    """Serves ``files`` (URL path -> bytes) on 127.0.0.1 with Range support and fault injection."""

    def __init__(self) -> None:
        import http.server

        self.files: dict[str, bytes] = {}
        self.truncate_once: set[str] = set()  # send half the body, then close, the first time
        self.ignore_range: set[str] = set()  # answer 200 with the whole file even to a Range
        self.requests: list[tuple[str, str | None]] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                range_header = self.headers.get("Range")
                with outer._lock:
                    outer.requests.append((self.path, range_header))
                    truncate = self.path in outer.truncate_once
                    outer.truncate_once.discard(self.path)
                body = outer.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                start = 0
                if range_header and self.path not in outer.ignore_range:
                    start = int(re.fullmatch(r"bytes=(\d+)-", range_header).group(1))
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                payload = body[start:]
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload[: len(payload) // 2] if truncate else payload)
                self.close_connection = True

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def requested(self, path: str) -> list[str | None]:
        with self._lock:
            return [r for p, r in self.requests if p == path]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)


def normalize_image(dp):
    """[uint8 HxWx3 image, label] -> [float32 image scaled to 0..1, label] (a parallel map's work)."""
    return [dp[0].astype(np.float32) / 255.0, dp[1]]


def fail_on_fives(dp):
    """Raises ValueError on multiples of 5 (on_error="skip" tests), else [x]."""
    if dp[0] % 5 == 0:
        raise ValueError(f"no multiple of five: {dp[0]}")
    return dp

"""The fault suite's measured rows: run the faults, print the table, write it into docs/reliability.md.

    python benchmarks/faults.py            # a few minutes on 2 cores
    python benchmarks/faults.py --no-write # print only

Each row: fault | what the user sees | time to error or recovery | lost | duplicated | leaked.
Rows: an exception in map_func (process and thread maps, and a Ray actor when ray is installed),
SIGKILL of a map worker with and without restart_workers (and of a Ray actor), SIGKILL of the
parent, Ctrl-C in the training loop, 200 open/iterate/close cycles, a poison datapoint, a hung map
worker (timeout=), a SIGKILLed worker of a sharded runner, 1000 corrupted LMDB files (default
reader, verify=False), 10^5 fuzzed codec messages, pickles sent to a receiver, a save SIGKILLed at
random points, exactly-once over 10^6 datapoints x 3 passes x 4 workers. The rows of
docs/reliability.md above the measured table are asserted by the tests named there.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np

from dataflow import MultiProcessMapData, MultiProcessRunner, MultiThreadMapData, codec
from dataflow.errors import FormatError, WorkerDied, WorkerError
from dataflow.raw import DataFromList
from dataflow.serialize import LMDBSerializer

DOC = Path(__file__).resolve().parent.parent / "docs" / "reliability.md"
BEGIN, END = "<!-- faults.py: begin -->", "<!-- faults.py: end -->"


def children() -> set[int]:
    """Live child processes of this process (from /proc)."""
    me, out = os.getpid(), set()
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                fields = Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == me and fields[0] != "Z":
                out.add(int(d))
    return out


def corrupted_lmdb(trials: int, verify: bool | None) -> list[str]:
    rows = [[i, np.arange(2100 + 700 * i, dtype=np.int64).astype(np.uint8)] for i in range(16)]
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "c.lmdb")
        LMDBSerializer.save(DataFromList(rows, shuffle=False), path)
        blob = Path(path).read_bytes()
        recs = [codec.dumps(dp) for dp in rows]
        damaged = os.path.join(d, "d.lmdb")
        same = errors = wrong = 0
        t0 = time.perf_counter()
        for trial in range(trials):
            rng = np.random.default_rng(trial)
            buf = bytearray(blob)
            for _ in range(int(rng.integers(1, 17))):
                if rng.random() < 0.5:
                    rec = recs[int(rng.integers(len(recs)))]
                    at = blob.index(rec) + int(rng.integers(len(rec)))
                else:
                    at = int(rng.integers(len(buf)))
                buf[at] = (buf[at] + int(rng.integers(1, 256))) % 256
            Path(damaged).write_bytes(bytes(buf))
            try:
                got = sorted(
                    LMDBSerializer.load(damaged, shuffle=False, verify=verify),
                    key=lambda dp: int(dp[0]),
                )
                ok = len(got) == len(rows) and all(
                    int(a[0]) == b[0] and np.array_equal(a[1], b[1]) for a, b in zip(got, rows)
                )
            except FormatError:
                errors += 1
                continue
            same += ok
            wrong += not ok
        per = (time.perf_counter() - t0) / trials * 1e3
    name = "default reader" if verify is None else "verify=False"
    return [
        f"{trials} LMDB files with 1-16 random bytes changed, {name}",
        f"FormatError naming the file (and key) in {errors}, the data intact in {same}, "
        f"**silently wrong datapoints in {wrong}**",
        f"{per:.1f} ms a trial (write, open, read)",
        f"{wrong} wrong" if wrong else "none",
        "none",
        "nothing",
    ]


def hang_on_57(dp: list) -> list:
    if dp[0] == 57:
        while True:
            pass
    return dp


def skipping_pass(func: object, **kw: object) -> tuple[float, Counter, int, str]:
    """One pass of 300 through a restarting, skipping process map: (seconds, what came out,
    skipped, leftovers)."""
    before = children()
    ds = MultiProcessMapData(
        DataFromList([[i] for i in range(300)], shuffle=False),
        2,
        func,
        strict=True,
        restart_workers=True,
        on_error="skip",
        **kw,
    )
    t0 = time.perf_counter()
    got = Counter(dp[0] for dp in ds)
    took = time.perf_counter() - t0
    skipped = ds.errors_skipped
    ds.close()
    return took, got, skipped, leftovers(before)


def hung_worker() -> list[str]:
    took, got, skipped, left = skipping_pass(hang_on_57, timeout=0.5)
    return [
        'a map worker hangs on one datapoint (`timeout=0.5`, `restart_workers=True`, `on_error="skip"`)',
        f"the worker is stopped and replaced; the datapoint is skipped after 3 hangs and counted "
        f"(`errors_skipped == {skipped}`); the pass goes on",
        f"{took:.2f} s for the pass of 300 (3 timeouts of 0.5 s)",
        f"{299 - len(got)} (besides the skipped one)",
        str(sum(c - 1 for c in got.values())),
        left,
    ]


def pass_with_kill(ds: object, n: int) -> tuple[Counter, float, bool]:
    """One pass of ``ds`` (``[i]`` datapoints) that SIGKILLs its first worker a third of the way
    in: (what came out, seconds from the kill to the pass's end or error, whether WorkerDied)."""
    got: Counter = Counter()
    t_kill = time.perf_counter()
    try:
        for k, dp in enumerate(ds):  # type: ignore[call-overload]
            if k == n // 3:
                os.kill(ds.worker_pids()[0], signal.SIGKILL)  # type: ignore[attr-defined]
                t_kill = time.perf_counter()
            got[dp[0]] += 1
    except WorkerDied:
        return got, time.perf_counter() - t_kill, True
    return got, time.perf_counter() - t_kill, False


def runner_kill() -> list[str]:
    n = 20000
    before = children()
    ds = MultiProcessRunner(
        DataFromList([[i] for i in range(n)], shuffle=True),
        8,
        2,
        shard=True,
        restart_workers=True,
    )
    got, took, _ = pass_with_kill(ds, n)
    ds.close()
    lost = n - len(got)
    dup = sum(c - 1 for c in got.values())
    return [
        "SIGKILL of a worker of `MultiProcessRunner(shard=True, restart_workers=True)` mid-pass",
        "a warning in the log; the worker is replaced and its shard resumes past what was delivered",
        f"the pass of {n} ends {took:.2f} s after the kill",
        str(lost),
        str(dup),
        "nothing" if children() <= before else f"{len(children() - before)} processes",
    ]


def leftovers(before: set[int]) -> str:
    """What a fault left behind: child processes of ours, shared-memory segments, fds."""
    extra = children() - before
    return "nothing" if not extra else f"{len(extra)} processes"


def raise_on_500(dp: list) -> list:
    if dp[0] == 500:
        raise ValueError(f"bad datapoint {dp[0]} at {time.time()!r}")
    return dp


def map_exception(kind: str) -> list[str]:
    before = children()
    cls = MultiProcessMapData if kind == "process" else MultiThreadMapData
    ds = cls(DataFromList([[i] for i in range(2000)], shuffle=False), 2, raise_on_500, strict=True)
    try:
        for _ in ds:
            pass
        raise AssertionError("no error")
    except WorkerError as e:
        raised_at = float(str(e.__cause__).rsplit(" ", 1)[1])
        took = time.time() - raised_at
        tb = "raise_on_500" in e.traceback_text and isinstance(e.__cause__, ValueError)
    ds.close()
    where = "a worker process" if kind == "process" else "a worker thread"
    return [
        f"`map_func` raises in {where} (`{cls.__name__}`)",
        "`WorkerError` with the original traceback (`traceback_text`) and the exception as "
        f"`__cause__`{'' if tb else ' (MISSING)'}; the pass ends",
        f"{took * 1e3:.1f} ms from the raise to the consumer",
        "the rest of the pass (not started)",
        "0",
        leftovers(before),
    ]


def kill_map_worker(restart: bool) -> list[str]:
    n = 20000
    before = children()
    ds = MultiProcessMapData(
        DataFromList([[i] for i in range(n)], shuffle=False),
        2,
        identity,
        strict=True,
        restart_workers=restart,
        start_method="fork",
    )
    got, took, died = pass_with_kill(ds, n)
    ds.close()
    if died:
        outcome = f"{took * 1e3:.0f} ms from the kill to `WorkerDied`"
    else:
        outcome = f"the pass of {n} ends {took:.2f} s after the kill"
    if restart:
        return [
            "SIGKILL of a worker of `MultiProcessMapData(strict=True, restart_workers=True)`",
            "a warning in the log; the worker is replaced, what it held is sent again",
            outcome,
            str(n - len(got)),
            str(sum(c - 1 for c in got.values())),
            leftovers(before),
        ]
    return [
        "SIGKILL of a map worker (no restarts)",
        "`WorkerDied` naming the worker, its pid and the signal; the flow can be iterated again "
        "with fresh workers",
        outcome,
        "the rest of the pass",
        str(sum(c - 1 for c in got.values())),
        leftovers(before),
    ]


_CHILD = textwrap.dedent(
    """
    import sys, time
    from dataflow import MultiProcessMapData
    from dataflow.raw import DataFromList
    def slow(dp):
        time.sleep(0.001)
        return dp
    ds = MultiProcessMapData(DataFromList([[i] for i in range(10**6)]), 2, slow, strict=True)
    it = iter(ds)
    next(it)
    print(" ".join(map(str, ds.worker_pids())), flush=True)
    for _ in it:
        pass
    """
)


def pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def kill_parent() -> list[str]:
    child = subprocess.Popen([sys.executable, "-c", _CHILD], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    pids = [int(p) for p in child.stdout.readline().split()]
    child.kill()
    t0 = time.perf_counter()
    child.wait()
    deadline = t0 + 10
    while any(pid_alive(p) for p in pids) and time.perf_counter() < deadline:
        time.sleep(0.005)
    took = time.perf_counter() - t0
    alive = sum(pid_alive(p) for p in pids)
    return [
        "SIGKILL of the training process (the parent) mid-pass",
        "its worker processes exit by themselves (they watch the parent)",
        f"{took * 1e3:.0f} ms until both workers are gone",
        "-",
        "-",
        "nothing" if not alive else f"{alive} workers",
    ]


def ctrl_c() -> list[str]:
    before = children()
    ds = MultiProcessMapData(DataFromList([[i] for i in range(10**6)]), 2, identity)
    it = iter(ds)
    next(it)
    sent: list[float] = []

    def interrupt() -> None:
        sent.append(time.perf_counter())
        os.kill(os.getpid(), signal.SIGINT)

    timer = threading.Timer(0.2, interrupt)
    timer.start()
    try:
        for _ in it:
            pass
    except KeyboardInterrupt:
        pass
    del it
    ds.close()
    took = time.perf_counter() - sent[0]
    return [
        "Ctrl-C (SIGINT) in the training loop",
        "`KeyboardInterrupt` in the loop, as without the library (the workers ignore SIGINT); "
        "`close()` stops them",
        f"{took * 1e3:.0f} ms from the interrupt to every worker stopped",
        "-",
        "-",
        leftovers(before),
    ]


def shm_segments() -> set[str]:
    return set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()


def cycles() -> list[str]:
    before, shm, fds = children(), shm_segments(), set(os.listdir("/proc/self/fd"))
    t0 = time.perf_counter()
    for _ in range(200):
        ds = MultiProcessMapData(DataFromList([[i] for i in range(50)]), 2, identity)
        assert len(list(ds)) == 50
        ds.close()
    took = time.perf_counter() - t0
    left = []
    if children() - before:
        left.append(f"{len(children() - before)} processes")
    if shm_segments() - shm:
        left.append(f"{len(shm_segments() - shm)} /dev/shm segments")
    extra_fds = set(os.listdir("/proc/self/fd")) - fds
    if extra_fds:
        left.append(f"{len(extra_fds)} fds")
    return [
        "200 cycles of build, iterate, close (`MultiProcessMapData`, 2 workers)",
        "every pass complete",
        f"{took / 200 * 1e3:.0f} ms a cycle",
        "0",
        "0",
        ", ".join(left) or "nothing (processes, fds, /dev/shm)",
    ]


def die_on_57(dp: list) -> list:
    if dp[0] == 57:
        os._exit(1)
    return dp


def poison() -> list[str]:
    took, got, skipped, left = skipping_pass(die_on_57)
    return [
        'a datapoint kills its worker (`os._exit(1)` on #57; `restart_workers=True, on_error="skip"`)',
        f"the worker is replaced each time; after 3 deaths on it the datapoint is skipped and "
        f"counted (`errors_skipped == {skipped}`); the pass goes on",
        f"{took:.2f} s for the pass of 300",
        f"{299 - len(got)} (besides the skipped one)",
        str(sum(c - 1 for c in got.values())),
        left,
    ]


def fuzz_codec(trials: int) -> list[str]:
    rng = np.random.default_rng(0)
    samples = [
        codec.dumps(
            [np.arange(64, dtype=np.float32).reshape(8, 8), 7, "label", {"k": [1.5, b"x"]}]
        ),
        codec.dumps([np.zeros((3, 224, 224), np.uint8), np.int64(3)]),
        codec.dumps({"a": list(range(20)), "b": np.ones(5)}),
    ]
    clean = decoded = other = 0
    others: Counter = Counter()
    t0 = time.perf_counter()
    for trial in range(trials):
        buf = bytearray(samples[trial % len(samples)])
        for _ in range(int(rng.integers(1, 9))):
            buf[int(rng.integers(len(buf)))] = int(rng.integers(256))
        if rng.random() < 0.2:
            del buf[int(rng.integers(len(buf))) :]
        try:
            codec.loads(bytes(buf))
            decoded += 1
        except FormatError:
            clean += 1
        except Exception as e:  # noqa: BLE001 - what the row counts
            other += 1
            others[type(e).__name__] += 1
    took = (time.perf_counter() - t0) / trials
    return [
        f"{trials:,} codec messages with 1-8 random bytes changed (a fifth also cut short)",
        f"`FormatError` in {clean:,}, a decoded value in {decoded:,} (the codec has no checksum: "
        f"files and messages carry their own), another exception in {other}"
        + (f" ({dict(others)})" if other else "")
        + "; never a crash or a hang",
        f"{took * 1e6:.1f} us a message",
        "-",
        "-",
        "nothing",
    ]


def pickles_refused() -> list[str]:
    import pickle

    class Payload:
        def __reduce__(self):
            return (os.system, ("echo should-not-run",))

    refused = 0
    tries = [pickle.dumps(Payload()), codec.dumps([Payload()], allow_pickle=True)]
    t0 = time.perf_counter()
    for msg in tries:
        try:
            codec.loads(msg)
        except FormatError:
            refused += 1
    took = (time.perf_counter() - t0) / len(tries)
    return [
        "a pickle (raw, or inside the codec) arrives where datapoints are read (RemoteDataZMQ, files)",
        f"refused with `FormatError` ({refused} of {len(tries)}), nothing unpickled: decoding a "
        "pickle needs `allow_pickle=True` on the reading side",
        f"{took * 1e6:.0f} us",
        "that message",
        "-",
        "nothing",
    ]


_SAVER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from dataflow.raw import DataFromList
    from dataflow.serialize import LMDBSerializer
    rows = [[i, np.full(3000, i % 251, np.uint8)] for i in range(20000)]
    print("start", flush=True)
    LMDBSerializer.save(DataFromList(rows, shuffle=False), sys.argv[1], write_frequency=500)
    """
)


def killed_saves(trials: int) -> list[str]:
    rng = np.random.default_rng(1)
    whole = absent = refused = short = 0
    with tempfile.TemporaryDirectory() as d:
        for trial in range(trials):
            path = os.path.join(d, f"s{trial}.lmdb")
            saver = subprocess.Popen(
                [sys.executable, "-c", _SAVER, path],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
            assert saver.stdout is not None
            saver.stdout.readline()  # the save begins
            time.sleep(float(rng.uniform(0.0, 0.5)))  # a random point in it (the fault)
            saver.kill()
            saver.wait()
            if not os.path.exists(path):
                absent += 1
                continue
            try:
                n = sum(1 for _ in LMDBSerializer.load(path, shuffle=False))
            except FormatError:
                refused += 1
                continue
            if n == 20000:
                whole += 1
            else:
                short += 1
        temps = sum(1 for name in os.listdir(d) if name.startswith("."))
        for trial in range(trials):  # the next save to each name clears what a killed one left
            path = os.path.join(d, f"s{trial}.lmdb")
            if os.path.exists(path):
                os.unlink(path)
            LMDBSerializer.save(DataFromList([[0]]), path)
        after = sum(1 for name in os.listdir(d) if name.startswith("."))
    return [
        f"`LMDBSerializer.save` SIGKILLed at a random point ({trials} trials)",
        f"the output absent in {absent}, whole in {whole}, refused with `FormatError` in "
        f"{refused}, **read as a shorter dataset in {short}**",
        "at once",
        "the unfinished output",
        "0",
        f"{temps} hidden temporary files (`.<name>.tmp-<host>-<pid>-<hex>`) until the next save "
        f"to the same name on this host removes them ({after} left after one more save to each)",
    ]


def identity(dp: list) -> list:
    return dp


def exactly_once() -> list[str]:
    n = 10**6
    before = children()
    ds = MultiProcessMapData(
        DataFromList([[i] for i in range(n)], shuffle=True), 4, identity, strict=True
    )
    lost = dup = 0
    t0 = time.perf_counter()
    for _ in range(3):
        seen = np.zeros(n, np.int64)
        for dp in ds:
            seen[dp[0]] += 1
        lost += int((seen == 0).sum())
        dup += int(np.clip(seen - 1, 0, None).sum())
    took = time.perf_counter() - t0
    ds.close()
    return [
        "10^6 datapoints x 3 passes through `MultiProcessMapData(strict=True)`, 4 workers, shuffled",
        "each pass every datapoint exactly once",
        f"{took:.1f} s for the 3 passes",
        str(lost),
        str(dup),
        leftovers(before),
    ]


def slow_identity(dp: list) -> list:
    time.sleep(0.0005)
    return dp


def closed_actors_left(ds: object) -> int:
    """Close a Ray flow; how many of its actors' processes are still alive 10 s later."""
    pids = [p for p in ds.worker_pids() if p is not None]  # type: ignore[attr-defined]
    ds.close()  # type: ignore[attr-defined]
    deadline = time.perf_counter() + 10
    while any(pid_alive(p) for p in pids) and time.perf_counter() < deadline:
        time.sleep(0.01)
    return sum(pid_alive(p) for p in pids)


def ray_rows() -> list[list[str]]:
    """The Ray map's rows: an exception in map_func, and a SIGKILLed actor (a local Ray)."""
    try:
        import ray
    except ImportError:
        return []
    from dataflow import RayMapData

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        ds = RayMapData(DataFromList([[i] for i in range(2000)], shuffle=False), raise_on_500, 2)
        try:
            for _ in ds:
                pass
            raise AssertionError("no error")
        except WorkerError as e:
            took = time.time() - float(str(e.__cause__).rsplit(" ", 1)[1])
            tb = "raise_on_500" in e.traceback_text
        left = closed_actors_left(ds)
        raised = [
            "`map_func` raises in a Ray actor (`RayMapData`)",
            "`WorkerError` with the remote traceback text"
            f"{'' if tb else ' (MISSING)'} and the exception as `__cause__`; the pass ends",
            f"{took * 1e3:.0f} ms from the raise to the driver",
            "the rest of the pass (not started)",
            "0",
            "nothing" if not left else f"{left} actor processes alive 10 s after close()",
        ]
        n = 3000
        ds = RayMapData(
            DataFromList([[i] for i in range(n)], shuffle=False), slow_identity, 2, batch_size=32
        )
        got, took, _ = pass_with_kill(ds, n)
        left = closed_actors_left(ds)
        killed = [
            "SIGKILL of a Ray actor's process (`RayMapData(strict=True)`, `max_restarts=3`)",
            "a warning; the actor is replaced and what it held is sent again (duplicates dropped "
            "by sequence number)",
            f"the pass of {n} ends {took:.2f} s after the kill",
            str(n - len(got)),
            str(sum(c - 1 for c in got.values())),
            "nothing" if not left else f"{left} actor processes alive 10 s after close()",
        ]
        return [raised, killed]
    finally:
        ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--fuzz", type=int, default=10**5, help="fuzzed codec messages")
    parser.add_argument("--saves", type=int, default=20, help="SIGKILLed saves")
    args = parser.parse_args()
    rows = [
        map_exception("process"),
        map_exception("thread"),
        kill_map_worker(False),
        kill_map_worker(True),
        *ray_rows(),
        kill_parent(),
        ctrl_c(),
        cycles(),
        poison(),
        hung_worker(),
        runner_kill(),
        corrupted_lmdb(args.trials, None),
        corrupted_lmdb(args.trials, False),
        fuzz_codec(args.fuzz),
        pickles_refused(),
        killed_saves(args.saves),
        exactly_once(),
    ]
    head = "| fault | what the user sees | time to error or recovery | lost | duplicated | leaked |"
    lines = [head, "|---|---|---|---|---|---|"] + ["| " + " | ".join(r) + " |" for r in rows]
    table = "\n".join(lines)
    print(table)
    if not args.no_write:
        text = DOC.read_text()
        block = f"{BEGIN}\n{table}\n{END}"
        if BEGIN in text:
            a, b = text.index(BEGIN), text.index(END) + len(END)
            text = text[:a] + block + text[b:]
        else:
            text = (
                text.rstrip("\n")
                + "\n\n## Measured by `python benchmarks/faults.py`\n\n"
                + block
                + "\n"
            )
        DOC.write_text(text)


if __name__ == "__main__":
    main()

"""The fault suite's measured rows: run the faults, print the table, write it into docs/reliability.md.

    python benchmarks/faults.py            # a few minutes on 2 cores
    python benchmarks/faults.py --no-write # print only

Each row: fault | what the user sees | time to error or recovery | lost | duplicated | leaked.
Rows so far: 1000 corrupted LMDB files (default reader, verify=False), a hung map worker
(timeout=), a SIGKILLed worker of a sharded runner with restart_workers. The other rows of
docs/reliability.md are asserted by the tests named there.
"""

from __future__ import annotations

import argparse
import os
import signal
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from dataflow import MultiProcessMapData, MultiProcessRunner, codec
from dataflow.errors import FormatError
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


def hung_worker() -> list[str]:
    before = children()
    ds = MultiProcessMapData(
        DataFromList([[i] for i in range(300)], shuffle=False),
        2,
        hang_on_57,
        strict=True,
        restart_workers=True,
        on_error="skip",
        timeout=0.5,
    )
    t0 = time.perf_counter()
    got = Counter(dp[0] for dp in ds)
    took = time.perf_counter() - t0
    skipped = ds.errors_skipped
    ds.close()
    lost = 300 - 1 - len(got)
    dup = sum(c - 1 for c in got.values())
    return [
        'a map worker hangs on one datapoint (`timeout=0.5`, `restart_workers=True`, `on_error="skip"`)',
        f"the worker is stopped and replaced; the datapoint is skipped after 3 hangs and counted "
        f"(`errors_skipped == {skipped}`); the pass goes on",
        f"{took:.2f} s for the pass of 300 (3 timeouts of 0.5 s)",
        f"{lost} (besides the skipped one)",
        str(dup),
        "nothing" if children() <= before else f"{len(children() - before)} processes",
    ]


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
    got: Counter = Counter()
    t_kill = t_next = None
    for k, dp in enumerate(ds):
        if k == n // 3:
            os.kill(ds.worker_pids()[0], signal.SIGKILL)
            t_kill = time.perf_counter()
        got[dp[0]] += 1
    t_next = time.perf_counter()
    ds.close()
    lost = n - len(got)
    dup = sum(c - 1 for c in got.values())
    return [
        "SIGKILL of a worker of `MultiProcessRunner(shard=True, restart_workers=True)` mid-pass",
        "a warning in the log; the worker is replaced and its shard resumes past what was delivered",
        f"the pass of {n} ends {t_next - t_kill:.2f} s after the kill",
        str(lost),
        str(dup),
        "nothing" if children() <= before else f"{len(children() - before)} processes",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    parser.add_argument("--trials", type=int, default=1000)
    args = parser.parse_args()
    rows = [
        corrupted_lmdb(args.trials, None),
        corrupted_lmdb(args.trials, False),
        hung_worker(),
        runner_kill(),
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

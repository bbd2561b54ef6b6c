"""Our parallel engine against tensorpack 0.11 and torch's DataLoader, side by side (quick).

    <peers-venv>/bin/python benchmarks/engine_compare.py [--rounds 3] [--seconds 2] [--only W2,W3,W5]

Needs an interpreter with tensorpack and torch installed (benchmarks/setup_peers.py makes one;
missing peers are skipped). Each (library, workload) case runs in a fresh process; libraries run
in a different order each round and each ratio is ours/peer within a round (the machine is
shared and noisy: compare ratios, not absolutes). The formal suite is benchmarks/run.py.

W2  tiny datapoints [i, 0.5] made in 2 worker processes, delivered one by one (us/dp; lower wins)
W3  uint8 arrays of 4.8 MB made in 2 workers, the consumer touching one byte a page (GB/s)
W5  a ~40 us pure-Python map returning int64[16] and a label, batch 64, 2 workers (items/s),
    with the single-core rate of the same map measured in the same process
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(os.path.dirname(HERE), "src")

W5_LOOPS = 600
SHAPE = (32, 224, 224, 3)


def _w5_map(i):
    acc = i
    for k in range(W5_LOOPS):
        acc = (acc * 1103515245 + k) & 0xFFFF
    return acc


def _measure(it, seconds, per_item=None, warmup=0.5):
    t_end = time.perf_counter() + warmup
    for x in it:
        if per_item:
            per_item(x)
        if time.perf_counter() > t_end:
            break
    n = 0
    t0 = time.perf_counter()
    t_end = t0 + seconds
    for x in it:
        if per_item:
            per_item(x)
        n += 1
        if n & 63 == 0 and time.perf_counter() > t_end:
            break
    return n / (time.perf_counter() - t0)


def _touch(arr):
    arr.reshape(-1)[::4096].sum()


# -- the cases (run in a child process) -------------------------------------------------------------


def case_ours(workload, seconds):
    sys.path.insert(0, SRC)
    import numpy as np

    from dataflow.base import DataFlow
    from dataflow.parallel import MultiProcessRunnerZMQ
    from dataflow.parallel_map import MultiProcessMapAndBatchData

    if workload == "W2":

        class Tiny(DataFlow):
            def __iter__(self):
                i = 0
                while True:
                    yield [i, 0.5]
                    i += 1

        ds = MultiProcessRunnerZMQ(Tiny(), num_proc=2)
        rate = _measure(iter(ds), seconds)
    elif workload == "W3":

        class Big(DataFlow):
            def __iter__(self):
                arr = np.random.randint(0, 255, size=SHAPE, dtype=np.uint8)
                while True:
                    yield [arr]

        ds = MultiProcessRunnerZMQ(Big(), num_proc=2)
        rate = _measure(iter(ds), seconds, lambda dp: _touch(dp[0]))
    else:

        class Counter(DataFlow):
            def __iter__(self):
                i = 0
                while True:
                    yield [i]
                    i += 1

        ds = MultiProcessMapAndBatchData(Counter(), 2, _w5_ours, 64)
        rate = 64 * _measure(iter(ds), seconds)
    ds.close()
    return rate


def _w5_ours(dp):
    import numpy as np

    v = _w5_map(dp[0])
    return [np.full(16, v, dtype=np.int64), dp[0] & 7]


def case_tensorpack(workload, seconds):
    import numpy as np
    from tensorpack.dataflow import DataFlow, MultiProcessMapAndBatchDataZMQ, PrefetchDataZMQ

    if workload == "W2":

        class Tiny(DataFlow):
            def __iter__(self):
                i = 0
                while True:
                    yield [i, 0.5]
                    i += 1

        ds = PrefetchDataZMQ(Tiny(), num_proc=2)
        ds.reset_state()
        return _measure(iter(ds), seconds)
    if workload == "W3":

        class Big(DataFlow):
            def __iter__(self):
                arr = np.random.randint(0, 255, size=SHAPE, dtype=np.uint8)
                while True:
                    yield [arr]

        ds = PrefetchDataZMQ(Big(), num_proc=2)
        ds.reset_state()
        return _measure(iter(ds), seconds, lambda dp: _touch(dp[0]))

    class Counter(DataFlow):
        def __iter__(self):
            i = 0
            while True:
                yield [i]
                i += 1

    ds = MultiProcessMapAndBatchDataZMQ(Counter(), 2, _w5_ours, 64, buffer_size=640)
    ds.reset_state()
    return 64 * _measure(iter(ds), seconds)


def case_torch(workload, seconds):
    import numpy as np
    import torch
    from torch.utils.data import DataLoader, Dataset, IterableDataset

    if workload == "W2":

        class Tiny(IterableDataset):
            def __iter__(self):
                i = 0
                while True:
                    yield [i, 0.5]
                    i += 1

        dl = DataLoader(Tiny(), batch_size=None, num_workers=2)
        return _measure(iter(dl), seconds)
    if workload == "W3":

        class Big(IterableDataset):
            def __iter__(self):
                arr = np.random.randint(0, 255, size=SHAPE, dtype=np.uint8)
                while True:
                    yield arr

        dl = DataLoader(Big(), batch_size=None, num_workers=2)
        return _measure(iter(dl), seconds, lambda t: _touch(t.numpy()))

    class Items(Dataset):
        def __len__(self):
            return 1 << 30

        def __getitem__(self, i):
            v = _w5_map(i)
            return torch.full((16,), v, dtype=torch.int64), i & 7

    dl = DataLoader(Items(), batch_size=64, num_workers=2)
    return 64 * _measure(iter(dl), seconds)


def case_single(workload, seconds):
    """The single-core rate of the W5 map, for the W5 ceiling."""
    t0 = time.perf_counter()
    n = 0
    while time.perf_counter() - t0 < seconds:
        for i in range(50):
            _w5_map(i)
        n += 50
    return n / (time.perf_counter() - t0)


CASES = {"ours": case_ours, "tensorpack": case_tensorpack, "torch": case_torch}


def _kill_children() -> None:
    """SIGKILL this process's children (peers without a death signal would outlive it)."""
    import signal

    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == me:
            try:
                os.kill(int(entry), signal.SIGKILL)
            except OSError:
                pass


def _run_case(lib, workload, seconds):
    cmd = [sys.executable, __file__, "--case", lib, workload, str(seconds)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return None
    for line in out.stdout.splitlines():
        if line.startswith("{"):
            return json.loads(line)["rate"]
    sys.stderr.write(f"[{lib} {workload} failed]\n{out.stderr[-2000:]}\n")
    return None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--only", default="W2,W3,W5")
    parser.add_argument("--case", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        lib, workload, seconds = args.case
        fn = case_single if lib == "single" else CASES[lib]
        print(json.dumps({"rate": fn(workload, float(seconds))}), flush=True)
        _kill_children()  # peers' worker cleanup at exit is not what is measured
        os._exit(0)
    libs = list(CASES)
    rng = random.Random(0)
    for workload in [w.strip().upper() for w in args.only.split(",")]:
        rates: dict[str, list] = {lib: [] for lib in libs}
        singles = []
        for _ in range(args.rounds):
            rng.shuffle(libs)
            for lib in libs:
                rates[lib].append(_run_case(lib, workload, args.seconds))
            if workload == "W5":
                singles.append(_run_case("single", workload, args.seconds))
        print(f"{workload}:")
        for lib in sorted(rates):
            vals = [r for r in rates[lib] if r]
            if not vals:
                print(f"  {lib:10s} (failed or not installed)")
                continue
            med = statistics.median(vals)
            if workload == "W2":
                shown = f"{1e6 / med:8.3f} us/dp"
            elif workload == "W3":
                shown = f"{med * 4.8e6 / 1e9:8.2f} GB/s"
            else:
                shown = f"{med:10,.0f} items/s"
            ratios = [o / p for o, p in zip(rates["ours"], rates[lib]) if o and p]
            ratio = f"ours/{lib} = {statistics.median(ratios):.2f}x" if lib != "ours" else ""
            print(f"  {lib:10s} {shown}   {ratio}")
        if singles and all(singles):
            ceiling = 2 * statistics.median(singles)
            ours = statistics.median([r for r in rates["ours"] if r])
            print(
                f"  ceiling    {ceiling:10,.0f} items/s (2 x single core); ours = {ours / ceiling:.1%}"
            )


if __name__ == "__main__":
    main()

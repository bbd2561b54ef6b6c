"""Quick measurements of the parallel engine (not the formal suite: see run.py for that).

    .venv/bin/python benchmarks/engine_quick.py [--seconds S] [--only W2,W3,W5] [--start-method M]

W2  tiny datapoints ``[i, 0.5]`` made in 2 worker processes, delivered one by one (us/dp).
W2b the same, batched 256 in the workers (us/dp).
W3  uint8 arrays of 4.8 MB (32x224x224x3) made in 2 workers; the consumer touches one byte a
    page (GB/s).
W5  a ~40 us pure-Python map returning int64[16] and a label, batch 64, 2 worker processes
    (items/s), against the single-core rate of the same map measured in the same run.

Each figure is the median of a few windows; the machine is shared, so compare ratios, not absolutes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src"))

from dataflow.base import DataFlow  # noqa: E402
from dataflow.parallel import MultiProcessRunnerZMQ  # noqa: E402


class Tiny(DataFlow):
    """``[i, 0.5]`` forever."""

    def __iter__(self):
        i = 0
        while True:
            yield [i, 0.5]
            i += 1


class TinyBatched(DataFlow):
    """Batches of 256 tiny datapoints (W2b), forever."""

    def __iter__(self):
        ids = np.arange(256, dtype=np.int64)
        half = np.full(256, 0.5)
        while True:
            yield [ids, half]


class Big(DataFlow):
    """The same 4.8 MB uint8 array, forever (the producer's own cost is not measured)."""

    def __init__(self, shape=(32, 224, 224, 3)):
        self.shape = shape

    def __iter__(self):
        arr = np.random.randint(0, 255, size=self.shape, dtype=np.uint8)
        while True:
            yield [arr]


def _windows(it, per_window: float, windows: int, on_item=None, warmup: float = 0.5):
    """Datapoints per second in each of ``windows`` windows of ``per_window`` seconds."""
    t_end = time.perf_counter() + warmup
    for dp in it:
        if on_item is not None:
            on_item(dp)
        if time.perf_counter() > t_end:
            break
    rates = []
    for _ in range(windows):
        n = 0
        t0 = time.perf_counter()
        t_end = t0 + per_window
        check = 0
        for dp in it:
            if on_item is not None:
                on_item(dp)
            n += 1
            check += 1
            if check >= 256:
                check = 0
                if time.perf_counter() > t_end:
                    break
        rates.append(n / (time.perf_counter() - t0))
    return rates


def w2(seconds: float, method: str | None, batched: bool = False) -> str:
    ds = MultiProcessRunnerZMQ(
        TinyBatched() if batched else Tiny(), num_proc=2, start_method=method
    )
    ds.reset_state()
    rates = _windows(iter(ds), seconds, 3)
    ds.close()
    rate = statistics.median(rates) * (256 if batched else 1)
    name = "W2b" if batched else "W2 "
    return f"{name} tiny across 2 processes: {1e6 / rate:.3f} us/dp  ({rate / 1e6:.2f} M dp/s)"


def w3(seconds: float, method: str | None) -> str:
    ds = MultiProcessRunnerZMQ(Big(), num_proc=2, start_method=method)
    ds.reset_state()
    sink = [0]

    def touch(dp):
        sink[0] += int(dp[0].reshape(-1)[::4096].sum())

    rates = _windows(iter(ds), seconds, 3, touch)
    ds.close()
    gbs = statistics.median(rates) * 32 * 224 * 224 * 3 / 1e9
    return f"W3  4.8 MB arrays across 2 processes: {gbs:.2f} GB/s"


def _w5_map(dp):
    """About 40 us of pure Python (calibrated on an idle core), returns int64[16] and a label."""
    acc = dp[0]
    for k in range(W5_LOOPS):
        acc = (acc * 1103515245 + k) & 0xFFFF
    return [np.full(16, acc, dtype=np.int64), dp[0] & 7]


W5_LOOPS = 600


class Counter(DataFlow):
    def __iter__(self):
        i = 0
        while True:
            yield [i]
            i += 1


def w5(seconds: float, method: str | None) -> str:
    from dataflow.parallel_map import MultiProcessMapAndBatchData

    # single-core rate of the same map, measured now
    dp = [12345]
    for _ in range(200):
        _w5_map(dp)
    singles = []
    for _ in range(3):
        t0 = time.perf_counter()
        n = 0
        while time.perf_counter() - t0 < seconds / 2:
            for _ in range(50):
                _w5_map(dp)
            n += 50
        singles.append(n / (time.perf_counter() - t0))
    single = statistics.median(singles)
    ds = MultiProcessMapAndBatchData(Counter(), 2, _w5_map, 64, start_method=method)
    ds.reset_state()
    rates = _windows(iter(ds), seconds, 3)
    ds.close()
    rate = statistics.median(rates) * 64
    return (
        f"W5  ~{1e6 / single:.0f} us map, batch 64, 2 processes: {rate:,.0f} items/s = "
        f"{rate / (2 * single):.1%} of 2x the single-core rate ({single:,.0f}/s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="length of one window")
    parser.add_argument("--only", default="W2,W2b,W3,W5")
    parser.add_argument("--start-method", default=None)
    args = parser.parse_args()
    which = {w.strip().upper() for w in args.only.split(",")}
    if "W2" in which:
        print(w2(args.seconds, args.start_method), flush=True)
    if "W2B" in which:
        print(w2(args.seconds, args.start_method, batched=True), flush=True)
    if "W3" in which:
        print(w3(args.seconds, args.start_method), flush=True)
    if "W5" in which:
        print(w5(args.seconds, args.start_method), flush=True)


if __name__ == "__main__":
    main()

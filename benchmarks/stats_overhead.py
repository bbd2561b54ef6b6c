"""What per-stage counting (dataflow._stats) costs: W1 and W2-ONE, passes with counting off and on
taken in turn in one process, so that the machine's drift hits both alike.

    python benchmarks/stats_overhead.py                 # 9 pairs of passes a workload
    python benchmarks/stats_overhead.py --pairs 15 --workloads W1

Each pair is one pass with counting off and one with it on (which comes first alternates); the
ratio on/off is taken pair by pair and its median and range are printed, with the median time per
datapoint of each mode (W1: in-call time, the whole pass, as nothing runs between the yields;
W2-ONE: wall time of the pass, its workers started once before the first pair). Counting is
switched per pass (``dataflow.stats.enable``), so the pipeline is the same object in both modes.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from workloads import w1_tiny, w2_procs  # noqa: E402


def _pass_ns(epoch) -> tuple[int, int]:
    t0 = time.perf_counter_ns()
    n = sum(1 for _ in epoch())
    return time.perf_counter_ns() - t0, n


def measure(name: str, pairs: int) -> dict:
    from dataflow import stats

    if name == "W1":
        built = w1_tiny.build_ours(w1_tiny.make_source())
        per_pass = w1_tiny.N
    else:
        built = w2_procs.ONE.BUILDERS["ours"]["default"](None)
        per_pass = w2_procs.N_ONE
    try:
        stats.enable(False)
        _pass_ns(built.epoch)  # warm-up (and, for W2-ONE, the workers' start)
        stats.enable(True)
        _pass_ns(built.epoch)
        off: list[float] = []
        on: list[float] = []
        for i in range(pairs):
            for mode in (False, True) if i % 2 == 0 else (True, False):
                stats.enable(mode)
                ns, _ = _pass_ns(built.epoch)
                (on if mode else off).append(ns / per_pass)
        stats.enable(False)
    finally:
        if built.close is not None:
            built.close()
    ratios = [a / b for a, b in zip(on, off)]
    return {
        "workload": name,
        "off_ns_per_dp": statistics.median(off),
        "on_ns_per_dp": statistics.median(on),
        "ratio_median": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=9)
    parser.add_argument("--workloads", default="W1,W2-ONE")
    args = parser.parse_args()
    print("| workload | counting off, ns/dp | counting on, ns/dp | on / off: median (min-max) |")
    print("|---|---|---|---|")
    for name in args.workloads.split(","):
        r = measure(name.strip(), args.pairs)
        print(
            f"| {r['workload']} | {r['off_ns_per_dp']:.0f} | {r['on_ns_per_dp']:.0f} | "
            f"{r['ratio_median']:.3f} ({r['ratio_min']:.3f}-{r['ratio_max']:.3f}) |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

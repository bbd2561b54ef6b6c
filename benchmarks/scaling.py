"""W4 and W3-4.8MB throughput against the number of worker processes, ours and torch, one chart.

    .bench-venv/bin/python benchmarks/scaling.py [--workload W4|W3-4.8MB] [--workers 1,2,3,4]
        [--images 1280] [--rounds 3] [--chart docs/benchmarks/W4-scaling.png]

W4's work (``workloads.w4_imagenet``: read a JPEG, decode, random-resized crop 224, flip) in
batches of 64, for each worker count: ours as the tensorpack idiom (``BatchData`` over
``MultiProcessMapDataZMQ``) and as ``MultiProcessMapAndBatchData`` (batching in the workers), and
torch's ``DataLoader(dataset, batch_size=64, num_workers=k)``; images per second.

W3-4.8MB (``workloads.w3_arrays``: 256 uint8 arrays of 4.8 MB a pass made in the workers, the
consumer touching a byte a page): ours ``MultiProcessRunnerZMQ`` (its ``default`` and ``shard``
configs) and torch's ``DataLoader`` over an ``IterableDataset``; GB per second.

Each case: a fresh pipeline, one warm-up pass (workers start), then ``--rounds`` timed passes; the
figure is the median rate of the timed passes. On a 2-core machine, 3 and 4 workers share the two
cores: the curves flatten there by construction.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from workloads import w4_imagenet as w4  # noqa: E402

W4_LIBS = {
    "ours (BatchData over MultiProcessMapDataZMQ)": w4.build_ours,
    "ours (MultiProcessMapAndBatchData)": w4.build_ours_map_and_batch,
    "torch DataLoader": w4.build_torch,
}


def w3_libs() -> dict[str, Any]:
    from workloads import w3_arrays

    builders = w3_arrays.MB4_8.BUILDERS
    return {
        "ours (MultiProcessRunnerZMQ)": builders["ours"]["default"],
        "ours (MultiProcessRunnerZMQ, shard=True)": builders["ours"]["shard"],
        "torch DataLoader": builders["torch"]["default"],
    }


def set_workers(k: int) -> None:
    """The worker count the workloads' builders read when they build."""
    from workloads import w2_procs

    w4.WORKERS = k
    w2_procs.NUM_WORKERS = k


def w4_pass(built: Any) -> float:
    """Images in one pass."""
    return float(sum(len(batch[1]) for batch in built.epoch()))


def w3_pass(built: Any) -> float:
    """Gigabytes in one pass (the consumer touches a byte a page, as W3 does)."""
    total = 0
    for dp in built.epoch():
        arr = dp[0]
        int(arr.reshape(-1)[::4096].sum())
        total += arr.nbytes
    return total / 1e9


def one_case(build: Any, arg: Any, one_pass: Any, rounds: int) -> float:
    built = build(arg)
    try:
        expected = one_pass(built)  # warm-up: the workers start
        rates = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            got = one_pass(built)
            rates.append(got / (time.perf_counter() - t0))
            assert got == expected, f"a pass gave {got}, the first {expected}"
        return statistics.median(rates)
    finally:
        if built.close is not None:
            built.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", default="W4", choices=["W4", "W3-4.8MB"])
    parser.add_argument("--workers", default="1,2,3,4")
    parser.add_argument("--images", type=int, default=1280, help="W4: images a pass")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--chart", type=Path, default=None, help="write the chart (PNG) here")
    args = parser.parse_args()
    counts = [int(k) for k in args.workers.split(",")]
    if args.workload == "W4":
        libs, arg, one_pass, unit = W4_LIBS, w4.make_source()[: args.images], w4_pass, "img/s"
        what = f"{args.images} images"
        title = "W4 (JPEG decode + crop + flip, batch 64) by worker count"
    else:
        libs, arg, one_pass, unit = w3_libs(), None, w3_pass, "GB/s"
        what = "256 arrays of 4.8 MB"
        title = "W3-4.8MB (4.8 MB arrays made in the workers) by worker count"
    rates: dict[str, dict[int, float]] = {lib: {} for lib in libs}
    for k in counts:
        set_workers(k)
        for lib, build in libs.items():
            rates[lib][k] = one_case(build, arg, one_pass, args.rounds)
            print(f"{lib:46s} {k} workers: {rates[lib][k]:9.2f} {unit}", flush=True)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print()
    print(
        f"{args.workload} {unit} by worker count ({cpus} CPUs; median of {args.rounds} passes "
        f"of {what})"
    )
    print()
    print("| pipeline | " + " | ".join(f"{k} workers" for k in counts) + " |")
    print("|---|" + "---|" * len(counts))
    digits = 0 if unit == "img/s" else 2
    for lib in libs:
        cells = " | ".join(f"{rates[lib][k]:,.{digits}f}" for k in counts)
        print(f"| {lib} | {cells} |")
    torch_rates = rates["torch DataLoader"]
    for lib in list(libs)[:2]:
        ratios = ", ".join(f"{rates[lib][k] / torch_rates[k]:.2f}x" for k in counts)
        print(f"\n{lib} / torch: {ratios}")
    if args.chart is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
        for lib in libs:
            ax.plot(counts, [rates[lib][k] for k in counts], marker="o", label=lib)
        ax.axvline(cpus, color="grey", linestyle=":", linewidth=1)
        ax.text(cpus, ax.get_ylim()[0], f" {cpus} CPUs", color="grey", va="bottom")
        ax.set_xticks(counts)
        ax.set_xlabel("worker processes")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.legend(fontsize=8)
        fig.tight_layout()
        args.chart.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.chart)
        print(f"\nchart: {args.chart}")


if __name__ == "__main__":
    main()

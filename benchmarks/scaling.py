"""W4 throughput against the number of worker processes, ours and torch's DataLoader, one chart.

    .bench-venv/bin/python benchmarks/scaling.py [--workers 1,2,3,4] [--images 1280] [--rounds 3]
        [--chart docs/benchmarks/W4-scaling.png]

W4's work (``workloads.w4_imagenet``: read a JPEG, decode, random-resized crop 224, flip) in
batches of 64, for each worker count: ours as the tensorpack idiom (``BatchData`` over
``MultiProcessMapDataZMQ``) and as ``MultiProcessMapAndBatchData`` (batching in the workers), and
torch's ``DataLoader(dataset, batch_size=64, num_workers=k)``. Each case: a fresh pipeline, one
warm-up pass (workers start), then ``--rounds`` timed passes over ``--images`` images; the figure
is the median images per second of the timed passes. Cases run in turn, round-robin over the
worker counts, so that the machine's drift hits all alike. On a 2-core machine, 3 and 4 workers
share the two cores: the curve flattens there by construction.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from workloads import w4_imagenet as w4  # noqa: E402

LIBS = {
    "ours (BatchData over MultiProcessMapDataZMQ)": w4.build_ours,
    "ours (MultiProcessMapAndBatchData)": w4.build_ours_map_and_batch,
    "torch DataLoader": w4.build_torch,
}


def one_case(build, source: list, rounds: int) -> float:
    built = build(source)
    try:
        n = sum(len(batch[1]) for batch in built.epoch())  # warm-up: the workers start
        assert n == len(source), f"a pass gave {n} of {len(source)}"
        rates = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            n = sum(len(batch[1]) for batch in built.epoch())
            rates.append(n / (time.perf_counter() - t0))
            assert n == len(source), f"a pass gave {n} of {len(source)}"
        return statistics.median(rates)
    finally:
        if built.close is not None:
            built.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,2,3,4")
    parser.add_argument("--images", type=int, default=1280)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--chart", type=Path, default=None, help="write the chart (PNG) here")
    args = parser.parse_args()
    counts = [int(k) for k in args.workers.split(",")]
    source = w4.make_source()[: args.images]
    rates: dict[str, dict[int, float]] = {lib: {} for lib in LIBS}
    for k in counts:
        w4.WORKERS = k  # the builders read it when they build
        for lib, build in LIBS.items():
            rates[lib][k] = one_case(build, source, args.rounds)
            print(f"{lib:46s} {k} workers: {rates[lib][k]:7.0f} img/s", flush=True)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print()
    print(
        f"W4 img/s by worker count ({cpus} CPUs; median of {args.rounds} passes of "
        f"{args.images} images)"
    )
    print()
    print("| pipeline | " + " | ".join(f"{k} workers" for k in counts) + " |")
    print("|---|" + "---|" * len(counts))
    for lib in LIBS:
        print(f"| {lib} | " + " | ".join(f"{rates[lib][k]:,.0f}" for k in counts) + " |")
    torch_rates = rates["torch DataLoader"]
    for lib in list(LIBS)[:2]:
        ratios = ", ".join(f"{rates[lib][k] / torch_rates[k]:.2f}x" for k in counts)
        print(f"\n{lib} / torch: {ratios}")
    if args.chart is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
        for lib in LIBS:
            ax.plot(counts, [rates[lib][k] for k in counts], marker="o", label=lib)
        ax.axvline(cpus, color="grey", linestyle=":", linewidth=1)
        ax.text(cpus, ax.get_ylim()[0], f" {cpus} CPUs", color="grey", va="bottom")
        ax.set_xticks(counts)
        ax.set_xlabel("worker processes")
        ax.set_ylabel("images / s")
        ax.set_title("W4 (JPEG decode + crop + flip, batch 64) by worker count")
        ax.legend(fontsize=8)
        fig.tight_layout()
        args.chart.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.chart)
        print(f"\nchart: {args.chart}")


if __name__ == "__main__":
    main()

"""The ``dataflow`` command (also ``python -m dataflow``).

Subcommands:
    demo    build a small pipeline on data it generates, run it with a progress bar, and print the
            throughput of every stage.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["main"]


@dataclass
class StageRate:
    name: str
    datapoints: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.datapoints / self.seconds if self.seconds > 0 else float("inf")


def _demo_stages(num: int, image_size: int, batch_size: int) -> list[tuple[str, Callable]]:
    """The demo pipeline as a list of (stage name, builder of the pipeline up to that stage)."""
    from .common import BatchData, MapData, MapDataComponent
    from .raw import DataFromList

    rng = np.random.RandomState(0)
    images = [rng.randint(0, 256, (image_size, image_size, 3), dtype=np.uint8) for _ in range(num)]
    records = [[img, i % 10] for i, img in enumerate(images)]

    def source():
        return DataFromList(records, shuffle=True)

    def normalize(img: np.ndarray) -> np.ndarray:
        return (img.astype(np.float32) - 127.5) / 127.5

    def flip(dp: list) -> list:
        img, label = dp
        return [img[:, ::-1] if label % 2 else img, label]

    def with_normalize():
        return MapDataComponent(source(), normalize, index=0)

    def with_flip():
        return MapData(with_normalize(), flip)

    def with_batch():
        return BatchData(with_flip(), batch_size, remainder=True)

    return [
        ("source: DataFromList (shuffle)", source),
        ("map: normalize to float32", with_normalize),
        ("map: random flip", with_flip),
        (f"batch: BatchData({batch_size})", with_batch),
    ]


def _time_pipeline(df, datapoints_per_item: int) -> tuple[int, float]:
    df.reset_state()
    start = time.perf_counter()
    count = 0
    for _ in df:
        count += datapoints_per_item
    seconds = time.perf_counter() - start
    df.close()
    return count, seconds


def run_demo(args: argparse.Namespace) -> int:
    from .common import RepeatedData, TestDataSpeed

    stages = _demo_stages(args.size, args.image_size, args.batch_size)
    print(
        f"dataflow demo: {args.size} generated {args.image_size}x{args.image_size}x3 images, "
        f"{len(stages)} stages, {args.epochs} epoch(s)"
    )
    full = RepeatedData(stages[-1][1](), args.epochs)
    with full:
        TestDataSpeed(full, size=len(full)).start()

    rates: list[StageRate] = []
    for name, build in stages:
        per_item = args.batch_size if name.startswith("batch") else 1
        count, seconds = _time_pipeline(build(), per_item)
        rates.append(StageRate(name, count, seconds))

    print("\nper-stage throughput (pipeline up to and including the stage):")
    print(f"  {'stage':<34} {'datapoints/s':>14} {'us/datapoint added':>20}")
    previous = 0.0
    for rate in rates:
        cost = 1e6 / rate.per_second
        print(f"  {rate.name:<34} {rate.per_second:>14,.0f} {cost - previous:>20.2f}")
        previous = cost
    slowest = max(
        range(len(rates)),
        key=lambda i: (1e6 / rates[i].per_second) - (1e6 / rates[i - 1].per_second if i else 0.0),
    )
    print(f"\nthe most expensive stage is: {rates[slowest].name}")
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dataflow", description="Fast, exact, leak-free data pipelines for ML training."
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser(
        "demo",
        help="run a small pipeline on generated data and print per-stage throughput",
        description="Build a pipeline on images it generates (no network), run it with a "
        "progress bar, and print the throughput of every stage.",
    )
    demo.add_argument("--size", type=_positive_int, default=2000, help="number of images")
    demo.add_argument("--image-size", type=_positive_int, default=64, help="image side in pixels")
    demo.add_argument("--batch-size", type=_positive_int, default=64, help="batch size")
    demo.add_argument("--epochs", type=_positive_int, default=2, help="passes for the progress bar")
    demo.set_defaults(func=run_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dataflow`` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.version:
        from . import __version__

        print(__version__)
        return 0
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

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


def _synthetic_images(num: int, size: int) -> list[np.ndarray]:
    """Smooth random pictures (upscaled noise plus grain): they compress like photos do."""
    import cv2

    rng = np.random.RandomState(0)
    images = []
    for _ in range(num):
        coarse = rng.randint(0, 256, (8, 8, 3), dtype=np.uint8)
        img = cv2.resize(coarse, (size, size * 3 // 4), interpolation=cv2.INTER_CUBIC)
        grain = rng.randint(-12, 13, img.shape)
        images.append(np.clip(img.astype(np.int16) + grain, 0, 255).astype(np.uint8))
    return images


def _image_stages(args: argparse.Namespace) -> list[tuple[str, Callable]]:
    """JPEG bytes -> decode -> random-resized crop + flip -> batch: a realistic image pipeline."""
    import cv2

    from . import imgaug
    from .common import BatchData, MapDataComponent
    from .image import AugmentImageComponent, imdecode
    from .raw import DataFromList

    jpegs = [
        cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
        for img in _synthetic_images(args.size, args.image_size)
    ]
    records = [[jpeg, i % 10] for i, jpeg in enumerate(jpegs)]
    crop = args.crop

    def source():
        return DataFromList(records, shuffle=True)

    def decoded():
        return MapDataComponent(source(), imdecode, index=0)

    def augmented():
        augmentors = [
            imgaug.GoogleNetRandomCropAndResize(target_shape=crop),
            imgaug.Flip(horiz=True),
        ]
        return AugmentImageComponent(decoded(), augmentors, index=0, copy=False)

    def batched():
        return BatchData(augmented(), args.batch_size, remainder=True)

    return [
        ("source: DataFromList (JPEG bytes)", source),
        ("map: imdecode", decoded),
        (f"augment: random crop {crop} + flip", augmented),
        (f"batch: BatchData({args.batch_size})", batched),
    ]


def _array_stages(args: argparse.Namespace) -> list[tuple[str, Callable]]:
    """The pipeline without OpenCV: raw uint8 arrays -> normalize -> flip -> batch."""
    from .common import BatchData, MapData, MapDataComponent
    from .raw import DataFromList

    rng = np.random.RandomState(0)
    side = args.image_size
    records = [
        [rng.randint(0, 256, (side, side, 3), dtype=np.uint8), i % 10] for i in range(args.size)
    ]

    def source():
        return DataFromList(records, shuffle=True)

    def normalize(img: np.ndarray) -> np.ndarray:
        return (img.astype(np.float32) - 127.5) / 127.5

    def flip(dp: list) -> list:
        img, label = dp
        return [img[:, ::-1] if label % 2 else img, label]

    def normalized():
        return MapDataComponent(source(), normalize, index=0)

    def flipped():
        return MapData(normalized(), flip)

    def batched():
        return BatchData(flipped(), args.batch_size, remainder=True)

    return [
        ("source: DataFromList (arrays)", source),
        ("map: normalize to float32", normalized),
        ("map: flip", flipped),
        (f"batch: BatchData({args.batch_size})", batched),
    ]


def _demo_stages(args: argparse.Namespace) -> tuple[str, list[tuple[str, Callable]]]:
    try:
        import cv2  # noqa: F401
    except ImportError:
        return "arrays (install pydataflow[image] for the JPEG pipeline)", _array_stages(args)
    return "JPEG images", _image_stages(args)


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

    kind, stages = _demo_stages(args)
    print(
        f"dataflow demo: {args.size} generated {kind}, {args.image_size} px wide, "
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
    demo.add_argument("--size", type=_positive_int, default=1000, help="number of images")
    demo.add_argument("--image-size", type=_positive_int, default=320, help="image width in pixels")
    demo.add_argument("--crop", type=_positive_int, default=112, help="side of the random crop")
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

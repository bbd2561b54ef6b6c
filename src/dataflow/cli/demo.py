"""``dataflow demo``: a small image pipeline on data it generates, run with a progress bar, and the
throughput of every stage (arrays instead of JPEG images when OpenCV is missing).

Every figure counts images (a batch of 64 counts 64), and the parallel variant runs decode and
augmentation in one worker process per CPU this process may use, which the first lines say."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


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

    from .. import imgaug
    from ..common import BatchData, MapDataComponent
    from ..image import AugmentImageComponent, imdecode
    from ..raw import DataFromList

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

    def in_workers():
        # The same decode + augment, run in worker processes by one parallel map.
        from ..parallel_map import MultiProcessMapData

        augmentors = imgaug.AugmentorList(
            [imgaug.GoogleNetRandomCropAndResize(target_shape=crop), imgaug.Flip(horiz=True)]
        )

        def decode_and_augment(dp: list) -> list:
            return [augmentors.augment(imdecode(dp[0])), dp[1]]

        mapped = MultiProcessMapData(source(), num_proc=args.workers, map_func=decode_and_augment)
        return BatchData(mapped, args.batch_size, remainder=True)

    stages = [
        ("source: DataFromList (JPEG bytes)", source),
        ("map: imdecode", decoded),
        (f"augment: random crop {crop} + flip", augmented),
        (f"batch: BatchData({args.batch_size})", batched),
    ]
    if args.workers > 0:
        stages.append((f"parallel: the same in {args.workers} worker processes", in_workers))
    return stages


def _array_stages(args: argparse.Namespace) -> list[tuple[str, Callable]]:
    """The pipeline without OpenCV: raw uint8 arrays -> normalize -> flip -> batch."""
    from ..common import BatchData, MapData, MapDataComponent
    from ..raw import DataFromList

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


def _run_with_progress(df, batch_size: int, total: int) -> None:
    """One run of ``df`` (batches) under a progress bar that counts images."""
    import tqdm

    with df, tqdm.tqdm(total=total, unit="img", desc="dataflow demo", smoothing=0.2) as bar:
        df.reset_state()
        for batch in df:
            bar.update(len(batch[1]) if isinstance(batch, (list, tuple)) else batch_size)


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
    from .._engine.stage import default_workers
    from ..common import RepeatedData

    cpus = default_workers()
    if args.workers is None:
        args.workers = cpus
    kind, all_stages = _demo_stages(args)
    stages = [stage for stage in all_stages if not stage[0].startswith("parallel")]
    parallel = [stage for stage in all_stages if stage[0].startswith("parallel")]
    print(
        f"dataflow demo: {args.size} generated {kind}, {args.image_size} px wide, "
        f"{len(stages)} stages, {args.epochs} epoch(s); every figure counts images"
    )
    if parallel:
        note = (
            "the parallel variant cannot run faster than the serial one on one CPU"
            if cpus < 2
            else f"the parallel variant decodes and augments in {args.workers} worker processes"
        )
        print(f"this process may use {cpus} CPU(s): {note}")
    # The progress bar runs the fastest variant: in workers when there are some.
    full = RepeatedData((parallel or stages)[-1][1](), args.epochs)
    _run_with_progress(full, args.batch_size, args.size * args.epochs)

    def measure(name: str, build: Callable) -> StageRate:
        per_item = args.batch_size if name.startswith(("batch", "parallel")) else 1
        count, seconds = _time_pipeline(build(), per_item)
        return StageRate(name, count, seconds)

    rates = [measure(name, build) for name, build in stages]

    print("\nper-stage throughput (pipeline up to and including the stage):")
    print(f"  {'stage':<42} {'images/s':>14} {'us/image added':>20}")
    previous = 0.0
    for rate in rates:
        cost = 1e6 / rate.per_second
        print(f"  {rate.name:<42} {rate.per_second:>14,.0f} {cost - previous:>20.2f}")
        previous = cost
    for name, build in parallel:
        rate = measure(name, build)
        speedup = rate.per_second / rates[-1].per_second
        print(f"  {rate.name:<42} {rate.per_second:>14,.0f} {speedup:>10.2f}x serial")
    slowest = max(
        range(len(rates)),
        key=lambda i: (1e6 / rates[i].per_second) - (1e6 / rates[i - 1].per_second if i else 0.0),
    )
    print(f"\nthe most expensive stage is: {rates[slowest].name}")
    return 0

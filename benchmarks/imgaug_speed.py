"""Per-core speed of the image path: JPEG decode -> GoogleNetRandomCropAndResize(224) -> Flip.

Compares, in one process and interleaved round by round (so machine noise hits all alike):

- ``cv2 by hand``: the same steps written directly with OpenCV and a numpy RandomState;
- ``ours (augment)``: ``dataflow.image.imdecode`` + ``AugmentorList([...]).augment``;
- ``ours (flow)``: DataFromList(jpeg bytes) -> MapDataComponent(imdecode) ->
  AugmentImageComponent(copy=False), and the same with the default ``copy=True``;
- torchvision's ``RandomResizedCrop`` + ``RandomHorizontalFlip`` on PIL images, if importable
  (it is not a dependency; the script says so and skips it otherwise);

plus the decoders alone (cv2, Pillow, simplejpeg where installed), which is how ``imdecode``'s
decoder was chosen. Images: synthetic 500x375 JPEGs at quality 94 (~100 KB), generated here.
OpenCV is limited to one thread so every figure is per core.

    .venv/bin/python benchmarks/imgaug_speed.py            # ~1 minute
    .venv/bin/python benchmarks/imgaug_speed.py --smoke    # a few seconds, for CI
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from collections.abc import Callable

import cv2
import numpy as np

from dataflow import imgaug
from dataflow.common import MapDataComponent
from dataflow.image import AugmentImageComponent, imdecode
from dataflow.raw import DataFromList


def make_jpegs(n: int, seed: int = 0) -> list[bytes]:
    """Distinct 500x375 photo-like JPEGs (smooth structure plus sensor-like noise), q94."""
    rng = np.random.RandomState(seed)
    yy, xx = np.mgrid[0:375, 0:500].astype(np.float32)
    out = []
    for i in range(n):
        fx, fy = rng.uniform(8, 40, 2)
        img = np.stack(
            [
                128 + 100 * np.sin(xx / fx + yy / (fy + 7) + i),
                128 + 100 * np.cos(yy / fy - xx / 53),
                255 * (xx * yy) / (500 * 375),
            ],
            -1,
        )
        img += rng.normal(0, 12, img.shape)
        ok, enc = cv2.imencode(
            ".jpg", np.clip(img, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 94]
        )
        assert ok
        out.append(enc.tobytes())
    return out


# -- the hand-written version -----------------------------------------------------------------
def hand_written(jpegs: list[bytes], seed: int) -> Callable[[int], None]:
    rng = np.random.RandomState(seed)
    target = 224

    def crop_resize(img: np.ndarray) -> np.ndarray:
        h, w = img.shape[:2]
        area = h * w
        for _ in range(10):
            target_area = rng.uniform(0.08, 1.0) * area
            aspect = rng.uniform(0.75, 1.333)
            ww = int(np.sqrt(target_area * aspect) + 0.5)
            hh = int(np.sqrt(target_area / aspect) + 0.5)
            if rng.uniform() < 0.5:
                ww, hh = hh, ww
            if hh <= h and ww <= w:
                x1 = rng.randint(0, w - ww + 1)
                y1 = rng.randint(0, h - hh + 1)
                return cv2.resize(img[y1 : y1 + hh, x1 : x1 + ww], (target, target))
        scale = target / min(h, w)
        nh, nw = (target, int(scale * w + 0.5)) if h < w else (int(scale * h + 0.5), target)
        img = cv2.resize(img, (nw, nh))
        y0, x0 = (nh - target) // 2, (nw - target) // 2
        return img[y0 : y0 + target, x0 : x0 + target]

    def run(count: int) -> None:
        n = len(jpegs)
        for i in range(count):
            img = cv2.imdecode(np.frombuffer(jpegs[i % n], np.uint8), cv2.IMREAD_COLOR)
            img = crop_resize(img)
            if rng.uniform() < 0.5:
                img = img[:, ::-1]

    return run


# -- ours -------------------------------------------------------------------------------------
def make_augs() -> imgaug.AugmentorList:
    return imgaug.AugmentorList(
        [imgaug.GoogleNetRandomCropAndResize(target_shape=224), imgaug.Flip(horiz=True)]
    )


def ours_augment(jpegs: list[bytes], seed: int) -> Callable[[int], None]:
    augs = make_augs()
    # One generator shared in the hand-written order (crop draws, then the flip draw), so both
    # versions crop and flip exactly the same way and do the same work.
    rng = np.random.RandomState(seed)
    for aug in augs.augmentors:
        aug.rng = rng

    def run(count: int) -> None:
        n = len(jpegs)
        for i in range(count):
            augs.augment(imdecode(jpegs[i % n]))

    return run


def ours_flow(jpegs: list[bytes], copy: bool) -> Callable[[int], None]:
    ds = DataFromList([[b] for b in jpegs], shuffle=False)
    ds = MapDataComponent(ds, imdecode, 0)
    ds = AugmentImageComponent(ds, make_augs(), copy=copy)
    ds.reset_state()

    def run(count: int) -> None:
        done = 0
        while done < count:
            for _ in ds:
                done += 1
                if done >= count:
                    break

    return run


def torchvision_variant(jpegs: list[bytes]) -> Callable[[int], None] | None:
    try:
        from PIL import Image
        from torchvision import transforms  # type: ignore[import-not-found]
    except ImportError:
        return None
    tf = transforms.Compose(
        [transforms.RandomResizedCrop(224, antialias=True), transforms.RandomHorizontalFlip()]
    )

    def run(count: int) -> None:
        n = len(jpegs)
        for i in range(count):
            img = Image.open(io.BytesIO(jpegs[i % n])).convert("RGB")
            np.asarray(tf(img))

    return run


# -- decoders alone ---------------------------------------------------------------------------
def decoders(jpegs: list[bytes]) -> dict[str, Callable[[int], None]]:
    out: dict[str, Callable[[int], None]] = {}
    n = len(jpegs)

    def cv2_run(count: int) -> None:
        for i in range(count):
            cv2.imdecode(np.frombuffer(jpegs[i % n], np.uint8), cv2.IMREAD_COLOR)

    out["decode: cv2.imdecode"] = cv2_run
    try:
        from PIL import Image

        def pil_run(count: int) -> None:
            for i in range(count):
                np.asarray(Image.open(io.BytesIO(jpegs[i % n])).convert("RGB"))

        out["decode: Pillow"] = pil_run
    except ImportError:
        print("note: Pillow not installed, its decoder is not measured")
    try:
        import simplejpeg  # type: ignore[import-not-found]

        def sj_run(count: int) -> None:
            for i in range(count):
                simplejpeg.decode_jpeg(jpegs[i % n], "BGR")

        out["decode: simplejpeg"] = sj_run
    except ImportError:
        print("note: simplejpeg not installed, its decoder is not measured")
    return out


# -- timing -----------------------------------------------------------------------------------
def timed(run: Callable[[int], None], count: int) -> float:
    """CPU seconds per image (process time: what one core spends, immune to waiting for a core)."""
    start = time.process_time()
    run(count)
    return (time.process_time() - start) / count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64, help="distinct JPEGs (default 64)")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds (default 7)")
    parser.add_argument("--per-round", type=int, default=128, help="images per variant per round")
    parser.add_argument("--smoke", action="store_true", help="tiny run: checks it works")
    args = parser.parse_args(argv)
    if args.smoke:
        args.images, args.rounds, args.per_round = 4, 2, 8

    cv2.setNumThreads(1)
    jpegs = make_jpegs(args.images)
    print(
        f"{len(jpegs)} JPEGs 500x375 q94, mean {np.mean([len(j) for j in jpegs]) / 1024:.0f} KiB; "
        f"OpenCV {cv2.__version__} (1 thread), numpy {np.__version__}, Python {sys.version.split()[0]}"
    )
    variants: dict[str, Callable[[int], None]] = {
        "cv2 by hand": hand_written(jpegs, 1),
        "ours (augment)": ours_augment(jpegs, 1),
        "ours (flow, copy=False)": ours_flow(jpegs, copy=False),
        "ours (flow, copy=True)": ours_flow(jpegs, copy=True),
    }
    tv = torchvision_variant(jpegs)
    if tv is None:
        print("note: torchvision is not importable here; its comparison is skipped")
    else:
        variants["torchvision (PIL)"] = tv
    variants.update(decoders(jpegs))

    for run in variants.values():  # warm up caches and allocator
        run(min(8, args.per_round))
    samples: dict[str, list[float]] = {name: [] for name in variants}
    order = list(variants)
    for r in range(args.rounds):
        # Rotate the order each round so that no variant always runs first or last.
        for name in order[r % len(order) :] + order[: r % len(order)]:
            samples[name].append(timed(variants[name], args.per_round))

    base = samples["cv2 by hand"]
    print(
        f"\nCPU ms per image, median of {args.rounds} rounds x {args.per_round} images (min-max):"
    )
    for name, vals in samples.items():
        med = statistics.median(vals) * 1e3
        line = f"  {name:28s} {med:7.3f} ms  ({min(vals) * 1e3:.3f}-{max(vals) * 1e3:.3f})"
        if not name.startswith("decode"):
            ratios = [v / b for v, b in zip(vals, base)]
            line += f"   x{statistics.median(ratios):.3f} of cv2 by hand (paired median)"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())

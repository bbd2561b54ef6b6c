"""W10: the map stage on a local Ray: RayMapData against Ray Data and MultiProcessMapData.

    <python with ray>/bin/python benchmarks/ray_compare.py [--passes 2] [--only W4,W5]

One run, one machine, a local Ray with as many CPUs as the machine (2 here), 2 workers each:

- W4's map (read a JPEG, decode, random-resized crop 224, flip; ``workloads.w4_imagenet``) and
  W5's tiny map (~40 us of pure Python -> int64[16], label; ``workloads.w5_gil``), batch 64;
- ``ours-ray``: ``BatchData(RayMapData(DataFromList(src), f, 2, strict=True), 64)``;
- ``raydata``: Ray Data, ``from_items(src).map_batches(f over the rows of a batch,
  batch_size=64, concurrency=2)`` built once, and ``iter_batches(batch_size=64)`` each pass (each
  iteration executes the pipeline again, as an epoch loop over a Ray Dataset does); needs
  ``ray[data]`` (pyarrow) in the peers' venv: ``python benchmarks/setup_peers.py --peers raydata``
  (never the project's venv);
- ``ours-mp``: ``BatchData(MultiProcessMapData(DataFromList(src), 2, f, strict=True), 64)``.

Each case: one warm-up pass (actors or processes start), then ``--passes`` timed passes; the
figure is items per second over the timed passes, with the pass's count checked. Goal (issue
17): ours-ray >= 1.5x raydata on W4 and W5; the gap to ours-mp is Ray's per-call cost.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import numpy as np  # noqa: E402

from workloads import w4_imagenet, w5_gil  # noqa: E402


def _w5_map(i: int) -> list:
    return w5_gil.work(i)


WORKLOADS: dict[str, dict[str, Any]] = {
    "W4": {
        "source": lambda: w4_imagenet.make_source()[:1280],
        "map": w4_imagenet.user_map,
        "ray_batch": 16,
    },
    "W5": {"source": lambda: list(range(2**14)), "map": _w5_map, "ray_batch": 256},
}


def time_passes(make_pass, n: int, passes: int) -> float:
    count = sum(len(batch[1]) for batch in make_pass())  # warm-up
    assert count == n, f"warm-up pass gave {count} of {n}"
    start = time.perf_counter()
    for _ in range(passes):
        count = 0
        for batch in make_pass():
            count += len(batch[1])
        assert count == n, f"a pass gave {count} of {n}"
    return n * passes / (time.perf_counter() - start)


def run_ours(kind: str, source: list, func: Any, ray_batch: int, passes: int) -> float:
    from dataflow import BatchData, DataFromList, MultiProcessMapData, RayMapData

    def per_dp(dp):
        return func(dp)

    if kind == "ours-ray":
        mapped = RayMapData(
            DataFromList(source, shuffle=False), per_dp, 2, strict=True, batch_size=ray_batch
        )
    else:
        mapped = MultiProcessMapData(DataFromList(source, shuffle=False), 2, per_dp, strict=True)
    ds = BatchData(mapped, 64, remainder=True)
    try:
        return time_passes(lambda: ds, len(source), passes)
    finally:
        ds.close()


def run_raydata(source: list, func: Any, passes: int) -> float:
    import ray.data

    rows = [{"dp": dp} for dp in source]

    def on_batch(batch: dict) -> dict:
        outs = [func(dp) for dp in batch["dp"]]
        return {"x": np.stack([o[0] for o in outs]), "label": np.array([o[1] for o in outs])}

    # Built once, iterated once a pass (each iteration executes the pipeline again, as an epoch
    # loop over a Ray Dataset does); the build is not timed.
    ds = ray.data.from_items(rows).map_batches(on_batch, batch_size=64, concurrency=2)

    def one_pass():
        for batch in ds.iter_batches(batch_size=64, batch_format="numpy"):
            yield [batch["x"], batch["label"]]

    return time_passes(one_pass, len(source), passes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument("--only", default="W4,W5")
    parser.add_argument("--libs", default="ours-ray,raydata,ours-mp")
    args = parser.parse_args()
    import ray

    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False)
    ray.cloudpickle.register_pickle_by_value(w4_imagenet)
    ray.cloudpickle.register_pickle_by_value(w5_gil)
    print(f"W10, Ray {ray.__version__}, {os.cpu_count()} CPUs, {args.passes} timed passes")
    for name in args.only.split(","):
        spec = WORKLOADS[name]
        source = spec["source"]()
        rates: dict[str, float] = {}
        for lib in args.libs.split(","):
            try:
                if lib == "raydata":
                    rates[lib] = run_raydata(source, spec["map"], args.passes)
                else:
                    rates[lib] = run_ours(lib, source, spec["map"], spec["ray_batch"], args.passes)
            except ImportError as e:
                print(f"{name} {lib:9s} not run: {e}")
                continue
            print(f"{name} {lib:9s} {rates[lib]:10,.0f} items/s")
        if "ours-ray" in rates and "raydata" in rates:
            print(f"{name} ours-ray / raydata = {rates['ours-ray'] / rates['raydata']:.2f}x")
        if "ours-ray" in rates and "ours-mp" in rates:
            print(f"{name} ours-ray / ours-mp = {rates['ours-ray'] / rates['ours-mp']:.2f}x")
    ray.shutdown()


if __name__ == "__main__":
    main()

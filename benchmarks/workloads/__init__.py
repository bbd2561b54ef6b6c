"""The workloads of the suite, one module each (see ../../shared BENCHMARKS.md and README.md here).

A workload module exposes:

- ``NAME``, ``TITLE``: its short name (``"W1"``) and one line saying what it measures.
- ``METRIC``: how its throughput is shown: ``"ns/dp"``, ``"us/dp"`` (time per datapoint) or
  ``"dp/s"``, ``"img/s"``, ``"GB/s"`` (rate).
- ``TIMING``: ``"in_call"`` (throughput from the time spent inside ``next()`` only; right for
  in-process pipelines, whose work all happens in the call) or ``"wall"`` (from the wall-clock span
  of the yields; right when producers run concurrently with the consumer).
- ``make_source()``: the shared input data, built before any library code is timed.
- ``IMPORTS``: library -> a function importing what its pipeline needs (timed as import time).
- ``BUILDERS``: library -> {config name: builder(source) -> :class:`Built`}. Every library gets the
  identical user function; ``"default"`` is the library's documented simplest use and the other
  entries form its small declared tuning grid. ``"ceiling"`` is the machine's ceiling for the
  workload, calibrated in the same run.
- ``expected_pass()``: ``(count, checksum)`` of one complete pass, and ``batch_stats(batch)``:
  ``(count, checksum)`` of one yielded batch; checksums add up over a pass.

Optional: ``WARMUP`` (default True; False when start-up is what is measured: the case's window
then starts at the first batch, not ``min(TTFB, window)`` after it), and the fields ``case.py``
documents (``RATE_SCALE``, ``CONSUMER_SLEEP_S``, ``MAX_PASSES``, ``SMOKE_N``).

A registered target may also be ``"module:attribute"``: a namespace in the module with these
fields (one module can so define several workloads, as W6 does). ``run.py --workloads W6`` runs
every workload whose name starts with ``W6-``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

WORKLOADS: dict[str, str] = {
    "W1": "workloads.w1_tiny",
    "W2-ONE": "workloads.w2_procs:ONE",
    "W2-BATCHED": "workloads.w2_procs:BATCHED",
    "W3-150KB": "workloads.w3_arrays:KB150",
    "W3-4.8MB": "workloads.w3_arrays:MB4_8",
    "W3-38.5MB": "workloads.w3_arrays:MB38_5",
    "W5": "workloads.w5_gil",
    "W4": "workloads.w4_imagenet",
    "W4-TORCH": "workloads.w4_torch",  # W4 through dataflow.to_torch and a DataLoader
    # W6 is four workloads of one module ("module:attribute" names a namespace in it)
    "W6-READ-JPEG": "workloads.w6_lmdb:READ_JPEG",
    "W6-READ-TINY": "workloads.w6_lmdb:READ_TINY",
    "W6-WRITE-JPEG": "workloads.w6_lmdb:WRITE_JPEG",
    "W6-WRITE-TINY": "workloads.w6_lmdb:WRITE_TINY",
    # W7 and W8 are several workloads of one module each
    "W7-FORK": "workloads.w7_startup:FORK",
    "W7-FORKSERVER": "workloads.w7_startup:FORKSERVER",
    "W7-SPAWN": "workloads.w7_startup:SPAWN",
    "W8-ARRAYS": "workloads.w8_backpressure:ARRAYS",
    "W8-IMAGES": "workloads.w8_backpressure:IMAGES",
}
# Loadable by name, never run by default: the harness's own check (faults on purpose).
HIDDEN: dict[str, str] = {
    "SELFTEST": "workloads.selftest",
}


def load(name: str) -> ModuleType:
    """Import a workload module by its short name (``"W1"``); ``"W6"`` alone means all of W6."""
    target = {**WORKLOADS, **HIDDEN}.get(name.upper())
    if target is None:
        raise SystemExit(f"unknown workload {name!r}; known: {', '.join(WORKLOADS)}")
    module, _, attribute = target.partition(":")
    loaded = importlib.import_module(module)
    # A namespace with a workload module's fields stands in for a module.
    return getattr(loaded, attribute) if attribute else loaded


def expand(names: list[str]) -> list[str]:
    """Workload names with a group prefix (``"W6"``) replaced by the workloads in it."""
    out: list[str] = []
    for name in names:
        upper = name.upper()
        group = [w for w in WORKLOADS if w.startswith(upper + "-")]
        out.extend(group if upper not in WORKLOADS and group else [upper])
    return out

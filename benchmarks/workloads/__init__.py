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
"""

from __future__ import annotations

import importlib
from types import ModuleType

WORKLOADS: dict[str, str] = {
    "W1": "workloads.w1_tiny",
}
# Loadable by name, never run by default: the harness's own check (faults on purpose).
HIDDEN: dict[str, str] = {
    "SELFTEST": "workloads.selftest",
}


def load(name: str) -> ModuleType:
    """Import a workload module by its short name (``"W1"``)."""
    module = {**WORKLOADS, **HIDDEN}.get(name.upper())
    if module is None:
        raise SystemExit(f"unknown workload {name!r}; known: {', '.join(WORKLOADS)}")
    return importlib.import_module(module)

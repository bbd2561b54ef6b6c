"""``dataflow bench``: time a pipeline of the user's (a factory loaded by ``_shared``) under
TestDataSpeed, time every stage of it alone, and report the peak memory of the process tree."""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from itertools import islice
from typing import Any

from ..errors import DataFlowError
from ._shared import _build, _human_bytes, _load_factory, _one_line, _report_error, _user_traceback

# -- bench: the stages of a pipeline --------------------------------------------------------------


@dataclass
class _Stage:
    path: tuple[str, ...]  # attribute names from the root flow down to this one
    depth: int
    label: str
    upstream: list[int]  # indices (in the stage list) of the flows it reads
    batch: int  # source datapoints per datapoint it yields (the product of batch sizes)
    out_rate: float | None = None  # datapoints it yields per second, timed alone
    timed: int = 0
    note: str = ""


def _upstreams(flow: Any) -> list[tuple[str, Any]]:
    from ..base import upstream_flows

    try:
        return upstream_flows(flow)
    except TypeError:  # a duck-typed flow without __dict__
        return []


def _stage_label(flow: Any) -> str:
    parts = []
    for attr in ("batch_size", "num_proc", "num_thread", "buffer_size"):
        value = getattr(flow, attr, None)
        if isinstance(value, int) and not isinstance(value, bool):
            parts.append(f"{attr}={value}")
    for attr in ("map_func", "_func", "func"):  # _func: MapDataComponent's own function
        func = flow.__dict__.get(attr) if hasattr(flow, "__dict__") else None
        if callable(func):
            name = getattr(func, "__qualname__", None) or type(func).__name__
            parts.append(f"{attr}={name}")
            break
    return f"{type(flow).__name__}({', '.join(parts)})" if parts else type(flow).__name__


def _walk(root: Any) -> list[_Stage]:
    """Every flow of the pipeline, depth first from the root (what each one reads follows it)."""
    stages: list[_Stage] = []
    seen: dict[int, int] = {}

    def visit(flow: Any, path: tuple[str, ...], depth: int) -> int:
        index = len(stages)
        seen[id(flow)] = index
        stage = _Stage(path, depth, _stage_label(flow), [], 1)
        stages.append(stage)
        for name, child in _upstreams(flow):
            if id(child) in seen:  # the same flow read twice: time it once
                stage.upstream.append(seen[id(child)])
            else:
                stage.upstream.append(visit(child, (*path, name), depth + 1))
        below = stages[stage.upstream[0]].batch if stage.upstream else 1
        size = getattr(flow, "batch_size", None)
        is_batch = isinstance(size, int) and not isinstance(size, bool) and size > 0
        stage.batch = below * (size if is_batch else 1)  # type: ignore[operator]
        return index

    visit(root, (), 0)
    return stages


def _locate(root: Any, path: tuple[str, ...]) -> Any | None:
    flow = root
    for name in path:
        flow = dict(_upstreams(flow)).get(name)
        if flow is None:
            return None
    return flow


def _time_flow(flow: Any, size: int, warmup: int) -> tuple[int, float]:
    """(datapoints timed, seconds): ``warmup`` untimed, then up to ``size`` timed."""
    flow.reset_state()
    it = iter(flow)
    try:
        for _ in islice(it, warmup):
            pass
        start = time.perf_counter()
        count = 0
        for _ in islice(it, size):
            count += 1
        elapsed = time.perf_counter() - start
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            close()
    return count, elapsed


# -- bench: memory --------------------------------------------------------------------------------


class _MemoryWatch:
    """Samples the summed PSS of this process and its descendants (Linux ``/proc``) in a thread.

    PSS (proportional set size) splits each shared page between the processes that map it, so the
    sum over forked workers does not count the parent's pages once per worker as RSS would.
    """

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self.peak_bytes = 0
        self.peak_processes = 0
        self.available = os.path.exists(f"/proc/{os.getpid()}/smaps_rollup")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def _children(pid: int) -> list[int]:
        if not os.path.exists(f"/proc/{pid}/task/{pid}/children"):
            return _MemoryWatch._children_by_scan(pid)
        found: list[int] = []
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            return found
        for tid in tasks:
            try:
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    found.extend(int(c) for c in f.read().split())
            except OSError:
                continue
        return found

    @staticmethod
    def _children_by_scan(pid: int) -> list[int]:
        """Children found by reading every process's parent (kernels without .../children)."""
        found = []
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    stat = f.read()
            except OSError:
                continue
            fields = stat[stat.rindex(b")") + 2 :].split()  # after "pid (command) "
            if len(fields) > 1 and int(fields[1]) == pid:
                found.append(int(name))
        return found

    @staticmethod
    def _pss(pid: int) -> int:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        return int(line.split()[1]) * 1024
        except (OSError, ValueError):
            pass
        return 0

    def sample(self) -> None:
        pids, stack = [], [os.getpid()]
        while stack:
            pid = stack.pop()
            pids.append(pid)
            stack.extend(self._children(pid))
        total = sum(self._pss(pid) for pid in pids)
        if total > self.peak_bytes:
            self.peak_bytes = total
            self.peak_processes = len(pids)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> _MemoryWatch:
        if self.available:
            self.sample()
            self._thread = threading.Thread(target=self._run, name="dataflow-bench-memory")
            self._thread.daemon = True
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self.sample()


def _max_rss_bytes(who: int) -> int:
    value = resource.getrusage(who).ru_maxrss
    return value if sys.platform == "darwin" else value * 1024  # bytes on macOS, KB elsewhere


# -- bench ----------------------------------------------------------------------------------------


def run_bench(args: argparse.Namespace) -> int:
    from .. import _stats
    from ..common import TestDataSpeed

    factory, target = _load_factory(args.target)  # (a failure is reported by main)
    flow = _build(factory, target)
    stages = _walk(flow)
    try:
        length: int | None = len(flow)
    except (NotImplementedError, TypeError):
        length = None
    print(
        f"dataflow bench: {target} -> {stages[0].label}, {len(stages)} stage(s), "
        f"len {length if length is not None else 'unknown'}"
    )

    watch = _MemoryWatch()
    neck = None
    was_on = _stats.enabled()
    _stats.enable(was_on or not args.no_stats)  # the bar shows the bottleneck (dataflow._stats)
    try:
        with watch, flow:
            rate = TestDataSpeed(flow, size=args.size, warmup=args.warmup).start()
            watch.sample()  # once more while the workers are up, however short the run was
            if _stats.enabled():
                neck = flow.stats().bottleneck_reason
    except Exception as e:
        _user_traceback(e)
        return _report_error("bench", f"the pipeline raised {type(e).__name__}: {e}")
    finally:
        _stats.enable(was_on)
    timed = args.size
    if length is not None:
        timed = max(0, min(args.size, length - args.warmup))
    if rate == 0 or timed == 0:
        return _report_error(
            "bench",
            f"the pipeline yielded no datapoints to time (len {length}, --warmup {args.warmup})",
        )
    unit = f" (batches of {stages[0].batch})" if stages[0].batch > 1 else ""
    print(
        f"\npipeline: {rate:,.1f} datapoints/s{unit}, over {timed} datapoints after "
        f"{args.warmup} untimed"
    )
    if stages[0].batch > 1:
        print(f"          {rate * stages[0].batch:,.1f} source datapoints/s")
    if neck is not None:
        print(f"bottleneck: {neck} (dataflow profile shows every stage)")

    if not args.no_stages and len(stages) > 1:
        _bench_stages(factory, target, stages, args)

    print("\npeak memory:")
    if watch.available:
        print(
            f"  {_human_bytes(watch.peak_bytes)} PSS of the process tree while the pipeline ran "
            f"({watch.peak_processes} process(es); sampled every {watch.interval:g} s)"
        )
    children = _max_rss_bytes(resource.RUSAGE_CHILDREN)
    print(
        f"  max RSS (getrusage): this process {_human_bytes(_max_rss_bytes(resource.RUSAGE_SELF))}"
        + (f", largest finished child {_human_bytes(children)}" if children else "")
    )
    return 0


def _bench_stages(
    factory: Callable[[], Any], target: str, stages: list[_Stage], args: argparse.Namespace
) -> None:
    """Time every stage alone (with what it reads) on a fresh pipeline from the factory."""
    for stage in stages:
        try:
            fresh = _build(factory, target)
        except DataFlowError as e:
            stage.note = f"not timed: {_one_line(e)}"
            continue
        try:
            node = _locate(fresh, stage.path)
            if node is None:
                stage.note = "not timed: the factory built a different pipeline this time"
                continue
            stage.timed, seconds = _time_flow(node, args.size, args.warmup)
            stage.out_rate = stage.timed / seconds if seconds > 0 else float("inf")
        except Exception as e:
            stage.note = f"failed: {type(e).__name__}: {_one_line(e)}"
        finally:
            with contextlib.suppress(Exception):
                fresh.close()

    def dp_rate(s: _Stage) -> float | None:
        return None if not s.out_rate else s.out_rate * s.batch

    names = ["  " * s.depth + s.label for s in stages]
    width = min(max(len(n) for n in names), 60)
    print(
        "\nper-stage throughput: each stage timed alone, with everything it reads, on a fresh "
        f"pipeline ({args.size} outputs after {args.warmup} untimed):"
    )
    print(f"  {'stage':<{width}} {'yields/s':>12} {'datapoints/s':>14} {'us/datapoint added':>19}")
    costs = [1e6 / rate if (rate := dp_rate(stage)) else None for stage in stages]
    slowest, slowest_cost = None, 0.0
    for i, (stage, name) in enumerate(zip(stages, names)):
        if stage.out_rate is None:
            print(f"  {name:<{width}} {stage.note}")
            continue
        added = ""
        cost = costs[i]
        if len(stage.upstream) == 1 and cost is not None and costs[stage.upstream[0]] is not None:
            delta = cost - costs[stage.upstream[0]]  # type: ignore[operator]
            added = f"{delta:.2f}"
            if delta > slowest_cost:
                slowest, slowest_cost = name.strip(), delta
        elif not stage.upstream and cost is not None:
            added = f"{cost:.2f}"
            if cost > slowest_cost:
                slowest, slowest_cost = name.strip(), cost
        short = " (ended early)" if stage.timed < args.size else ""
        print(
            f"  {name:<{width}} {stage.out_rate:>12,.1f} {dp_rate(stage):>14,.1f} {added:>19}{short}"
        )
    if slowest is not None:
        print(f"\nthe most expensive stage is: {slowest} (+{slowest_cost:.2f} us per datapoint)")
    print(
        "(datapoints/s counts source datapoints: a batch of B counts B. A negative cost means the "
        "stage is faster than what it reads alone, as a parallel stage can be.)"
    )

"""One benchmark case, run by ``run.py`` in a fresh process: ``python case.py '<json spec>'``.

The spec names the workload, library and config, the window in seconds, the cutoff and the most
passes. The case builds the workload's source, imports the library (timed), builds the pipeline
(timed), then iterates passes, timing every ``next()`` and checking each pass's count and checksum,
until the window has elapsed at a pass boundary (or, mid-pass, at the cutoff: ``cutoff_s`` seconds
after the first batch, at least three windows; that pass is reported incomplete, its checksum
unchecked).

Warm-up: the window starts ``min(TTFB, window)`` seconds after the first batch, not at it. A
library whose workers started slowly (grain's spawned workers: 5-16 s) kept producing into its
buffers meanwhile, and a window that began at once would measure the buffer draining, not the
pipeline. A library that starts in milliseconds warms up for milliseconds. Workloads that measure
start-up itself set ``WARMUP = False`` (W7).

Workload fields it honours besides the contract of ``workloads/__init__.py``: ``RATE_SCALE``
(library -> factor its measured throughput is multiplied by: W4's ceiling runs on one core and
counts for two), ``CONSUMER_SLEEP_S`` (seconds the consumer sleeps after each batch, outside the
timed ``next()``: W8's slow consumer), ``MAX_PASSES`` (stop after that many passes: W7) and
``SMOKE_N`` with ``expected_prefix(n)`` (in ``--smoke``, passes over the first ``SMOKE_N`` items
of the source only: W4's passes take seconds).

Teardown (``teardown_s``) is timed from the window's end until the pipeline is closed, dropped,
and every other process of the case's session is gone (multiprocessing's resource tracker and
forkserver, which live as long as the case's interpreter, excepted; they are counted in
``teardown_helpers``); processes still there after ``TEARDOWN_WAIT_S`` are named in
``teardown_left``.

It talks to ``run.py`` over its original stdout, one JSON object a line (anything the libraries
print goes to stderr instead), and waits for a line on stdin after ``window_start`` and
``window_end`` so that ``run.py`` can sample the process tree's CPU time at exactly those points.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
import traceback
from array import array
from typing import Any

perf_ns = time.perf_counter_ns
TEARDOWN_WAIT_S = 10.0
# Processes that multiprocessing keeps for the interpreter's lifetime, not the pipeline's.
LIFETIME_HELPERS = ("multiprocessing.resource_tracker", "multiprocessing.forkserver")


class Channel:
    def __init__(self) -> None:
        self.out = os.fdopen(os.dup(1), "w", buffering=1)
        os.dup2(2, 1)  # stray prints from libraries go to stderr

    def event(self, kind: str, **fields: Any) -> None:
        self.out.write(json.dumps({"event": kind, **fields}) + "\n")
        self.out.flush()

    def handshake(self, kind: str, **fields: Any) -> None:
        self.event(kind, **fields)
        sys.stdin.readline()


def middle(values: array, fraction: float = 0.8) -> slice:
    """The slice of the middle ``fraction`` of a sequence."""
    n = len(values)
    cut = int(n * (1 - fraction) / 2)
    return slice(cut, n - cut)


def wait_children_gone(timeout: float) -> tuple[list[str], int]:
    """Wait until this session holds no process but this one and multiprocessing's lifetime
    helpers; return the command lines of those still there after ``timeout`` s, and the number
    of helpers."""
    import proctree

    me, sid = os.getpid(), os.getsid(0)
    deadline = time.monotonic() + timeout
    while True:
        others = [(st.pid, proctree.cmdline(st.pid)) for st in proctree.session_members(sid)]
        others = [(pid, cmd) for pid, cmd in others if pid != me]
        workers = [f"{pid} {cmd}"[:200] for pid, cmd in others if not _helper(cmd)]
        if not workers or time.monotonic() >= deadline:
            return workers, len(others) - len(workers)
        time.sleep(0.005)


def _helper(cmd: str) -> bool:
    return any(name in cmd for name in LIFETIME_HELPERS)


def run_case(spec: dict, chan: Channel) -> dict:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import workloads

    wl = workloads.load(spec["workload"])
    lib, config = spec["lib"], spec["config"]
    window_ns = int(spec["window_s"] * 1e9)
    max_passes = spec.get("max_passes") or getattr(wl, "MAX_PASSES", None) or 1 << 30
    rate_scale = float(getattr(wl, "RATE_SCALE", {}).get(lib, 1.0))
    sleep_s = float(getattr(wl, "CONSUMER_SLEEP_S", 0.0))
    # A pass under way when the window ends is finished (so that it can be checked) unless that
    # takes past this cutoff (from the first batch).
    cutoff_ns = max(3 * window_ns, int(float(spec.get("cutoff_s", 60.0)) * 1e9))
    warmup = bool(getattr(wl, "WARMUP", True))

    source = wl.make_source()
    exp_count, exp_checksum = wl.expected_pass()
    smoke_n = getattr(wl, "SMOKE_N", None) if spec.get("smoke") else None
    if smoke_n is not None and smoke_n < len(source):
        source = source[:smoke_n]
        exp_count, exp_checksum = wl.expected_prefix(smoke_n)

    t0 = perf_ns()
    wl.IMPORTS[lib]()
    t_imported = perf_ns()
    built = wl.BUILDERS[lib][config](source)
    t_built = perf_ns()
    iid = built.iid

    durations = array("q")  # ns inside next() (plus the pass's iter() and final next())
    cpu_durations = array("q")  # process CPU ns inside next() (in-process workloads only)
    # For in-process workloads the CPU time inside next() is also taken: unlike wall time, it does
    # not grow when other programs on the machine take the core away.
    cpu_ns = time.process_time_ns if wl.TIMING == "in_call" else (lambda: 0)
    ends = array("q")  # perf_counter_ns when each yield returned
    sizes = array("l")  # datapoints in each yield
    passes: list[dict] = []
    ttfb_ns = None
    first_batch = None  # perf_counter_ns when the first batch came
    warmup_end = None  # the window starts at the first yield that returns after this
    window_start = None
    stats = wl.batch_stats
    timed_out = False

    while len(passes) < max_passes:
        count = 0
        checksum: list = []
        c, t = cpu_ns(), perf_ns()
        it = built.epoch()
        # iter() cost, charged to the pass's first yield
        carry, carry_cpu = perf_ns() - t, cpu_ns() - c
        while True:
            c, t = cpu_ns(), perf_ns()
            try:
                batch = next(it)
            except StopIteration:
                if durations and window_start is not None:
                    # the end-of-pass call belongs to the last yield
                    durations[-1] += perf_ns() - t
                    cpu_durations[-1] += cpu_ns() - c
                break
            t_end = perf_ns()
            c_end = cpu_ns()
            n, cs = stats(batch)
            if ttfb_ns is None:
                ttfb_ns = t_end - t_imported
                first_batch = t_end
                warmup_end = t_end + (min(ttfb_ns, window_ns) if warmup else 0)
            if window_start is None:
                # The first batch is reported as TTFB, the warm-up after it in no figure.
                if t_end >= warmup_end:
                    chan.handshake("window_start")
                    window_start = perf_ns()
            else:
                durations.append(t_end - t + carry)
                cpu_durations.append(c_end - c + carry_cpu)
                ends.append(t_end)
                sizes.append(n)
            carry = carry_cpu = 0
            count += n
            checksum = [a + b for a, b in zip(checksum, cs)] if checksum else list(cs)
            del batch
            if sleep_s:  # a slow consumer (W8): outside the timed next()
                time.sleep(sleep_s)
            if perf_ns() - first_batch > cutoff_ns:
                timed_out = True
                break
        if timed_out:
            passes.append({"count": count, "checksum": checksum, "complete": False})
            break
        passes.append(
            {
                "count": count,
                "checksum": checksum,
                "complete": True,
                "ok": count == exp_count and tuple(checksum) == tuple(exp_checksum),
            }
        )
        if window_start is not None and perf_ns() - window_start >= window_ns:
            break

    if window_start is None:
        raise RuntimeError("the pipeline yielded nothing")
    window_end = perf_ns()
    chan.handshake("window_end", datapoints=int(sum(sizes)))
    # Teardown: drop the last pass's iterator, close the pipeline, drop it, until its processes
    # are gone.
    t_teardown = perf_ns()
    it = None
    if built.close is not None:
        built.close()
    t_closed = perf_ns()
    built = None
    gc.collect()
    teardown_left, helpers = wait_children_gone(TEARDOWN_WAIT_S)
    t_gone = perf_ns()

    if not durations:
        raise RuntimeError("the window held no batch after the first; lengthen it (--window)")
    mid = middle(durations)
    mid_dp = int(sum(sizes[mid]))
    mid_cpu_ns = int(sum(cpu_durations[mid]))
    if wl.TIMING == "in_call":
        mid_ns = int(sum(durations[mid]))
    else:  # wall span of the middle yields: from the end of the yield before to the last end
        lo, hi = mid.start, mid.stop
        mid_ns = ends[hi - 1] - (ends[lo - 1] if lo > 0 else window_start)
    sorted_d = sorted(durations)
    complete = [p for p in passes if p["complete"]]
    return {
        "workload": wl.NAME,
        "lib": lib,
        "config": config,
        "iid": iid,
        "throughput_dp_s": rate_scale * mid_dp / (mid_ns / 1e9) if mid_ns else None,
        "ns_per_dp": mid_ns / mid_dp / rate_scale if mid_dp else None,
        "throughput_cpu_dp_s": rate_scale * mid_dp / (mid_cpu_ns / 1e9) if mid_cpu_ns else None,
        "cpu_ns_per_dp_in_call": mid_cpu_ns / mid_dp if mid_cpu_ns and mid_dp else None,
        "rate_scale": rate_scale,
        "consumer_sleep_s": sleep_s,
        "yields": len(durations),
        "mid_yields": len(durations[mid]),
        "mid_datapoints": mid_dp,
        "window_s": (window_end - window_start) / 1e9,
        "window_datapoints": int(sum(sizes)),
        "yield_ns_p50": sorted_d[len(sorted_d) // 2] if sorted_d else None,
        "yield_ns_p99": sorted_d[int(len(sorted_d) * 0.99)] if sorted_d else None,
        "import_s": (t_imported - t0) / 1e9,
        "build_s": (t_built - t_imported) / 1e9,
        "ttfb_s": ttfb_ns / 1e9,
        "warmup_s": (window_start - first_batch) / 1e9,
        "teardown_s": (t_gone - t_teardown) / 1e9,
        "teardown_close_s": (t_closed - t_teardown) / 1e9,
        "teardown_left": teardown_left,
        "teardown_helpers": helpers,
        "passes": len(passes),
        "complete_passes": len(complete),
        "expected_pass": {"count": exp_count, "checksum": list(exp_checksum)},
        "pass_counts": sorted({p["count"] for p in passes}),
        "checksums_ok": bool(complete) and all(p["ok"] for p in complete),
        "bad_passes": [p for p in complete if not p["ok"]][:3],
    }


def main() -> int:
    chan = Channel()
    spec = json.loads(sys.argv[1])
    try:
        result = run_case(spec, chan)
    except BaseException as e:  # report anything, then fail the case
        chan.event("error", error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc())
        return 1
    chan.event("result", **result)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Run the benchmark suite: ours against the peers, side by side, in one run.

    python benchmarks/run.py [--quick] [--smoke] [--workloads W1,...] [--libs ours,tensorpack,...]
                             [--rounds N] [--window S] [--seed N] [--out DIR] [--no-setup]
                             [--malloc default,pinned]

Each (library, workload, config, round) runs in a fresh process (``case.py``) in its own session.
After it exits, the session must empty by itself within a few seconds (else: leftover processes,
reported, then killed with the whole process group) and no /dev/shm file it used may remain (else:
leftover segments, reported, then removed). Peers run in seeded random order each round, with the
workload's ceiling calibrated among them; ratios ours/peer are paired within a round.

Modes: default (full) 8 s windows, 5 rounds for the headline workloads (``HEADLINE``) and 2 for
the others, so that every workload fits in about 90 minutes here (``--dry-run`` prints the plan
and its estimate; every run prints it first); ``--quick`` 1 round, 3 s windows, the non-headline
workloads with each library's "default" config only (about 15 minutes); ``--smoke`` our library
only, 1 round, ~1 s windows, run with this interpreter (no peers' venv needed): it exits 1 on a
crash, a leftover or a wrong count/checksum, never on speed. Other modes run every library, ours
included, with the peers' venv interpreter (created by ``setup_peers.py`` on first use), so that
all share one interpreter and one numpy.

Allocator: ``--malloc default,pinned`` runs every case also with glibc's malloc thresholds pinned
through the environment (``PINNED_MALLOC``; the allocator's dynamic mmap threshold otherwise
swings per-image costs by 30-45%). Each record says which (``malloc``); the report groups the
cases of each setting. Without ``--malloc``, the full run pins as a second configuration the
workloads in ``PIN_BY_DEFAULT`` (the image workloads), the other modes run the default only.

Writes ``<out>/<timestamp>-<mode>.json`` (every case record and the summaries) and ``.md``, and
prints the Markdown report. ``--out`` defaults to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import charts  # noqa: E402
import proctree  # noqa: E402
import report  # noqa: E402
import setup_peers  # noqa: E402
import workloads  # noqa: E402

CASE = HERE / "case.py"
ALL_LIBS = ["ours", "tensorpack", "torch", "grain", "spdl"]
# Benchmarks run without the OpenBLAS pins this machine sets for old builds: they slow a current
# numpy, and every library gets the same environment.
UNSET_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
# The second allocator configuration: glibc's thresholds fixed, so that its dynamic mmap threshold
# (raised each time a large mmapped block is freed) cannot move between images. 16 MiB keeps every
# image buffer and 64-image batch (9.6 MB) on the heap, the 38.5 MB arrays of W3 in mmap.
PINNED_MALLOC = {
    "MALLOC_MMAP_THRESHOLD_": str(16 << 20),
    "MALLOC_TRIM_THRESHOLD_": str(128 << 20),
    "MALLOC_TOP_PAD_": str(16 << 20),
    "MALLOC_ARENA_MAX": "2",
}
MALLOC_VARIANTS = ("default", "pinned")
# Workloads the full run also runs pinned (in SECONDARY_ROUNDS rounds) when --malloc is not given.
PIN_BY_DEFAULT = ("W4",)
# The full run gives the headline workloads 5 rounds and the others SECONDARY_ROUNDS, so that it
# fits in about 90 minutes on this machine (see plan()).
HEADLINE = ("W1", "W2-ONE", "W3-4.8MB", "W4", "W5")
SECONDARY_ROUNDS = 2
# Expected seconds of one case beyond its window (start, source, import, TTFB, the pass that
# ends the window, teardown, settle), by workload; measured on this machine. Used for the
# estimate printed at the start.
CASE_EXTRA_S = {"W1": 5.5, "W6-WRITE-JPEG": 18.0, "W6-READ-JPEG": 12.0, "W6-READ-TINY": 12.0}
CASE_EXTRA_DEFAULT_S = 5.0
SETTLE_S = 3.0  # how long a finished case's session may take to empty by itself
# A pass still under way this many seconds after the first batch (at least three windows) is cut
# off and reported incomplete: a library that slow (grain at 0.02 GB/s in W3, a 50 s pass) would
# otherwise hold the whole run up. Smoke mode has to see every pass through.
CUTOFF_S = {"smoke": 120.0, "quick": 20.0, "full": 40.0}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def machine_info() -> dict:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "mem_gib": mem / 2**30,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "loadavg_start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def run_case(python: str, spec: dict, timeout: float, stderr_path: Path) -> dict:
    """Run one case in a fresh session; return its record (result, CPU, memory, leftovers)."""
    env = {k: v for k, v in os.environ.items() if k not in UNSET_ENV and k not in PINNED_MALLOC}
    if spec.get("malloc") == "pinned":
        env.update(PINNED_MALLOC)
    env["PYTHONUNBUFFERED"] = "1"
    t_start = time.monotonic()
    shm_before = proctree.shm_entries()
    record: dict = {**spec, "status": "ok", "loadavg": os.getloadavg()[0]}
    with open(stderr_path, "w") as err:
        proc = subprocess.Popen(
            [python, str(CASE), json.dumps(spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            cwd=str(REPO),
            env=env,
            text=True,
            start_new_session=True,
        )
    sid = proc.pid
    sampler = proctree.TreeSampler(sid).start()
    timed_out = threading.Event()

    def kill_group() -> None:
        try:
            os.killpg(sid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def on_timeout() -> None:
        timed_out.set()
        kill_group()

    watchdog = threading.Timer(timeout, on_timeout)
    watchdog.start()
    marks: dict[str, proctree.Totals] = {}
    # PSS and /dev/shm peaks before the window and inside it ("steady" peaks, W8)
    peaks_before = (0, 0)
    window_peaks: tuple[int, int] | None = None
    result: dict | None = None
    error: dict | None = None
    try:
        assert proc.stdout is not None and proc.stdin is not None
        for line in proc.stdout:
            try:
                ev = json.loads(line)
            except json.JSONDecodeError:
                continue
            kind = ev.pop("event", None)
            if kind in ("window_start", "window_end"):
                marks[kind] = sampler.sample()
                with sampler._lock:
                    if kind == "window_start":
                        peaks_before = (sampler.peak_pss, sampler.peak_shm)
                        sampler.peak_pss = sampler.peak_shm = 0
                    else:
                        window_peaks = (sampler.peak_pss, sampler.peak_shm)
                try:
                    proc.stdin.write("\n")
                    proc.stdin.flush()
                except BrokenPipeError:
                    pass
            elif kind == "result":
                result = ev
            elif kind == "error":
                error = ev
        rc = proc.wait()
    finally:
        watchdog.cancel()
        sampler.stop()

    # Leftovers: the session must empty by itself once the case's main process has exited.
    remaining = proctree.wait_session_empty(sid, SETTLE_S)
    record["leftover_procs"] = [f"{p.pid} {proctree.cmdline(p.pid)}"[:200] for p in remaining]
    kill_group()
    for p in remaining:  # also those that left the process group but kept the session
        try:
            os.kill(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    still = proctree.wait_session_empty(sid, 5.0)
    if still:
        record["unkillable_procs"] = [p.pid for p in still]
    shm_now = proctree.shm_entries()
    # Leftover segments: files the tree mapped or held open, or new ones named after one of its pids.
    new_shm = shm_now - shm_before
    leftover_shm = sorted(
        (sampler.shm_seen & shm_now) | {p for p in new_shm if sampler.named_after_member(p)}
    )
    record["leftover_shm"] = leftover_shm
    for path in leftover_shm:  # ours to clean: this case's tree mapped or held them
        try:
            os.unlink(path)
        except OSError:
            pass
    record["unattributed_new_shm"] = sorted(new_shm - set(leftover_shm))

    record["returncode"] = rc
    record["case_s"] = time.monotonic() - t_start
    record["peak_pss_bytes"] = max(sampler.peak_pss, peaks_before[0])
    record["peak_shm_bytes"] = max(sampler.peak_shm, peaks_before[1])
    if window_peaks is not None:
        record["window_peak_pss_bytes"], record["window_peak_shm_bytes"] = window_peaks
    record["peak_procs"] = sampler.peak_procs
    if "window_start" in marks and "window_end" in marks:
        a, b = marks["window_start"], marks["window_end"]
        record["cpu_window_s"] = b.cpu_s - a.cpu_s
        record["faults_window"] = (b.minflt + b.majflt) - (a.minflt + a.majflt)
        record["minflt_window"] = b.minflt - a.minflt
        record["majflt_window"] = b.majflt - a.majflt
    if result is not None:
        record.update(result)
    if timed_out.is_set() and result is None:
        record["status"] = "timeout"
        record["error"] = f"killed after {timeout:.0f} s"
    elif error is not None:
        record["status"] = "error"
        record["error"] = error.get("error")
        record["traceback"] = error.get("traceback")
    elif result is None or rc != 0:
        tail = stderr_path.read_text(errors="replace").strip().splitlines()[-5:]
        record["status"] = "crash"
        record["error"] = f"exit code {rc}: " + " | ".join(tail)
    return record


def describe(rec: dict, wl) -> str:
    if rec["status"] != "ok":
        return f"{rec['status'].upper()}: {rec.get('error')}"
    value = report.metric_values(wl, [rec["throughput_dp_s"]])[0]
    text = f"{value:.4g} {wl.METRIC}"
    if rec.get("throughput_cpu_dp_s"):
        in_call = report.metric_values(wl, [rec["throughput_cpu_dp_s"]])[0]
        text += f" (in-call CPU {in_call:.4g})"
    cpu = rec.get("cpu_window_s")
    if cpu is not None and rec.get("window_datapoints"):
        label, scale = report.cpu_unit(wl.METRIC)
        text += f", tree {label} {cpu / rec['window_datapoints'] * scale:.4g}"
    extra = ""
    if rec.get("window_peak_pss_bytes"):
        extra += f" (window {rec['window_peak_pss_bytes'] / 2**20:.0f} MiB)"
    extra += f", teardown {rec['teardown_s'] * 1e3:.0f} ms"
    if rec.get("teardown_left"):
        extra += f" ({len(rec['teardown_left'])} processes still there)"
    return (
        f"{text}, TTFB {rec['ttfb_s'] * 1e3:.1f} ms, "
        f"peak PSS {rec['peak_pss_bytes'] / 2**20:.0f} MiB{extra}, load {rec['loadavg']:.2f}"
    )


def _checksum_word(rec: dict) -> str:
    if rec.get("checksums_ok"):
        return "ok"
    return "unchecked(no complete pass)" if not rec.get("complete_passes") else "WRONG"


def check_line(rec: dict) -> str:
    """The correctness guard's line for a case (the smoke test looks for it)."""
    exp = rec.get("expected_pass", {})
    left = rec.get("leftover_procs", []) + rec.get("leftover_shm", [])
    return (
        f"CHECK {rec['workload']} {rec['lib']}/{rec['config']}: status={rec['status']} "
        f"passes={rec.get('complete_passes', 0)} count={rec.get('pass_counts', [])} "
        f"expected={exp.get('count')} checksum={_checksum_word(rec)}"
        f"{' (i.i.d. mode)' if rec.get('iid') else ''} leftovers={len(left) or 'none'}"
    )


def case_failed(rec: dict) -> bool:
    exact_ok = rec.get("checksums_ok") or rec.get("iid")
    return (
        rec["status"] != "ok"
        or not exact_ok
        or bool(rec.get("leftover_procs") or rec.get("leftover_shm"))
    )


def past_case_seconds(out: Path) -> dict[tuple[str, str, str], float]:
    """Median seconds a case took beyond its window, per (workload, lib, config), in the latest
    five earlier runs in ``out`` (of any mode but smoke, whose passes are shorter)."""
    import statistics

    runs = sorted(p for p in out.glob("*.json") if not p.name.endswith("-smoke.json"))
    found: dict[tuple[str, str, str], list[float]] = {}
    for path in reversed(runs[-5:]):
        try:
            cases = json.loads(path.read_text())["cases"]
        except (OSError, ValueError, KeyError):
            continue
        for c in cases:
            if c.get("case_s") and c.get("status") == "ok" and c.get("window_s"):
                extra = c["case_s"] - c["window_s"]
                found.setdefault((c["workload"], c["lib"], c["config"]), []).append(extra)
    return {k: statistics.median(v) for k, v in found.items()}


def case_seconds(wl, lib: str, config: str, window: float, past: dict) -> float:
    """Expected seconds of one case: the window plus what the case took beyond its window in
    earlier runs, else the workload's guess, else a per-workload overhead measured on an idle
    machine."""
    if (wl.NAME, lib, config) in past:
        return window + past[(wl.NAME, lib, config)]
    own = getattr(wl, "expected_case_s", None)
    if own is not None:
        return float(own(lib, config, window))
    return window + CASE_EXTRA_S.get(wl.NAME, CASE_EXTRA_DEFAULT_S)


def plan(
    wl, libs: list[str], mode: str, rounds: int | None, malloc: list[str] | None, all_configs: bool
) -> list[list[tuple[str, str, str]]]:
    """The cases of each round, ``(lib, config, malloc)``, before shuffling.

    Full mode: 5 rounds for the headline workloads (``HEADLINE``), ``SECONDARY_ROUNDS`` for the
    others; the pinned-malloc variant of ``PIN_BY_DEFAULT`` in ``SECONDARY_ROUNDS`` rounds.
    Quick mode: 1 round; the secondary workloads run each library's "default" config only.
    ``--rounds``, ``--malloc`` and ``--all-configs`` override these trims.
    """
    headline = wl.NAME in HEADLINE
    if rounds is None:
        rounds = 1 if mode in ("smoke", "quick") else 5 if headline else SECONDARY_ROUNDS
    lean = mode == "quick" and not headline and not all_configs
    cases = [
        (lib, cfg)
        for lib in libs
        if lib in wl.BUILDERS
        for cfg in wl.BUILDERS[lib]
        if not lean or cfg == "default" or lib == report.CEILING
    ]
    out = []
    for rnd in range(rounds):
        if malloc is not None:
            variants = malloc
        elif mode == "full" and wl.NAME in PIN_BY_DEFAULT and rnd < SECONDARY_ROUNDS:
            variants = ["default", "pinned"]
        else:
            variants = ["default"]
        out.append([(lib, cfg, m) for m in variants for lib, cfg in cases])
    return out


def estimate(wls: list, plans: dict, window: float, past: dict) -> float:
    total = 0.0
    for wl in wls:
        rounds = plans[wl.NAME]
        seconds = sum(case_seconds(wl, lib, cfg, window, past) for r in rounds for lib, cfg, _ in r)
        n = sum(len(r) for r in rounds)
        pinned = sum(1 for r in rounds for c in r if c[2] != "default")
        log(
            f"  {wl.NAME}: {n} cases in {len(rounds)} rounds"
            f"{f' ({pinned} with malloc pinned)' if pinned else ''} -> ~{seconds / 60:.1f} min"
        )
        total += seconds
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="1 round, 3 s windows")
    parser.add_argument(
        "--smoke", action="store_true", help="ours only, briefly; fail on crash/leak/checksum"
    )
    parser.add_argument("--workloads", default=",".join(workloads.WORKLOADS), help="e.g. W1,W3")
    parser.add_argument(
        "--libs", default=None, help="comma-separated; default: every installed one"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="default: 5 for the headline workloads and 2 for the others (1 with --quick/--smoke)",
    )
    parser.add_argument("--window", type=float, default=None, help="seconds per case window")
    parser.add_argument("--seed", type=int, default=0, help="seeds the per-round order")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="where results go")
    parser.add_argument("--no-setup", action="store_true", help="do not create the peers' venv")
    parser.add_argument(
        "--malloc",
        default=None,
        help="allocator configurations, of default,pinned (default: the full run also pins "
        f"{', '.join(PIN_BY_DEFAULT)}; other modes: default only)",
    )
    parser.add_argument(
        "--all-configs",
        action="store_true",
        help="--quick: run every declared config of every workload (default: the headline "
        "workloads' grids, the others' default configs)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan and its estimated duration, run nothing",
    )
    args = parser.parse_args(argv)

    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    window = args.window or {"smoke": 1.0, "quick": 3.0, "full": 8.0}[mode]
    wl_names = workloads.expand([w.strip() for w in args.workloads.split(",") if w.strip()])
    wls = [workloads.load(w) for w in wl_names]
    requested = [x.strip() for x in args.libs.split(",")] if args.libs else list(ALL_LIBS)
    unknown = set(requested) - set(ALL_LIBS) - {report.CEILING}
    if unknown:
        parser.error(f"unknown libraries {sorted(unknown)}; known: {', '.join(ALL_LIBS)}")
    malloc = None
    if args.malloc is not None:
        malloc = [m.strip() for m in args.malloc.split(",") if m.strip()]
        if not malloc or set(malloc) - set(MALLOC_VARIANTS):
            parser.error(f"--malloc takes {','.join(MALLOC_VARIANTS)} (one or both)")

    skipped: dict[str, str] = {}
    versions: dict[str, str] = {}
    if mode == "smoke":
        python = sys.executable
        libs = ["ours"]
        if requested != ["ours"] and args.libs:
            log("--smoke runs our library only")
        versions["ours"] = (
            subprocess.run(
                [python, "-c", "import dataflow; print(dataflow.__version__)"],
                capture_output=True,
                text=True,
            ).stdout.strip()
            or "not importable"
        )
    else:
        manifest = setup_peers.load_manifest()
        if manifest is None:
            if args.no_setup:
                parser.error("no peers' venv: run benchmarks/setup_peers.py (or drop --no-setup)")
            log("creating the peers' venv (once): benchmarks/setup_peers.py")
            manifest = setup_peers.setup()
        python = manifest["python"]
        libs = []
        for lib in requested:
            if lib == report.CEILING:  # always run (appended below), nothing to install
                continue
            info = manifest["peers"].get(lib)
            if info is None or not info["ok"]:
                skipped[lib] = (
                    "not installed" if info is None else f"install failed: {info['error'][-200:]}"
                )
            else:
                libs.append(lib)
                versions[lib] = info["version"]
        libs.append(report.CEILING)

    plans = {wl.NAME: plan(wl, libs, mode, args.rounds, malloc, args.all_configs) for wl in wls}
    started = time.strftime("%Y%m%d-%H%M%S")
    args.out.mkdir(parents=True, exist_ok=True)
    logs = args.out / f"{started}-{mode}-logs"
    logs.mkdir(exist_ok=True)
    run_info = {
        "started": started,
        "mode": mode,
        "command": "python "
        + " ".join(shlex.quote(a) for a in [str(Path(sys.argv[0])), *sys.argv[1:]]),
        "python_for_cases": python,
        "rounds": max((len(p) for p in plans.values()), default=0),
        "rounds_by_workload": {w: len(p) for w, p in plans.items()},
        "window_s": window,
        "seed": args.seed,
        "machine": machine_info(),
        "versions": versions,
        "skipped": skipped,
        "unset_env": list(UNSET_ENV),
        "malloc": {w: sorted({c[2] for r in p for c in r}) for w, p in plans.items()},
        "pinned_malloc_env": PINNED_MALLOC,
    }
    estimate_s = estimate(wls, plans, window, past_case_seconds(args.out))
    run_info["estimated_s"] = estimate_s
    log(
        f"{mode} run: {len(wls)} workloads, about {estimate_s / 60:.0f} min on an idle machine"
        " (cases x expected seconds; see --rounds, --window, --malloc)"
    )
    if args.dry_run:
        logs.rmdir()
        return 0

    records: list[dict] = []
    for wl in wls:
        for lib in libs:
            if lib not in wl.BUILDERS:
                skipped[f"{lib} in {wl.NAME}"] = getattr(wl, "NOT_APPLICABLE", {}).get(
                    lib, "no pipeline written for this workload"
                )
        rounds = len(plans[wl.NAME])
        for rnd, planned in enumerate(plans[wl.NAME]):
            # every library's every config under every allocator variant, in a seeded order
            order = list(planned)
            variants = {m for _, _, m in order}
            random.Random(args.seed * 1_000_003 + rnd).shuffle(order)
            for lib, cfg, m in order:
                spec = {
                    "workload": wl.NAME,
                    "lib": lib,
                    "config": cfg,
                    "window_s": window,
                    "round": rnd,
                    "malloc": m,
                    "smoke": mode == "smoke",
                    "cutoff_s": CUTOFF_S[mode],
                }
                timeout = 5 * window + 180
                suffix = "" if m == "default" else f"-malloc-{m}"
                errf = logs / f"{wl.NAME}-{lib}-{cfg}{suffix}-r{rnd}.stderr"
                rec = run_case(python, spec, timeout, errf)
                records.append(rec)
                tag = "" if len(variants) == 1 else f" malloc={m}"
                log(f"[{wl.NAME} round {rnd + 1}/{rounds}{tag}] {lib}/{cfg}: {describe(rec, wl)}")
                if case_failed(rec) or mode == "smoke":
                    print(check_line(rec), flush=True)
    run_info["loadavg_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())

    # one summary per workload; report.py groups the cases by allocator setting within it
    summaries = [report.summarize(wl, records) for wl in wls]
    md = report.markdown(run_info, summaries)
    base = args.out / f"{started}-{mode}"
    Path(f"{base}.json").write_text(
        json.dumps(
            {"run": run_info, "summaries": summaries, "cases": records}, indent=1, default=str
        )
        + "\n"
    )
    if mode != "smoke":  # charts beside the report (or a line saying why they were skipped)
        md += charts.charts_markdown(f"{base}.json", args.out, prefix=f"{base.name}-")
    Path(f"{base}.md").write_text(md)
    print(md)
    print(f"written: {base}.json, {base}.md", flush=True)

    failed = [r for r in records if case_failed(r) and (mode == "smoke" or r["lib"] == "ours")]
    for r in failed:
        log(
            f"FAILED: {check_line(r)}"
            + (f"\n{r.get('traceback', '')}" if r.get("traceback") else "")
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

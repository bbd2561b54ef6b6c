"""Run the benchmark suite: ours against the peers, side by side, in one run.

    python benchmarks/run.py [--quick] [--smoke] [--workloads W1,...] [--libs ours,tensorpack,...]
                             [--rounds N] [--window S] [--seed N] [--out DIR] [--no-setup]

Each (library, workload, config, round) runs in a fresh process (``case.py``) in its own session.
After it exits, the session must empty by itself within a few seconds (else: leftover processes,
reported, then killed with the whole process group) and no /dev/shm file it used may remain (else:
leftover segments, reported, then removed). Peers run in seeded random order each round, with the
workload's ceiling calibrated among them; ratios ours/peer are paired within a round.

Modes: default 5 rounds, 8 s windows; ``--quick`` 1 round, 3 s windows; ``--smoke`` our library
only, 1 round, ~1 s windows, run with this interpreter (no peers' venv needed): it exits 1 on a
crash, a leftover or a wrong count/checksum, never on speed. Other modes run every library, ours
included, with the peers' venv interpreter (created by ``setup_peers.py`` on first use), so that
all share one interpreter and one numpy.

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

import proctree  # noqa: E402
import report  # noqa: E402
import setup_peers  # noqa: E402
import workloads  # noqa: E402

CASE = HERE / "case.py"
ALL_LIBS = ["ours", "tensorpack", "torch", "grain", "spdl"]
# Benchmarks run without the OpenBLAS pins this machine sets for old builds: they slow a current
# numpy, and every library gets the same environment.
UNSET_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
SETTLE_S = 3.0  # how long a finished case's session may take to empty by itself


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
    env = {k: v for k, v in os.environ.items() if k not in UNSET_ENV}
    env["PYTHONUNBUFFERED"] = "1"
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
    record["peak_pss_bytes"] = sampler.peak_pss
    record["peak_shm_bytes"] = sampler.peak_shm
    record["peak_procs"] = sampler.peak_procs
    if "window_start" in marks and "window_end" in marks:
        a, b = marks["window_start"], marks["window_end"]
        record["cpu_window_s"] = b.cpu_s - a.cpu_s
        record["faults_window"] = (b.minflt + b.majflt) - (a.minflt + a.majflt)
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
    return (
        f"{text}, TTFB {rec['ttfb_s'] * 1e3:.1f} ms, "
        f"peak PSS {rec['peak_pss_bytes'] / 2**20:.0f} MiB, load {rec['loadavg']:.2f}"
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
        "--rounds", type=int, default=None, help="default 5 (1 with --quick/--smoke)"
    )
    parser.add_argument("--window", type=float, default=None, help="seconds per case window")
    parser.add_argument("--seed", type=int, default=0, help="seeds the per-round order")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="where results go")
    parser.add_argument("--no-setup", action="store_true", help="do not create the peers' venv")
    args = parser.parse_args(argv)

    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    rounds = args.rounds or (1 if mode in ("smoke", "quick") else 5)
    window = args.window or {"smoke": 1.0, "quick": 3.0, "full": 8.0}[mode]
    wl_names = workloads.expand([w.strip() for w in args.workloads.split(",") if w.strip()])
    wls = [workloads.load(w) for w in wl_names]
    requested = [x.strip() for x in args.libs.split(",")] if args.libs else list(ALL_LIBS)
    unknown = set(requested) - set(ALL_LIBS) - {report.CEILING}
    if unknown:
        parser.error(f"unknown libraries {sorted(unknown)}; known: {', '.join(ALL_LIBS)}")

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
            info = manifest["peers"].get(lib)
            if info is None or not info["ok"]:
                skipped[lib] = (
                    "not installed" if info is None else f"install failed: {info['error'][-200:]}"
                )
            else:
                libs.append(lib)
                versions[lib] = info["version"]
        libs.append(report.CEILING)

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
        "rounds": rounds,
        "window_s": window,
        "seed": args.seed,
        "machine": machine_info(),
        "versions": versions,
        "skipped": skipped,
        "unset_env": list(UNSET_ENV),
    }

    records: list[dict] = []
    for wl in wls:
        cases = [(lib, cfg) for lib in libs if lib in wl.BUILDERS for cfg in wl.BUILDERS[lib]]
        for lib in libs:
            if lib not in wl.BUILDERS:
                skipped[f"{lib} in {wl.NAME}"] = "no pipeline written for this workload"
        for rnd in range(rounds):
            order = list(cases)
            random.Random(args.seed * 1_000_003 + rnd).shuffle(order)
            for lib, cfg in order:
                spec = {
                    "workload": wl.NAME,
                    "lib": lib,
                    "config": cfg,
                    "window_s": window,
                    "round": rnd,
                }
                timeout = 5 * window + 180
                errf = logs / f"{wl.NAME}-{lib}-{cfg}-r{rnd}.stderr"
                rec = run_case(python, spec, timeout, errf)
                records.append(rec)
                log(f"[{wl.NAME} round {rnd + 1}/{rounds}] {lib}/{cfg}: {describe(rec, wl)}")
                if case_failed(rec) or mode == "smoke":
                    print(check_line(rec), flush=True)
    run_info["loadavg_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())

    summaries = [report.summarize(wl, records) for wl in wls]
    md = report.markdown(run_info, summaries)
    base = args.out / f"{started}-{mode}"
    Path(f"{base}.json").write_text(
        json.dumps(
            {"run": run_info, "summaries": summaries, "cases": records}, indent=1, default=str
        )
        + "\n"
    )
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

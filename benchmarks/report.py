"""Turn the case records of a run into a summary (JSON-able) and a Markdown report."""

from __future__ import annotations

import statistics
from types import ModuleType
from typing import Any

OURS = "ours"
CEILING = "ceiling"
TIME_UNITS = {"ns/dp": 1e9, "us/dp": 1e6, "ms/dp": 1e3}


def _spread(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def metric_values(wl: ModuleType, throughputs: list[float]) -> list[float]:
    """Throughputs (datapoints/s) in the workload's display metric."""
    if wl.METRIC in TIME_UNITS:
        return [TIME_UNITS[wl.METRIC] / t for t in throughputs]
    scale = getattr(wl, "UNITS_PER_DP", 1.0)  # e.g. bytes per datapoint for GB/s
    div = 1e9 if wl.METRIC == "GB/s" else 1.0
    return [t * scale / div for t in throughputs]


def _ok(rec: dict) -> bool:
    return rec["status"] == "ok" and rec.get("throughput_dp_s") is not None


def summarize(wl: ModuleType, records: list[dict]) -> dict[str, Any]:
    """Per (library, config): medians and spreads; per library: its best config; paired ratios."""
    recs = [r for r in records if r["workload"] == wl.NAME]
    by_case: dict[tuple[str, str], list[dict]] = {}
    for r in recs:
        by_case.setdefault((r["lib"], r["config"]), []).append(r)

    cases: dict[str, dict[str, Any]] = {}
    for (lib, config), rs in sorted(by_case.items()):
        good = [r for r in rs if _ok(r)]
        thr = [r["throughput_dp_s"] for r in good]
        window_dp = [r for r in good if r.get("window_datapoints")]
        cases[f"{lib}/{config}"] = {
            "lib": lib,
            "config": config,
            "runs": len(rs),
            "failed": [
                f"round {r['round']}: {r['status']}: {r.get('error', '')}" for r in rs if not _ok(r)
            ],
            "iid": any(r.get("iid") for r in rs),
            "throughput_dp_s": _spread(thr),
            "metric": _spread(metric_values(wl, thr)),
            "metric_cpu": _spread(
                metric_values(
                    wl, [r["throughput_cpu_dp_s"] for r in good if r.get("throughput_cpu_dp_s")]
                )
            ),
            "cpu_s_per_dp": _spread(
                [
                    r["cpu_window_s"] / r["window_datapoints"]
                    for r in window_dp
                    if r.get("cpu_window_s") is not None
                ]
            ),
            "faults_per_dp": _spread(
                [
                    r["faults_window"] / r["window_datapoints"]
                    for r in window_dp
                    if r.get("faults_window") is not None
                ]
            ),
            "peak_pss_bytes": _spread([r["peak_pss_bytes"] for r in good]),
            "peak_shm_bytes": _spread([r["peak_shm_bytes"] for r in good]),
            "ttfb_s": _spread([r["ttfb_s"] for r in good]),
            "import_s": _spread([r["import_s"] for r in good]),
            "checksums_ok": bool(good) and all(r["checksums_ok"] for r in good),
            "unchecked": bool(good) and any(not r.get("complete_passes") for r in good),
            "pass_counts": sorted({c for r in good for c in r["pass_counts"]}),
            "leftovers": sorted(
                {x for r in rs for x in r.get("leftover_procs", []) + r.get("leftover_shm", [])}
            ),
        }

    # The tuned config of a library is the best of its declared grid (highest median throughput).
    best: dict[str, str] = {}
    for key, c in cases.items():
        if c["throughput_dp_s"] is None:
            continue
        cur = best.get(c["lib"])
        if cur is None or c["throughput_dp_s"]["median"] > cases[cur]["throughput_dp_s"]["median"]:
            best[c["lib"]] = key

    def per_round(key: str, field: str) -> dict[int, float]:
        lib, config = key.split("/", 1)
        return {r["round"]: r[field] for r in by_case[(lib, config)] if _ok(r) and r.get(field)}

    def paired(a: dict[int, float], b: dict[int, float]) -> list[float]:
        return [a[i] / b[i] for i in sorted(a.keys() & b.keys())]

    # Ratios and fractions on two bases: wall-clock throughput, and (in-process workloads) the
    # throughput from the CPU time spent inside next(), which other load on the machine disturbs less.
    bases = {"wall": "throughput_dp_s", "cpu": "throughput_cpu_dp_s"}
    ratios: dict[str, Any] = {}
    of_ceiling: dict[str, Any] = {}
    for basis, field in bases.items():
        if not any(r.get(field) for r in recs):
            continue
        ratios[basis] = {}
        for mode in ("tuned", "default"):
            ratios[basis][mode] = {}
            ours_k = best.get(OURS) if mode == "tuned" else f"{OURS}/default"
            if ours_k is None or ours_k not in cases:
                continue
            for lib in sorted({c["lib"] for c in cases.values()} - {OURS, CEILING}):
                peer_k = best.get(lib) if mode == "tuned" else f"{lib}/default"
                if peer_k is None or peer_k not in cases:
                    continue
                values = paired(per_round(ours_k, field), per_round(peer_k, field))
                ratios[basis][mode][lib] = {
                    "ours": ours_k,
                    "peer": peer_k,
                    **(_spread(values) or {}),
                    "n": len(values),
                }
        if CEILING in best:
            ceil_r = per_round(best[CEILING], field)
            of_ceiling[basis] = {
                key: _spread(paired(per_round(key, field), ceil_r))
                for key, c in cases.items()
                if c["lib"] != CEILING
            }

    return {
        "workload": wl.NAME,
        "title": wl.TITLE,
        "metric": wl.METRIC,
        "cases": cases,
        "best_config": best,
        "ratio_ours_over_peer": ratios,
        "fraction_of_ceiling": of_ceiling,
    }


# -- Markdown -----------------------------------------------------------------------------------
def _fmt(x: float | None, digits: int = 3) -> str:
    if x is None:
        return "-"
    if x == 0:
        return "0"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def _fmt_spread(s: dict | None, scale: float = 1.0, digits: int = 3) -> str:
    if not s:
        return "-"
    med = _fmt(s["median"] * scale, digits)
    lo, hi = _fmt(s["min"] * scale, digits), _fmt(s["max"] * scale, digits)
    return med if lo == hi else f"{med} ({lo}-{hi})"


def cpu_unit(metric: str) -> tuple[str, float]:
    if metric in TIME_UNITS:
        return f"CPU {metric}", TIME_UNITS[metric]
    return "CPU ms/dp", 1e3


def markdown_workload(summary: dict) -> str:
    metric = summary["metric"]
    cpu_label, cpu_scale = cpu_unit(metric)
    better = "lower is better" if metric in TIME_UNITS else "higher is better"
    ratios = summary["ratio_ours_over_peer"]
    fractions = summary["fraction_of_ceiling"]
    has_cpu = "cpu" in ratios
    best = summary["best_config"]
    lines = [
        f"### {summary['workload']}: {summary['title']}",
        "",
        f"Metric: {metric} ({better}), wall-clock time inside next(); median over rounds, "
        "(min-max) where they differ. 'ours / peer': our throughput over the peer's, paired "
        "within each round (> 1: we are faster), tuned against tuned (tuned = the best config of "
        "a library's declared grid, in bold)."
        + (
            " 'in-call CPU': the same from the process's CPU time inside next(), which other "
            "load on the machine disturbs less than wall time."
            if has_cpu
            else ""
        ),
        "",
    ]
    cols = ["library", "config", metric, "ours / peer", "of ceiling"]
    if has_cpu:
        cols += [f"in-call CPU {metric}", "ours / peer (CPU)", "of ceiling (CPU)"]
    cols += [
        f"tree {cpu_label}",
        "peak PSS MiB",
        "/dev/shm MiB",
        "TTFB ms",
        "import s",
        "faults/dp",
        "correctness",
    ]
    lines.append("| " + " | ".join(cols) + " |")
    lines.append("|" + "---|" * len(cols))

    def ratio_cell(basis: str, key: str) -> str:
        lib = key.split("/")[0]
        tuned = ratios.get(basis, {}).get("tuned", {})
        if lib in (OURS, CEILING) or best.get(lib) != key or lib not in tuned:
            return "-"
        return _fmt_spread(tuned[lib])

    def ceiling_cell(basis: str, key: str) -> str:
        s = fractions.get(basis, {}).get(key)
        return _fmt_spread(s, 100, 3) + "%" if s else "-"

    order = sorted(
        summary["cases"], key=lambda k: ({OURS: 0, CEILING: 2}.get(k.split("/")[0], 1), k)
    )
    for key in order:
        c = summary["cases"][key]
        lib, config = key.split("/", 1)
        if c["checksums_ok"]:
            correct = "count+checksum ok"
        elif c["unchecked"] and not c["failed"]:
            correct = "no complete pass in the window (unchecked)"
        elif c["iid"]:
            correct = "i.i.d. mode (not exact)"
        else:
            correct = "**WRONG**" if c["throughput_dp_s"] else "**FAILED**"
        if c["leftovers"]:
            correct += f"; **leftovers: {len(c['leftovers'])}**"
        if c["failed"]:
            correct += f"; **{len(c['failed'])} failed run(s)**"
        cells = [
            lib,
            f"**{config}**" if best.get(lib) == key else config,
            _fmt_spread(c["metric"]),
            ratio_cell("wall", key),
            ceiling_cell("wall", key),
        ]
        if has_cpu:
            cells += [
                _fmt_spread(c["metric_cpu"]),
                ratio_cell("cpu", key),
                ceiling_cell("cpu", key),
            ]
        cells += [
            _fmt_spread(c["cpu_s_per_dp"], cpu_scale),
            _fmt_spread(c["peak_pss_bytes"], 1 / 2**20),
            _fmt_spread(c["peak_shm_bytes"], 1 / 2**20),
            _fmt_spread(c["ttfb_s"], 1e3),
            _fmt_spread(c["import_s"]),
            _fmt_spread(c["faults_per_dp"]),
            correct,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for basis, by_mode in ratios.items():
        for mode, rat in by_mode.items():
            parts = [
                f"{lib} {_fmt(r['median'])}x ({_fmt(r['min'])}-{_fmt(r['max'])}, n={r['n']})"
                for lib, r in rat.items()
                if r.get("n")
            ]
            if parts:
                label = "wall" if basis == "wall" else "in-call CPU"
                lines.append(f"- ours / peer, {mode} vs {mode}, {label}: " + "; ".join(parts))
    for key, c in summary["cases"].items():
        for f in c["failed"]:
            lines.append(f"- {key} {f}")
    return "\n".join(lines) + "\n"


def markdown(run: dict, summaries: list[dict]) -> str:
    m = run["machine"]
    head = [
        f"# Benchmark run {run['started']} ({run['mode']})",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['mem_gib']:.0f} GiB; {m['platform']}; "
        f"Python {m['python']}. Load average at start {m['loadavg_start']}, "
        f"at end {run.get('loadavg_end')}.",
        f"Command: `{run['command']}`",
        f"Rounds: {run['rounds']}, window {run['window_s']} s, order seed {run['seed']}. "
        f"Libraries: {', '.join(f'{k} {v}' for k, v in run['versions'].items())}.",
    ]
    if run.get("skipped"):
        head.append("Skipped: " + "; ".join(f"{k}: {v}" for k, v in run["skipped"].items()) + ".")
    return "\n".join(head) + "\n\n" + "\n".join(markdown_workload(s) for s in summaries)

"""Turn the case records of a run into a summary (JSON-able) and a Markdown report.

A case record is what ``run.py`` writes per (workload, library, config, round): the spec
(``workload``, ``lib``, ``config``, ``round`` and, where the run varies it, ``malloc``:
``"default"`` or ``"pinned"``), ``status``, and the measurements of ``case.py`` and of the process
tree sampler. Every measurement but ``throughput_dp_s`` is optional here: a field that no record of
a case carries shows as ``-``, and a column that is ``-`` in every row is left out.

Cases are keyed ``lib/config`` (``lib/config@pinned`` for a non-default allocator setting). Each
allocator setting is its own group: a library's tuned config is the best of its grid within the
group, ratios ours/peer pair cases of the same group, and a fraction of the ceiling uses the
group's own ceiling when it ran (else the default group's).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from types import ModuleType, SimpleNamespace
from typing import Any

OURS = "ours"
CEILING = "ceiling"
TIME_UNITS = {"ns/dp": 1e9, "us/dp": 1e6, "ms/dp": 1e3}
DEFAULT_MALLOC = "default"
MiB = 2**20


# -- case keys ----------------------------------------------------------------------------------
def case_key(lib: str, config: str, malloc: str | None = None) -> str:
    """``lib/config``, with ``@malloc`` appended for a non-default allocator setting."""
    key = f"{lib}/{config}"
    return key if malloc in (None, DEFAULT_MALLOC) else f"{key}@{malloc}"


def split_key(key: str) -> tuple[str, str, str]:
    """``(lib, config, malloc)`` of a case key."""
    lib, _, rest = key.partition("/")
    config, _, malloc = rest.partition("@")
    return lib, config, malloc or DEFAULT_MALLOC


def _malloc_of(rec: dict) -> str:
    return rec.get("malloc") or DEFAULT_MALLOC


def _mode_name(mode: str, malloc: str) -> str:
    """Ratio mode name: ``tuned``/``default`` for the default allocator, ``tuned@pinned``..."""
    return mode if malloc == DEFAULT_MALLOC else f"{mode}@{malloc}"


def _best_name(lib: str, malloc: str) -> str:
    """Key of ``best_config`` for a library in an allocator group."""
    return lib if malloc == DEFAULT_MALLOC else f"{lib}@{malloc}"


# -- numbers ------------------------------------------------------------------------------------
def _spread(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def metric_values(wl: Any, throughputs: list[float]) -> list[float]:
    """Throughputs (datapoints/s) in the workload's display metric."""
    if wl.METRIC in TIME_UNITS:
        return [TIME_UNITS[wl.METRIC] / t for t in throughputs]
    scale = getattr(wl, "UNITS_PER_DP", 1.0)  # e.g. bytes per datapoint for GB/s
    div = 1e9 if wl.METRIC == "GB/s" else 1.0
    return [t * scale / div for t in throughputs]


def _ok(rec: dict) -> bool:
    return rec.get("status") == "ok" and rec.get("throughput_dp_s") is not None


def _faults(rec: dict) -> float | None:
    value = rec.get("faults_window")
    return rec.get("faults") if value is None else value


def _per_window_dp(recs: list[dict], get: Callable[[dict], float | None]) -> list[float]:
    out = []
    for r in recs:
        value, dps = get(r), r.get("window_datapoints")
        if value is not None and dps:
            out.append(value / dps)
    return out


def _field(recs: list[dict], name: str) -> list[float]:
    return [r[name] for r in recs if r.get(name) is not None]


def summarize(wl: ModuleType | Any, records: list[dict]) -> dict[str, Any]:
    """Per case: medians and spreads; per library and allocator group: its best config; ratios.

    ``wl`` needs ``NAME``, ``TITLE``, ``METRIC`` and, where they apply, ``UNITS_PER_DP`` and
    ``TIMING`` (a workload module, or a namespace such as :func:`workload_info` makes).
    """
    recs = [r for r in records if r.get("workload") == wl.NAME]
    by_case: dict[str, list[dict]] = {}
    for r in recs:
        by_case.setdefault(case_key(r["lib"], r["config"], _malloc_of(r)), []).append(r)

    cases: dict[str, dict[str, Any]] = {}
    for key, rs in sorted(by_case.items()):
        lib, config, malloc = split_key(key)
        good = [r for r in rs if _ok(r)]
        thr = [r["throughput_dp_s"] for r in good]
        cases[key] = {
            "lib": lib,
            "config": config,
            "malloc": malloc,
            "runs": len(rs),
            "failed": [
                f"round {r.get('round', '?')}: {r.get('status')}: {r.get('error', '')}"
                for r in rs
                if not _ok(r)
            ],
            "iid": any(r.get("iid") for r in rs),
            "throughput_dp_s": _spread(thr),
            "metric": _spread(metric_values(wl, thr)),
            "metric_cpu": _spread(metric_values(wl, _field(good, "throughput_cpu_dp_s"))),
            "cpu_s_per_dp": _spread(_per_window_dp(good, lambda r: r.get("cpu_window_s"))),
            "faults_per_dp": _spread(_per_window_dp(good, _faults)),
            "peak_pss_bytes": _spread(_field(good, "peak_pss_bytes")),
            "peak_shm_bytes": _spread(_field(good, "peak_shm_bytes")),
            # peak PSS inside the window, after the first batch (W8's "steady peak")
            "steady_pss_bytes": _spread(
                _field(good, "window_peak_pss_bytes") or _field(good, "steady_pss_bytes")
            ),
            "ttfb_s": _spread(_field(good, "ttfb_s")),
            "import_s": _spread(_field(good, "import_s")),
            "teardown_s": _spread(_field(good, "teardown_s")),
            "checksums_ok": bool(good) and all(r.get("checksums_ok") for r in good),
            "unchecked": bool(good) and any(not r.get("complete_passes") for r in good),
            "pass_counts": sorted({c for r in good for c in r.get("pass_counts", [])}),
            "teardown_left": sorted({str(x) for r in rs for x in r.get("teardown_left") or []}),
            "leftovers": sorted(
                {
                    str(x)
                    for r in rs
                    for x in (r.get("leftover_procs") or []) + (r.get("leftover_shm") or [])
                }
            ),
        }

    mallocs = sorted({c["malloc"] for c in cases.values()}, key=lambda m: (m != DEFAULT_MALLOC, m))

    # The tuned config of a library is the best of its declared grid (highest median throughput),
    # chosen within each allocator group.
    best: dict[str, str] = {}
    for key, c in cases.items():
        if c["throughput_dp_s"] is None:
            continue
        name = _best_name(c["lib"], c["malloc"])
        cur = best.get(name)
        if cur is None or c["throughput_dp_s"]["median"] > cases[cur]["throughput_dp_s"]["median"]:
            best[name] = key

    def per_round(key: str, field: str) -> dict[Any, float]:
        return {r.get("round"): r[field] for r in by_case[key] if _ok(r) and r.get(field)}

    def paired(a: dict[Any, float], b: dict[Any, float]) -> list[float]:
        return [a[i] / b[i] for i in sorted(a.keys() & b.keys(), key=str)]

    # Ratios and fractions on two bases: wall-clock throughput, and (in-process workloads) the
    # throughput from the CPU time spent inside next(), which other load on the machine disturbs less.
    bases = {"wall": "throughput_dp_s", "cpu": "throughput_cpu_dp_s"}
    peers = sorted({c["lib"] for c in cases.values()} - {OURS, CEILING})
    ratios: dict[str, Any] = {}
    of_ceiling: dict[str, Any] = {}
    for basis, field in bases.items():
        if not any(r.get(field) for r in recs):
            continue
        ratios[basis] = {}
        of_ceiling[basis] = {}
        for malloc in mallocs:
            for mode in ("tuned", "default"):
                rat: dict[str, Any] = {}
                ratios[basis][_mode_name(mode, malloc)] = rat
                if mode == "tuned":
                    ours_k = best.get(_best_name(OURS, malloc))
                else:
                    ours_k = case_key(OURS, "default", malloc)
                if ours_k is None or ours_k not in cases:
                    continue
                for lib in peers:
                    if mode == "tuned":
                        peer_k = best.get(_best_name(lib, malloc))
                    else:
                        peer_k = case_key(lib, "default", malloc)
                    if peer_k is None or peer_k not in cases:
                        continue
                    values = paired(per_round(ours_k, field), per_round(peer_k, field))
                    rat[lib] = {
                        "ours": ours_k,
                        "peer": peer_k,
                        **(_spread(values) or {}),
                        "n": len(values),
                    }
            ceil_k = best.get(_best_name(CEILING, malloc)) or best.get(CEILING)
            if ceil_k is None:
                continue
            ceil_r = per_round(ceil_k, field)
            for key, c in cases.items():
                if c["lib"] != CEILING and c["malloc"] == malloc:
                    of_ceiling[basis][key] = _spread(paired(per_round(key, field), ceil_r))
        if not of_ceiling[basis]:
            del of_ceiling[basis]

    units = getattr(wl, "UNITS_PER_DP", None)
    return {
        "workload": wl.NAME,
        "title": wl.TITLE,
        "metric": wl.METRIC,
        "timing": getattr(wl, "TIMING", None),
        "units_per_dp": units,
        "mallocs": mallocs,
        "cases": cases,
        "best_config": best,
        "ratio_ours_over_peer": ratios,
        "fraction_of_ceiling": of_ceiling,
    }


def workload_info(summary: dict) -> SimpleNamespace:
    """What :func:`summarize` needs of a workload, recovered from a stored summary.

    Lets a saved run be summarized again (with this version of the report) without importing the
    workload modules, which need the libraries of the peers' venv.
    """
    metric = summary["metric"]
    units = summary.get("units_per_dp")
    if units is None and metric not in TIME_UNITS:
        # The metric is a fixed multiple of the throughput: take it from any case that has both.
        div = 1e9 if metric == "GB/s" else 1.0
        for c in summary.get("cases", {}).values():
            thr, met = c.get("throughput_dp_s"), c.get("metric")
            if thr and met and thr["median"]:
                units = met["median"] * div / thr["median"]
                break
    title = summary.get("title", "")
    if summary.get("malloc") not in (None, DEFAULT_MALLOC):
        title = title.replace(f" [malloc {summary['malloc']}]", "")
    timing = summary.get("timing")
    if timing is None:  # older runs: only in-process workloads were given the CPU basis
        timing = "in_call" if "cpu" in summary.get("ratio_ours_over_peer", {}) else "wall"
    return SimpleNamespace(
        NAME=summary["workload"],
        TITLE=title,
        METRIC=metric,
        UNITS_PER_DP=1.0 if units is None else units,
        TIMING=timing,
    )


def resummarize(run: dict) -> list[dict]:
    """The summaries of a saved run (``{"run", "summaries", "cases"}``), made again from its cases.

    A workload with no stored summary is described by its module when that imports, else it is
    shown with a ``dp/s`` metric.
    """
    # run.py may store one summary per allocator variant of a workload; one summary made again
    # from all the records shows them side by side, described by the default variant's summary.
    stored: dict[str, dict] = {}
    for s in run.get("summaries", []):
        if s["workload"] not in stored or s.get("malloc", DEFAULT_MALLOC) == DEFAULT_MALLOC:
            stored[s["workload"]] = s
    names = list(stored)
    for r in run.get("cases", []):
        if r.get("workload") not in stored and r.get("workload") not in names:
            names.append(r["workload"])
    out = []
    for name in names:
        if name in stored:
            wl: Any = workload_info(stored[name])
        else:
            try:
                import workloads

                wl = workloads.load(name)
            except (ImportError, SystemExit):
                wl = SimpleNamespace(NAME=name, TITLE="", METRIC="dp/s", TIMING="wall")
        out.append(summarize(wl, run.get("cases", [])))
    return out


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


def fmt_ratio(r: dict | None) -> str:
    """``1.37x (1.29-1.38)`` for a ratio entry, ``-`` without one."""
    if not r or r.get("median") is None:
        return "-"
    lo, hi = _fmt(r["min"]), _fmt(r["max"])
    med = _fmt(r["median"]) + "x"
    return med if lo == hi else f"{med} ({lo}-{hi})"


def fmt_fraction(s: dict | None) -> str:
    """``68.5 (67.5-69.9)%`` for a fraction of the ceiling, ``-`` without one."""
    return _fmt_spread(s, 100, 3) + "%" if s else "-"


def cpu_unit(metric: str) -> tuple[str, float]:
    if metric in TIME_UNITS:
        return f"CPU {metric}", TIME_UNITS[metric]
    return "CPU ms/dp", 1e3


def is_best(summary: dict, key: str) -> bool:
    """Whether a case is its library's tuned config (the best of its grid) in its group."""
    return key in summary.get("best_config", {}).values()


def ordered_cases(summary: dict) -> list[str]:
    """Case keys in report order: ours, the peers, the ceiling; default allocator first."""

    def rank(key: str) -> tuple:
        lib, config, malloc = split_key(key)
        return (malloc != DEFAULT_MALLOC, malloc, {OURS: 0, CEILING: 2}.get(lib, 1), lib, config)

    return sorted(summary.get("cases", {}), key=rank)


def tuned_ratio(summary: dict, key: str, basis: str = "wall") -> dict | None:
    """The tuned-vs-tuned ratio ours/peer in which ``key`` is the peer's side, if any."""
    for mode, rat in summary.get("ratio_ours_over_peer", {}).get(basis, {}).items():
        if not mode.startswith("tuned"):
            continue
        for entry in rat.values():
            if entry.get("peer") == key and entry.get("n"):
                return entry
    return None


def correctness(c: dict) -> str:
    if c.get("checksums_ok"):
        text = "count+checksum ok"
    elif c.get("unchecked") and not c.get("failed"):
        text = "no complete pass in the window (unchecked)"
    elif c.get("iid"):
        text = "i.i.d. mode (not exact)"
    else:
        text = "**WRONG**" if c.get("throughput_dp_s") else "**FAILED**"
    if c.get("teardown_left"):
        text += f"; **still running after teardown: {len(c['teardown_left'])}**"
    if c.get("leftovers"):
        text += f"; **leftovers: {len(c['leftovers'])}**"
    if c.get("failed"):
        text += f"; **{len(c['failed'])} failed run(s)**"
    return text


def _table(headers: list[str], rows: list[list[str]], keep: int) -> list[str]:
    """A Markdown table; columns after the first ``keep`` that are ``-`` in every row are dropped."""
    cols = [
        i for i in range(len(headers)) if i < keep or any(row[i] not in ("-", "") for row in rows)
    ]
    lines = ["| " + " | ".join(headers[i] for i in cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(row[i] for i in cols) + " |" for row in rows]
    return lines


def markdown_workload(summary: dict, heading: str = "###", chart: str | None = None) -> str:
    """One workload's section: the table of every case, the ratio lines, failures.

    ``chart``: a relative path of the workload's chart image, shown under the table.
    """
    metric = summary["metric"]
    cpu_label, cpu_scale = cpu_unit(metric)
    better = "lower is better" if metric in TIME_UNITS else "higher is better"
    ratios = summary.get("ratio_ours_over_peer", {})
    fractions = summary.get("fraction_of_ceiling", {})
    cases = summary.get("cases", {})
    has_cpu = "cpu" in ratios
    timing = summary.get("timing") or ("in_call" if has_cpu else "wall")
    show_malloc = any(c.get("malloc", DEFAULT_MALLOC) != DEFAULT_MALLOC for c in cases.values())
    measured = (
        "time spent inside next()"
        if timing == "in_call"
        else "wall-clock span of the yields (producers run concurrently)"
    )
    lines = [
        f"{heading} {summary['workload']}: {summary.get('title', '')}",
        "",
        f"Metric: {metric} ({better}), from the {measured}; median over rounds, (min-max) where "
        "they differ. 'ours / peer': our throughput over the peer's, paired within each round "
        "(> 1: we are faster), tuned against tuned (tuned = the best config of a library's "
        "declared grid, in bold). 'of ceiling': throughput over the machine's ceiling for this "
        "workload, measured in the same round."
        + (
            " 'in-call CPU': the same from the process's CPU time inside next(), which other "
            "load on the machine disturbs less than wall time."
            if has_cpu
            else ""
        )
        + (
            " 'steady PSS': the peak inside the window (after the warm-up that follows the first batch)."
            if any(c.get("steady_pss_bytes") for c in cases.values())
            else ""
        )
        + (
            " 'malloc pinned': glibc malloc thresholds pinned (the allocator's state swings "
            "per-datapoint costs); ratios pair cases of the same malloc setting."
            if show_malloc
            else ""
        ),
        "",
    ]
    headers = ["library", "config"]
    if show_malloc:
        headers.append("malloc")
    keep = len(headers) + 1
    headers += [metric, "ours / peer", "of ceiling"]
    if has_cpu:
        headers += [f"in-call CPU {metric}", "ours / peer (CPU)", "of ceiling (CPU)"]
    headers += [
        f"tree {cpu_label}",
        "peak PSS MiB",
        "steady PSS MiB",
        "/dev/shm MiB",
        "TTFB ms",
        "teardown ms",
        "import s",
        "faults/dp",
        "correctness",
    ]
    rows = []
    for key in ordered_cases(summary):
        c = cases[key]
        lib, config, malloc = split_key(key)
        config_cell = f"**{config}**" if is_best(summary, key) else config
        if c.get("iid"):
            config_cell += " (i.i.d.)"
        row = [lib, config_cell]
        if show_malloc:
            row.append(malloc)
        row += [
            _fmt_spread(c.get("metric")),
            fmt_ratio(tuned_ratio(summary, key, "wall")),
            fmt_fraction(fractions.get("wall", {}).get(key)),
        ]
        if has_cpu:
            row += [
                _fmt_spread(c.get("metric_cpu")),
                fmt_ratio(tuned_ratio(summary, key, "cpu")),
                fmt_fraction(fractions.get("cpu", {}).get(key)),
            ]
        row += [
            _fmt_spread(c.get("cpu_s_per_dp"), cpu_scale),
            _fmt_spread(c.get("peak_pss_bytes"), 1 / MiB),
            _fmt_spread(c.get("steady_pss_bytes"), 1 / MiB),
            _fmt_spread(c.get("peak_shm_bytes"), 1 / MiB),
            _fmt_spread(c.get("ttfb_s"), 1e3),
            _fmt_spread(c.get("teardown_s"), 1e3),
            _fmt_spread(c.get("import_s")),
            _fmt_spread(c.get("faults_per_dp")),
            correctness(c),
        ]
        rows.append(row)
    lines += _table(headers, rows, keep)
    lines.append("")
    if chart:
        lines += [f"![{summary['workload']}: throughput as a fraction of the ceiling]({chart})", ""]
    for basis, by_mode in ratios.items():
        for mode, rat in by_mode.items():
            parts = [f"{lib} {fmt_ratio(r)} (n={r['n']})" for lib, r in rat.items() if r.get("n")]
            if parts:
                label = "wall" if basis == "wall" else "in-call CPU"
                kind, _, malloc = mode.partition("@")
                where = f", malloc {malloc}" if malloc else ""
                lines.append(
                    f"- ours / peer, {kind} vs {kind}{where}, {label}: " + "; ".join(parts)
                )
    for key, c in cases.items():
        for f in c.get("failed", []):
            lines.append(f"- {key} {f}")
    return "\n".join(lines) + "\n"


def machine_line(run: dict) -> str:
    """``Machine: <cpu>, <n> cores, <mem> GiB; <platform>; Python <v>.`` plus the load averages."""
    m = run.get("machine", {})
    mem = m.get("mem_gib")
    line = (
        f"Machine: {m.get('cpu', '?')}, {m.get('cores', '?')} cores, "
        f"{f'{mem:.0f}' if isinstance(mem, (int, float)) else '?'} GiB; "
        f"{m.get('platform', '?')}; Python {m.get('python', '?')}."
    )
    if m.get("loadavg_start") or run.get("loadavg_end"):
        line += (
            f" Load average at start {m.get('loadavg_start', '?')}, "
            f"at end {run.get('loadavg_end', '?')}."
        )
    return line


def markdown(run: dict, summaries: list[dict], charts: dict[str, str] | None = None) -> str:
    """The report of a run. ``charts``: workload name -> relative path of its chart image."""
    charts = charts or {}
    head = [
        f"# Benchmark run {run.get('started', '?')} ({run.get('mode', '?')})",
        "",
        machine_line(run),
        f"Command: `{run.get('command', '?')}`",
        f"Rounds: {run.get('rounds', '?')}, window {run.get('window_s', '?')} s, order seed "
        f"{run.get('seed', '?')}. Libraries: "
        + ", ".join(f"{k} {v}" for k, v in run.get("versions", {}).items())
        + ".",
    ]
    if run.get("skipped"):
        head.append("Skipped: " + "; ".join(f"{k}: {v}" for k, v in run["skipped"].items()) + ".")
    return (
        "\n".join(head)
        + "\n\n"
        + "\n".join(markdown_workload(s, chart=charts.get(s["workload"])) for s in summaries)
    )


def headline_table(summaries: list[dict], basis: str = "wall") -> str:
    """One row per workload (and non-default malloc setting): ours over each peer, tuned vs tuned,
    and ours and the best peer as a fraction of the ceiling."""
    peers = sorted(
        {
            lib
            for s in summaries
            for rat in s.get("ratio_ours_over_peer", {}).get(basis, {}).values()
            for lib in rat
        }
    )
    headers = ["workload", "metric", "ours (tuned)", "ours of ceiling"]
    headers += [f"ours / {p}" for p in peers] + ["best peer of ceiling"]
    rows = []
    for s in summaries:
        fractions = s.get("fraction_of_ceiling", {}).get(basis, {})
        best = s.get("best_config", {})
        for malloc in s.get("mallocs") or [DEFAULT_MALLOC]:
            ours_k = best.get(_best_name(OURS, malloc))
            rat = s.get("ratio_ours_over_peer", {}).get(basis, {}).get(_mode_name("tuned", malloc))
            rat = rat or {}
            peer_fracs = [
                (fractions[k]["median"], k)
                for name, k in best.items()
                if k in fractions
                and fractions[k]
                and split_key(k)[0] not in (OURS, CEILING)
                and split_key(k)[2] == malloc
            ]
            best_peer = max(peer_fracs) if peer_fracs else None
            name = s["workload"] + ("" if malloc == DEFAULT_MALLOC else f" (malloc {malloc})")
            ours_cell = "-"
            metric = s["cases"][ours_k].get("metric") if ours_k else None
            if ours_k and metric:
                ours_cell = f"{_fmt(metric['median'])} ({split_key(ours_k)[1]})"
            rows.append(
                [
                    name,
                    s["metric"],
                    ours_cell,
                    fmt_fraction(fractions.get(ours_k)) if ours_k else "-",
                    *(fmt_ratio(rat.get(p)) for p in peers),
                    (
                        f"{fmt_fraction(fractions[best_peer[1]])} ({best_peer[1]})"
                        if best_peer
                        else "-"
                    ),
                ]
            )
    return "\n".join(_table(headers, rows, len(headers))) + "\n"

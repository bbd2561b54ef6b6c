"""Charts of a benchmark run: per workload, each case's throughput as a fraction of the ceiling.

    python benchmarks/charts.py results/<run>.json [--out DIR] [--prefix P]

One PNG per workload (``<out>/<prefix><workload>.png``; ``--out`` defaults to the JSON's folder):
a horizontal bar per library/config (and malloc setting), at the median over rounds of its
throughput over the ceiling's in the same round, with error bars from the min to the max; a line
at 1.0 marks the ceiling. The tuned config of each library (the best of its grid) is in bold; an
i.i.d.-mode case (not an exact pass) is hatched and labelled. A workload whose run has no ceiling
case gets no chart.

matplotlib is not a dependency of the project. It is imported only when charts are drawn; when this
interpreter lacks it, the charts are drawn by re-running this script with the peers' venv
(``<repo>/.bench-venv``, where ``setup_peers.py`` installs matplotlib), and when that is missing
too, :func:`write_charts` raises :class:`ChartsUnavailable` saying why.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import report  # noqa: E402

log = logging.getLogger(__name__)

PEERS_VENV = REPO / ".bench-venv"
COLORS = {
    "ours": "#1f77b4",
    "tensorpack": "#ff7f0e",
    "torch": "#d62728",
    "grain": "#2ca02c",
    "spdl": "#9467bd",
}
OTHER_COLOR = "#7f7f7f"


class ChartsUnavailable(RuntimeError):
    """No interpreter with matplotlib was found to draw the charts (the message says why)."""


def load_run(run: str | os.PathLike | dict) -> dict:
    """A run as ``run.py`` saves it: ``{"run", "summaries", "cases"}``, from a path or as given."""
    if isinstance(run, dict):
        return run
    return json.loads(Path(run).read_text())


def chart_filename(workload: str, prefix: str = "") -> str:
    """The file name of a workload's chart (characters other than ``[A-Za-z0-9._-]`` become _)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", f"{prefix}{workload}") + ".png"


def _bar_label(key: str, iid: bool) -> str:
    lib, config, malloc = report.split_key(key)
    label = f"{lib} / {config}"
    if malloc != report.DEFAULT_MALLOC:
        label += f", malloc {malloc}"
    if iid:
        label += "  (i.i.d.: not exact)"
    return label


def plot_workload(summary: dict, path: Path, basis: str = "wall") -> Path | None:
    """Draw one workload's chart into ``path``; None (nothing written) if it has no ceiling.

    Needs matplotlib in this interpreter.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fractions = summary.get("fraction_of_ceiling", {}).get(basis, {})
    cases = summary.get("cases", {})
    keys = [k for k in report.ordered_cases(summary) if report.split_key(k)[0] != report.CEILING]
    if not fractions or not keys:
        return None

    n = len(keys)
    fig_h = 1.9 + 0.42 * n
    fig, ax = plt.subplots(figsize=(10, fig_h), dpi=110)
    ys = list(range(n))[::-1]  # first case at the top
    top = max([1.0] + [fractions[k]["max"] for k in keys if fractions.get(k)])
    xmax = max(1.2, top * 1.22)
    for y, key in zip(ys, keys):
        c = cases[key]
        lib = report.split_key(key)[0]
        s = fractions.get(key)
        color = COLORS.get(lib, OTHER_COLOR)
        if not s:
            ax.text(0.01, y, "no result (failed)", va="center", ha="left", fontsize=9, color="red")
            continue
        med, lo, hi = s["median"], s["min"], s["max"]
        ax.barh(
            y,
            med,
            height=0.62,
            color=color,
            alpha=0.55 if c.get("iid") else 0.9,
            hatch="///" if c.get("iid") else None,
            edgecolor="black" if c.get("iid") else color,
            linewidth=0.6,
        )
        ax.errorbar(
            med,
            y,
            xerr=[[med - lo], [hi - med]],
            fmt="none",
            ecolor="black",
            elinewidth=1.1,
            capsize=4,
        )
        text = (
            f"{med * 100:.0f}%" if lo == hi else f"{med * 100:.0f}% ({lo * 100:.0f}-{hi * 100:.0f})"
        )
        text_x = hi + 0.012 * xmax
        if text_x < 1.0 < text_x + 0.14 * xmax:  # keep the label clear of the ceiling line
            text_x = 1.0 + 0.012 * xmax
        ax.text(text_x, y, text, va="center", ha="left", fontsize=9)

    ax.set_yticks(ys)
    ax.set_yticklabels([_bar_label(k, bool(cases[k].get("iid"))) for k in keys], fontsize=9)
    for tick, key in zip(ax.get_yticklabels(), keys):
        if report.is_best(summary, key):
            tick.set_fontweight("bold")
    ax.axvline(1.0, color="black", linestyle="--", linewidth=1.2)
    ax.text(1.0, n - 0.45, " ceiling = 1.0", va="bottom", ha="left", fontsize=9, fontstyle="italic")
    ax.set_xlim(0, xmax)
    ax.set_ylim(-0.7, n - 0.1)
    what = "wall-clock" if basis == "wall" else "in-call CPU"
    ax.set_xlabel(
        f"throughput / ceiling's throughput in the same round ({what}; higher is better)",
        fontsize=10,
    )
    best = summary.get("best_config", {})
    ceilings = []  # the ceiling of each malloc group that ran one
    for malloc in summary.get("mallocs") or [report.DEFAULT_MALLOC]:
        name = report.CEILING if malloc == report.DEFAULT_MALLOC else f"{report.CEILING}@{malloc}"
        metric = cases.get(best.get(name, ""), {}).get("metric")
        if metric:
            where = "" if malloc == report.DEFAULT_MALLOC else f"malloc {malloc}: "
            ceilings.append(f"{where}{report._fmt(metric['median'])} {summary['metric']}")
    title = f"{summary['workload']}: {summary.get('title', '')}"
    if len(title) > 100:
        title = title[:97] + "..."
    lines = [title, "throughput as a fraction of this machine's ceiling, measured in the same run"]
    if ceilings:
        lines[1] += f" (ceiling: {'; '.join(ceilings)})"
    lines.append(
        "bar: median over rounds; whiskers: min-max; bold: tuned config (best of its grid)"
    )
    ax.set_title("\n".join(lines), fontsize=10, loc="left")
    ax.grid(axis="x", linestyle=":", alpha=0.6)
    ax.set_axisbelow(True)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _draw_here(run: dict, out_dir: Path, prefix: str, basis: str) -> list[Path]:
    summaries = report.resummarize(run) if run.get("cases") else run.get("summaries", [])
    written = []
    for s in summaries:
        path = plot_workload(s, out_dir / chart_filename(s["workload"], prefix), basis)
        if path is None:
            log.info("%s: no ceiling case in this run, so no chart", s["workload"])
        else:
            written.append(path)
    return written


def _have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def peers_python() -> Path | None:
    """The peers' venv interpreter (``<repo>/.bench-venv``) if it exists and is not this one."""
    py = PEERS_VENV / "bin" / "python"
    if not py.exists() or Path(sys.prefix).resolve() == PEERS_VENV.resolve():
        return None
    return py


def write_charts(
    run: str | os.PathLike | dict, out_dir: str | os.PathLike, prefix: str = "", basis: str = "wall"
) -> list[Path]:
    """Draw every workload's chart of a run (a saved JSON's path, or its dict) into ``out_dir``.

    Returns the PNG files written, one per workload that has a ceiling case. Uses this interpreter
    when it has matplotlib, else the peers' venv's; raises :class:`ChartsUnavailable` when neither
    can (the message says why).
    """
    out = Path(out_dir)
    if _have_matplotlib():
        return _draw_here(load_run(run), out, prefix, basis)
    py = peers_python()
    if py is None:
        raise ChartsUnavailable(
            f"matplotlib is not installed for {sys.executable} and there is no peers' venv at "
            f"{PEERS_VENV} to draw them with (pip install matplotlib, or run "
            "benchmarks/setup_peers.py)"
        )
    with tempfile.TemporaryDirectory() as tmp:
        if isinstance(run, dict):
            path = Path(tmp) / "run.json"
            path.write_text(json.dumps(run, default=str))
        else:
            path = Path(run)
        cmd = [str(py), str(Path(__file__).resolve()), str(path), "--out", str(out)]
        cmd += ["--prefix", prefix, "--basis", basis, "--json"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        tail = " | ".join(proc.stderr.strip().splitlines()[-5:])
        raise ChartsUnavailable(f"drawing the charts with {py} failed: {tail}")
    return [Path(p) for p in json.loads(proc.stdout.strip().splitlines()[-1])]


def charts_markdown(
    run: str | os.PathLike | dict, out_dir: str | os.PathLike, prefix: str = ""
) -> str:
    """Draw the charts (:func:`write_charts`) and return a Markdown section linking them.

    Never raises for a chart that could not be drawn: the section says the charts were skipped and
    why. Links are relative to ``out_dir`` (the report is expected beside the charts).
    """
    try:
        paths = write_charts(run, out_dir, prefix)
    except (ChartsUnavailable, OSError, subprocess.SubprocessError) as e:
        log.warning("charts skipped: %s", e)
        return f"\n## Charts\n\nCharts skipped: {e}\n"
    if not paths:
        return "\n## Charts\n\nNo chart: no workload of this run has a ceiling case.\n"
    lines = ["", "## Charts", ""]
    for p in paths:
        lines += [f"![{p.stem}]({p.name})", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run_json", type=Path, help="a run's JSON (benchmarks/results/...)")
    parser.add_argument("--out", type=Path, default=None, help="default: the JSON's folder")
    parser.add_argument("--prefix", default=None, help="file name prefix (default: <run>-)")
    parser.add_argument("--basis", choices=("wall", "cpu"), default="wall")
    parser.add_argument("--json", action="store_true", help="print the paths as one JSON line")
    args = parser.parse_args(argv)
    prefix = f"{args.run_json.stem}-" if args.prefix is None else args.prefix
    try:
        paths = write_charts(args.run_json, args.out or args.run_json.parent, prefix, args.basis)
    except ChartsUnavailable as e:
        print(f"charts skipped: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps([str(p) for p in paths]))
    else:
        for p in paths:
            print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())

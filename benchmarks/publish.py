"""Publish a benchmark run as the project's benchmark page: docs/benchmarks.md and its charts.

    python benchmarks/publish.py [results/<run>.json] [--out DIR] [--freeze FILE]

Without a path, the newest ``benchmarks/results/*-full.json`` is published. Writes
``<out>/benchmarks.md`` and ``<out>/benchmarks/<workload>.png`` (``--out`` defaults to ``docs/``;
give another folder for a dry run). The page holds, in order: how to reproduce the run (the
commands), the machine line, the date, a summary table (ours over each peer, tuned vs tuned, per
workload), a section per workload (its table and chart), a "Where we are behind" section written
by hand, and the pip freeze of the peers' venv.

The hand-written section is the text between ``<!-- hand-written -->`` and
``<!-- /hand-written -->``: publishing again keeps it as it is in the existing page (a placeholder
is written the first time). Everything else is regenerated.

The pip freeze is, in order of preference: ``--freeze FILE``; the run's own ``pip_freeze`` field if
it has one; ``pip freeze`` of the interpreter that ran the cases, if it still exists; the
``pip-freeze.txt`` that ``setup_peers.py`` left in the peers' venv.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import charts  # noqa: E402
import report  # noqa: E402

log = logging.getLogger(__name__)

RESULTS = HERE / "results"
DOCS = REPO / "docs"
PAGE = "benchmarks.md"
CHART_DIR = "benchmarks"  # beside the page: <out>/benchmarks/<workload>.png
HAND_OPEN = "<!-- hand-written -->"
HAND_CLOSE = "<!-- /hand-written -->"
PLACEHOLDER = (
    "_To be written by hand: the workloads where we are slower than a peer or far from the "
    "ceiling, why, and what is planned. Publishing again keeps this section as it is._"
)


def latest_full_run(results: Path | None = None) -> Path:
    """The newest ``*-full.json`` in ``results`` (default ``benchmarks/results/``; run files are
    named by their start time)."""
    results = RESULTS if results is None else results
    runs = sorted(results.glob("*-full.json"))
    if not runs:
        raise FileNotFoundError(f"no full run (*-full.json) in {results}: run benchmarks/run.py")
    return runs[-1]


def hand_written(text: str) -> str | None:
    """The hand-written section of an existing page (between the markers), or None."""
    start = text.find(HAND_OPEN)
    end = text.find(HAND_CLOSE, start + len(HAND_OPEN)) if start >= 0 else -1
    if start < 0 or end < 0:
        return None
    return text[start + len(HAND_OPEN) : end].strip("\n")


def peers_freeze(run: dict) -> str | None:
    """The pip freeze of the venv that ran the cases (see the module docstring), or None."""
    if run.get("pip_freeze"):
        return str(run["pip_freeze"]).strip()
    candidates = []
    if run.get("python_for_cases"):
        candidates.append(Path(run["python_for_cases"]))
    candidates.append(charts.PEERS_VENV / "bin" / "python")
    for py in candidates:
        if not py.exists():
            continue
        try:
            proc = subprocess.run(
                [str(py), "-m", "pip", "--disable-pip-version-check", "freeze", "--all"],
                capture_output=True,
                text=True,
                timeout=120,
            )
        except (OSError, subprocess.SubprocessError) as e:
            log.warning("pip freeze with %s failed: %s", py, e)
            continue
        if proc.returncode == 0 and proc.stdout.strip():
            return proc.stdout.strip()
        log.warning("pip freeze with %s failed: %s", py, proc.stderr.strip()[-300:])
    saved = charts.PEERS_VENV / "pip-freeze.txt"
    return saved.read_text().strip() if saved.exists() else None


def _portable_freeze(text: str) -> str:
    """A freeze with this checkout's path (our editable install) shown as ``.``."""
    return text.replace(str(REPO), ".")


def _date(started: str) -> str:
    """``20261125-162019`` -> ``2026-11-25 16:20:19`` (as given if it has another form)."""
    if len(started) == 15 and started[8] == "-" and started.replace("-", "").isdigit():
        d, t = started[:8], started[9:]
        return f"{d[:4]}-{d[4:6]}-{d[6:]} {t[:2]}:{t[2:4]}:{t[4:]}"
    return started


def _relative(path: Path) -> str:
    """The results file as the page shows it: relative to the repository, or, for a run written
    elsewhere (``--out``), where a default run would have put it (never a path of this machine)."""
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return f"benchmarks/results/{path.name}"


def _shown_command(command: str) -> str:
    """The run's command line without ``--out DIR`` (a path of the machine that ran it)."""
    words = iter(shlex.split(command))
    kept = []
    for w in words:
        if w == "--out":
            next(words, None)  # and its value
        elif not w.startswith("--out="):
            kept.append(w)
    return shlex.join(kept)


def render(
    run_doc: dict,
    run_path: Path | None,
    summaries: list[dict],
    chart_links: dict[str, str],
    charts_note: str | None,
    hand: str | None,
    freeze: str | None,
) -> str:
    """The page's Markdown."""
    run = run_doc.get("run", {})
    command = _shown_command(run.get("command", "python benchmarks/run.py"))
    shown = _relative(run_path) if run_path else "benchmarks/results/<run>.json"
    lines = [
        "# Benchmarks",
        "",
        "dataflow measured side by side with tensorpack, torch DataLoader, grain and spdl on one "
        "machine, in one run (the protocol: `benchmarks/README.md`). Absolute figures from other "
        "machines or runs do not compare; the ratios within a run and the fractions of the "
        "machine's ceiling (the least work that yields the same datapoints, measured in the same "
        "run) do. Generated by `benchmarks/publish.py`; only the section marked as hand-written is "
        "edited by hand.",
        "",
        "## How to reproduce",
        "",
        "```sh",
        "python benchmarks/setup_peers.py   # once: the peers' venv .bench-venv/",
        command,
        f"python benchmarks/publish.py {shown}",
        "```",
        "",
        report.machine_line(run),
        "",
        f"Date: {_date(str(run.get('started', '?')))}. Rounds: {run.get('rounds', '?')}, window "
        f"{run.get('window_s', '?')} s. Libraries: "
        + ", ".join(f"{k} {v}" for k, v in run.get("versions", {}).items())
        + ".",
    ]
    if run.get("skipped"):
        lines += [
            "",
            "Skipped: " + "; ".join(f"{k}: {v}" for k, v in run["skipped"].items()) + ".",
        ]
    lines += [
        "",
        "## Summary",
        "",
        "Ours over each peer, tuned config against tuned config (each library's best of its "
        "declared grid), wall-clock throughput paired within each round: median (min-max) over "
        "rounds; > 1 means we are faster. 'of ceiling': throughput over the ceiling's in the same "
        "round.",
        "",
        report.headline_table(summaries),
    ]
    if charts_note:
        lines += [f"Charts skipped: {charts_note}", ""]
    for s in summaries:
        lines.append(
            report.markdown_workload(s, heading="##", chart=chart_links.get(s["workload"]))
        )
    lines += [
        "## Where we are behind",
        "",
        HAND_OPEN,
        hand if hand is not None else PLACEHOLDER,
        HAND_CLOSE,
        "",
        "## The peers' environment",
        "",
        "<details><summary>pip freeze of the venv that ran every library</summary>",
        "",
        "```text",
        freeze if freeze else "(not available: the peers' venv was not found)",
        "```",
        "",
        "</details>",
        "",
    ]
    return "\n".join(lines)


def publish(
    run_json: str | Path | None = None,
    out: str | Path = DOCS,
    freeze: str | None = None,
) -> Path:
    """Write ``<out>/benchmarks.md`` and its charts from a run's JSON; return the page's path.

    ``run_json``: default the newest full run in ``benchmarks/results/``. ``freeze``: the pip
    freeze text to show (default: see the module docstring). Keeps the existing page's
    hand-written section. Charts that cannot be drawn (no matplotlib anywhere) are skipped and
    the page says why.
    """
    run_path = Path(run_json) if run_json is not None else latest_full_run()
    run_doc = charts.load_run(run_path)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    page = out / PAGE
    hand = hand_written(page.read_text()) if page.exists() else None

    summaries = report.resummarize(run_doc) if run_doc.get("cases") else run_doc["summaries"]
    chart_links: dict[str, str] = {}
    charts_note = None
    try:
        written = charts.write_charts(
            run_doc if run_doc.get("cases") else run_path, out / CHART_DIR
        )
    except charts.ChartsUnavailable as e:
        charts_note = str(e)
        log.warning("charts skipped: %s", e)
    else:
        by_name = {p.name: p for p in written}
        for s in summaries:
            name = charts.chart_filename(s["workload"])
            if name in by_name:
                chart_links[s["workload"]] = f"{CHART_DIR}/{name}"
    if freeze is None:
        freeze = peers_freeze(run_doc.get("run", {}))
    if freeze is not None:
        freeze = _portable_freeze(freeze)
    text = render(run_doc, run_path, summaries, chart_links, charts_note, hand, freeze)
    tmp = page.with_suffix(".md.tmp")
    tmp.write_text(text)
    tmp.replace(page)
    return page


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "run_json", nargs="?", type=Path, help="default: the newest benchmarks/results/*-full.json"
    )
    parser.add_argument("--out", type=Path, default=DOCS, help="folder of the page (default docs/)")
    parser.add_argument("--freeze", type=Path, help="a pip freeze file to show instead")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        page = publish(
            args.run_json, args.out, args.freeze.read_text().strip() if args.freeze else None
        )
    except FileNotFoundError as e:
        parser.error(str(e))
    print(f"written: {page} (charts in {page.parent / CHART_DIR})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""W9, resume cost: from ``load_state_dict`` (a state saved at 90% of a pass) to the first datapoint.

Two pipelines over 10^6 datapoints (``shared/BENCHMARKS.md``, W9):

- ``list``: ``DataFromList([[i, 0.5] ...], shuffle=True) -> MapData(f) -> BatchData(256)``;
- ``lmdb``: ``LMDBData`` over 10^6 records written by ``LMDBSerializer.save`` (keys ``%08d``;
  sequential read) ``-> MapData(f)``, and ``lmdb-foreign``: the same over a database written with
  the bare lmdb package (no header: LMDBData cannot know that its keys are numbered),

each resumed three ways:

- ``ours``: the library's own state (``state_dict()`` through a JSON round-trip);
- ``replay``: the same pipeline under a user class that writes only ``__iter__`` (``Wrapped``), so
  it resumes by counted replay: the whole pass up to the saved position runs again and is skipped;
- ``torchdata``: torchdata's ``StatefulDataLoader`` on the equivalent torch pipeline, a map-style
  ``Dataset`` whose ``__getitem__`` applies ``f`` (``batch_size=256, shuffle=True`` for ``list``,
  ``batch_size=None`` in key order for the LMDBs; ``num_workers=0``), its state through
  ``torch.save``/``torch.load`` in memory.

Each (way, pipeline, round) runs in a fresh process: it builds the source data (untimed), builds
the pipeline, takes 90% of a pass and saves the state, takes one more item (the expected first
item of the resumed pipeline), then builds a fresh identical pipeline and times
``load_state_dict(state)`` plus ``next(iter(...))``. Also recorded: the calls of ``f`` in that
span (the goal is none for the skipped datapoints) and whether the first item is the expected one.

    python benchmarks/w9_resume.py                  # 3 rounds; torchdata from .bench-venv/
    python benchmarks/w9_resume.py --smoke          # 20,000 datapoints, ours and replay, 1 round
    python benchmarks/w9_resume.py --publish        # also write the rows into docs/benchmarks.md

``setup_peers.py --peers torch,torchdata`` installs torch and torchdata into ``.bench-venv/``; the
cases of every way then run under that interpreter (one Python, one numpy for all). Without it,
``torchdata`` is reported as skipped and the others run with this interpreter. Exit status 1 if a
case crashed or resumed at the wrong item.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PEERS_PY = REPO / ".bench-venv" / "bin" / "python"
DATA_DIR = HERE / "results" / "w9-data"
DOC = REPO / "docs" / "benchmarks.md"
OPEN, CLOSE = "<!-- w9 -->", "<!-- /w9 -->"

N = 10**6
SMOKE_N = 20_000
BATCH = 256
AT = 0.9
WAYS = ("ours", "replay", "torchdata")
PIPELINES = ("list", "lmdb", "lmdb-foreign")

CALLS = [0]


def f(dp: list) -> list:
    """The user function of both pipelines (counted)."""
    CALLS[0] += 1
    return [dp[0], dp[1] * 2]


# -- the data ----------------------------------------------------------------------------------------


def lmdb_path(n: int, foreign: bool) -> Path:
    """An LMDB of ``n`` records under keys ``%08d``, made once.

    ``foreign=False``: written by ``LMDBSerializer.save`` from ``[i, 0.5]`` (our layout: LMDBData
    knows its keys are numbered). ``foreign=True``: written with the bare lmdb package, values of
    16 bytes (i as 8 bytes twice), no header: a database from elsewhere, whose keys LMDBData does
    not know.
    """
    import lmdb

    path = DATA_DIR / f"records-{n}{'-foreign' if foreign else ''}.lmdb"
    done = DATA_DIR / f"{path.name}.complete"
    if done.exists():
        return path
    if not foreign:
        from dataflow import DataFromList, LMDBSerializer

        DATA_DIR.mkdir(parents=True, exist_ok=True)
        if path.exists():
            import shutil

            shutil.rmtree(path) if path.is_dir() else path.unlink()
        LMDBSerializer.save(DataFromList([[i, 0.5] for i in range(n)], shuffle=False), str(path))
        done.write_text("ok\n")
        return path
    path.mkdir(parents=True, exist_ok=True)
    env = lmdb.open(str(path), subdir=True, map_size=1 << 30, lock=True)
    with env.begin(write=True) as txn:
        for i in range(n):
            v = i.to_bytes(8, "little")
            txn.put(b"%08d" % i, v + v, append=True)
    env.sync()
    env.close()
    done.write_text("ok\n")
    return path


def canon(item: Any) -> Any:
    """A comparable, JSON-able form of a batch or datapoint of any way."""
    if isinstance(item, dict):
        return {k: canon(v) for k, v in item.items()}
    if isinstance(item, (list, tuple)):
        return [canon(x) for x in item]
    if hasattr(item, "tolist"):
        return item.tolist()
    if isinstance(item, (bytes, bytearray, memoryview)):
        return bytes(item).hex()
    return item


# -- ours and replay ---------------------------------------------------------------------------------


def ours_pipeline(kind: str, n: int, wrapped: bool) -> Any:
    import dataflow
    from dataflow import BatchData, DataFromList, LMDBData, MapData

    if kind == "list":
        ds = BatchData(MapData(DataFromList([[i, 0.5] for i in range(n)], shuffle=True), f), BATCH)
    else:
        path = str(lmdb_path(n, foreign=kind == "lmdb-foreign"))
        ds = MapData(LMDBData(path, shuffle=False), lambda dp: f([dp[0], len(dp[1])]))
    if not wrapped:
        return ds

    class Wrapped(dataflow.DataFlow):
        """A user's flow with no state support: resumed by counted replay."""

        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def __len__(self) -> int:
            return len(self.inner)

        def __iter__(self) -> Any:
            yield from self.inner

    return Wrapped(ds)


def run_ours(kind: str, n: int, wrapped: bool) -> dict:
    import dataflow

    dataflow.set_seed(9)
    ds = ours_pipeline(kind, n, wrapped)
    it = iter(ds)
    for _ in range(int(len(ds) * AT)):
        next(it)
    state = json.dumps(ds.state_dict())
    expected = canon(next(it))
    del it
    ds.close()
    dataflow.set_seed(1)  # another seed: the state decides
    again = ours_pipeline(kind, n, wrapped)
    loaded = json.loads(state)
    CALLS[0] = 0
    gc.collect()  # no collection of the first pipeline's garbage inside the span
    t0, c0 = time.perf_counter(), time.process_time()
    again.load_state_dict(loaded)
    first = next(iter(again))
    t1, c1 = time.perf_counter(), time.process_time()
    calls = CALLS[0]
    again.close()
    fresh = ours_pipeline(kind, n, wrapped)  # the same start without a state: a new pass
    gc.collect()
    t2 = time.perf_counter()
    next(iter(fresh))
    fresh_s = time.perf_counter() - t2
    fresh.close()
    return {
        "s": t1 - t0,
        "cpu_s": c1 - c0,
        "fresh_s": fresh_s,
        "calls": calls,
        "ok": canon(first) == expected,
        "state_bytes": len(state),
    }


# -- torchdata -----------------------------------------------------------------------------------------


def run_torchdata(kind: str, n: int) -> dict:
    import torch
    from torch.utils.data import Dataset
    from torchdata.stateful_dataloader import StatefulDataLoader

    if kind == "list":
        data = [[i, 0.5] for i in range(n)]

        class ListDataset(Dataset):
            def __len__(self) -> int:
                return len(data)

            def __getitem__(self, i: int) -> list:
                return f(data[i])

        def build() -> Any:
            return StatefulDataLoader(
                ListDataset(),
                batch_size=BATCH,
                shuffle=True,
                drop_last=True,
                num_workers=0,
                generator=torch.Generator().manual_seed(9),
            )

    else:
        import lmdb

        path = str(lmdb_path(n, foreign=kind == "lmdb-foreign"))

        env = lmdb.open(
            path, subdir=os.path.isdir(path), readonly=True, lock=False, readahead=True
        )  # one a process

        class LMDBDataset(Dataset):
            txn: Any = None

            def __len__(self) -> int:
                return n

            def __getitem__(self, i: int) -> list:
                if self.txn is None:
                    self.txn = env.begin(buffers=False)
                key = b"%08d" % i
                return f([key, len(self.txn.get(key))])

        def build() -> Any:
            return StatefulDataLoader(LMDBDataset(), batch_size=None, shuffle=False, num_workers=0)

    loader = build()
    it = iter(loader)
    for _ in range(int(len(loader) * AT)):
        next(it)
    buf = io.BytesIO()
    torch.save(loader.state_dict(), buf)
    expected = canon(next(it))
    del it
    again = build()
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    CALLS[0] = 0
    gc.collect()  # no collection of the first pipeline's garbage inside the span
    t0, c0 = time.perf_counter(), time.process_time()
    again.load_state_dict(loaded)
    first = next(iter(again))
    t1, c1 = time.perf_counter(), time.process_time()
    calls = CALLS[0]
    gc.collect()
    t2 = time.perf_counter()
    next(iter(build()))  # the same start without a state: a new epoch
    fresh_s = time.perf_counter() - t2
    return {
        "s": t1 - t0,
        "cpu_s": c1 - c0,
        "fresh_s": fresh_s,
        "calls": calls,
        "ok": canon(first) == expected,
        "state_bytes": buf.tell(),
    }


def case(way: str, kind: str, n: int) -> dict:
    if way == "torchdata":
        return run_torchdata(kind, n)
    return run_ours(kind, n, wrapped=way == "replay")


# -- the run ---------------------------------------------------------------------------------------------


def versions(py: str) -> dict:
    code = (
        "import json, importlib.metadata as m\n"
        "out = {}\n"
        "for name in ('pydataflow', 'torch', 'torchdata'):\n"
        "    try: out[name] = m.version(name)\n"
        "    except Exception: pass\n"
        "print(json.dumps(out))"
    )
    done = subprocess.run([py, "-c", code], capture_output=True, text=True, timeout=60)
    return json.loads(done.stdout) if done.returncode == 0 else {}


def has_torchdata(py: str) -> bool:
    code = "import torchdata.stateful_dataloader"
    return subprocess.run([py, "-c", code], capture_output=True, timeout=120).returncode == 0


def run_case(py: str, way: str, kind: str, n: int, timeout: float) -> dict:
    cmd = [py, str(Path(__file__).resolve()), "--case", f"{way}:{kind}", "--n", str(n)]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"status": "timeout"}
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("W9CASE ")]
    if done.returncode != 0 or not lines:
        return {"status": "crashed", "error": done.stderr[-2000:]}
    return {"status": "ok", **json.loads(lines[-1][len("W9CASE ") :])}


def summarize(records: list[dict]) -> list[dict]:
    rows = []
    for kind in PIPELINES:
        for way in WAYS:
            got = [r for r in records if r["way"] == way and r["pipeline"] == kind]
            if not got:
                continue
            ok = [r for r in got if r["status"] == "ok"]
            ms = [1000 * r["s"] for r in ok]
            rows.append(
                {
                    "pipeline": kind,
                    "way": way,
                    "rounds": len(got),
                    "ms_median": statistics.median(ms) if ms else None,
                    "ms_min": min(ms) if ms else None,
                    "ms_max": max(ms) if ms else None,
                    "cpu_ms_median": statistics.median(1000 * r["cpu_s"] for r in ok)
                    if ok
                    else None,
                    "fresh_ms_median": statistics.median(1000 * r["fresh_s"] for r in ok)
                    if ok
                    else None,
                    "calls": sorted({r["calls"] for r in ok}),
                    "state_bytes": max((r["state_bytes"] for r in ok), default=None),
                    "exact": bool(ok) and all(r["ok"] for r in ok) and len(ok) == len(got),
                    "status": sorted({r["status"] for r in got}),
                }
            )
    return rows


def ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.3g}" if value < 1000 else f"{value:,.0f}"


def fmt_ms(row: dict) -> str:
    if row["ms_median"] is None:
        return "-"
    med, lo, hi = row["ms_median"], row["ms_min"], row["ms_max"]
    return ms(med) if row["rounds"] == 1 or lo == hi else f"{ms(med)} ({ms(lo)}-{ms(hi)})"


TITLES = {
    "list": "DataFromList(10^6 [i, 0.5], shuffle) -> MapData -> BatchData(256)",
    "lmdb": "LMDBData(10^6 records, sequential) -> MapData",
    "lmdb-foreign": "the same over a database not written by LMDBSerializer",
}
WAY_NAMES = {
    "ours": "ours (state_dict)",
    "replay": "counted replay (a user wrapper without state)",
    "torchdata": "torchdata StatefulDataLoader",
}


def table(rows: list[dict], n: int) -> str:
    lines = [
        f"| pipeline ({n:,} datapoints) | resumed by | load_state_dict -> first item, ms | "
        "ours faster | CPU ms (process) | a fresh pass's first item, ms | calls of f in that span | state bytes | "
        "first item right |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        ours = next(
            (r for r in rows if r["pipeline"] == row["pipeline"] and r["way"] == "ours"), None
        )
        ratio = "-"
        if row["way"] != "ours" and ours and ours["ms_median"] and row["ms_median"]:
            ratio = f"{row['ms_median'] / ours['ms_median']:,.3g}x"
        calls = ", ".join(f"{c:,}" for c in row["calls"]) or "-"
        size = f"{row['state_bytes']:,}" if row["state_bytes"] is not None else "-"
        cpu, fresh = ms(row["cpu_ms_median"]), ms(row["fresh_ms_median"])
        right = "yes" if row["exact"] else "NO (" + ", ".join(row["status"]) + ")"
        lines.append(
            f"| {TITLES[row['pipeline']].replace('10^6', f'{n:,}')} | {WAY_NAMES[row['way']]} | "
            f"{fmt_ms(row)} | {ratio} | {cpu} | {fresh} | {calls} | {size} | {right} |"
        )
    return "\n".join(lines)


def section(result: dict) -> str:
    n, rounds = result["n"], result["rounds"]
    v = result["versions"]
    skipped = "".join(f" {s}" for s in result["skipped"])
    return (
        f"{OPEN}\n"
        "### W9: resume cost\n\n"
        f"Run {result['date']} (`{result['command']}`), {rounds} round(s), each case a fresh "
        f"process; {result['machine']}. The machine is shared with other jobs, so the absolute "
        "times are noisy; the ratios within the run are the figures to read. Versions: dataflow "
        f"{v.get('pydataflow', '?')}, torch {v.get('torch', '-')}, torchdata "
        f"{v.get('torchdata', '-')}.{skipped}\n\n"
        "A state is saved at 90% of a pass; a fresh identical pipeline is built (untimed); the "
        "time is `load_state_dict(state)` plus the first `next()`, median (min-max) over "
        "rounds; 'CPU ms': the same span in the process's CPU time (steadier when other jobs take "
        "the cores). 'calls of f': how many times the user function ran in that span (the first item "
        "itself needs 256 for a batch, 1 for a datapoint; more means skipped datapoints were "
        "mapped again). 'first item right': the resumed pipeline's first item is the one "
        "the saved pipeline yielded next. 'a fresh pass's first item': the same pipeline's first "
        "item without a state (median), what any pass's start costs. Goal: < 50 ms, no call of f for skipped datapoints.\n\n"
        f"{table(result['rows'], n)}\n\n"
        "How each resumes: ours seeks (DataFromList: the index into the pass's order, drawn "
        "again from the saved generator state, so a resumed pass pays for one permutation of "
        "its 10^6 indices as any pass does; LMDBData: its cursor put on the saved record, directly "
        "in a file LMDBSerializer wrote, by stepping over the keys before it (values not read) in "
        "another database; MapData and BatchData save nothing); replay runs the pass again under the wrapper and skips what "
        "had been yielded (every skipped datapoint read and mapped again); StatefulDataLoader "
        "restores its sampler's position (see docs/resume.md).\n"
        f"{CLOSE}\n"
    )


def publish(text: str) -> None:
    page = DOC.read_text()
    if OPEN in page:
        start = page.index(OPEN)
        end = page.index(CLOSE, start) + len(CLOSE) + 1
        page = page[:start] + text + page[end:]
    else:  # inside the hand-written section, which publish.py keeps as it is
        at = page.index("<!-- /hand-written -->")
        page = page[:at] + "\n" + text + page[at:]
    DOC.write_text(page)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=None, help="datapoints a pass (default 10^6)")
    parser.add_argument("--smoke", action="store_true", help=f"{SMOKE_N:,} datapoints, 1 round")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--ways", default=None, help="comma-separated subset of " + ",".join(WAYS))
    parser.add_argument("--pipelines", default=",".join(PIPELINES))
    parser.add_argument("--out", default=str(HERE / "results"))
    parser.add_argument("--publish", action="store_true", help="write the rows into docs")
    parser.add_argument("--render", help="a run's JSON: print (and --publish) its section again")
    args = parser.parse_args(argv)

    if args.render:
        saved = json.loads(Path(args.render).read_text())
        saved["rows"] = summarize(saved["records"])
        text = section(saved)
        print(text)
        if args.publish:
            publish(text)
        return 0

    if args.case:
        way, kind = args.case.split(":")
        record = case(way, kind, args.n or N)
        print("W9CASE " + json.dumps(record), flush=True)
        return 0

    n = args.n or (SMOKE_N if args.smoke else N)
    rounds = args.rounds or (1 if args.smoke else 3)
    ways = (args.ways or ("ours,replay" if args.smoke else ",".join(WAYS))).split(",")
    pipelines = args.pipelines.split(",")
    py = sys.executable
    if not args.smoke and PEERS_PY.exists():
        py = str(PEERS_PY)
    skipped = []
    if "torchdata" in ways and not has_torchdata(py):
        ways.remove("torchdata")
        skipped.append(f"torchdata skipped: not importable by {Path(py).name} (setup_peers.py)")
    records = []
    for r in range(rounds):
        for kind in pipelines:
            for way in ways:
                rec = run_case(py, way, kind, n, timeout=600)
                rec.update(way=way, pipeline=kind, round=r)
                records.append(rec)
                status = rec["status"]
                if status == "ok":
                    extra = f"{1000 * rec['s']:.3f} ms calls={rec['calls']} right={rec['ok']}"
                    print(f"W9 {kind} {way} round {r}: ok {extra}", flush=True)
                else:
                    print(f"W9 {kind} {way} round {r}: {status}", flush=True)
                    print(rec.get("error", ""), file=sys.stderr)
    cmd = "python benchmarks/w9_resume.py" + (" " + " ".join(argv) if argv else "")
    if argv is None and len(sys.argv) > 1:
        cmd = "python benchmarks/w9_resume.py " + " ".join(sys.argv[1:])
    result = {
        "n": n,
        "rounds": rounds,
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "command": cmd.replace(" --publish", ""),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "versions": versions(py),
        "skipped": skipped,
        "records": records,
        "rows": summarize(records),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (out / f"{stamp}-w9{'-smoke' if args.smoke else ''}.json").write_text(
        json.dumps(result, indent=2) + "\n"
    )
    text = section(result)
    print(text)
    if args.publish:
        publish(text)
    bad = [r for r in records if r["status"] != "ok" or not r["ok"]]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

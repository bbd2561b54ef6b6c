"""Per-stage statistics: what every flow counts while it runs, and the pipeline's snapshot.

When counting is on (:func:`enable`, or ``DATAFLOW_STATS=1`` in the environment), every pass of
every flow is observed by one wrapper generator put around the iterator the flow returns (see
``base._wrap_iter``). Per ``next()`` it reads the clock twice and counts:

- ``datapoints``: what the flow yielded;
- ``inclusive``: the time the caller spent inside the flow's ``next()``;
- ``own``: that time less what nested flows' ``next()`` took in the same thread (each thread keeps
  one accumulator, so a stage that pulls its upstream inline, as the parallel maps do in the
  consumer, is charged only for its own work and its waits on workers).

Wait upstream is ``inclusive - own``; wait downstream is the time between the calls (the span
since the stage's first call less ``inclusive``). Parallel stages add what their workers report
through ``_df_stats_extra()`` (busy time sent with the results, items in flight, restarts, skipped).

Counting costs two clock reads and a few attribute updates per datapoint per stage, too much for
tiny in-process pipelines (docs/bottleneck.md has the figures), so it is off by default: when off,
the library's only cost is one module-attribute test per pass.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import DataFlowError

# base imports this module, so a flow is typed loosely here (as in _state) to keep the graph acyclic
DataFlow = Any

__all__ = [
    "enable",
    "disable",
    "enabled",
    "PipelineStats",
    "StageStats",
    "StatsOffError",
    "log_stats",
]

logger = logging.getLogger("dataflow.stats")

# Read by base._wrap_iter once per pass.
ON: bool = os.environ.get("DATAFLOW_STATS", "").strip().lower() in ("1", "true", "yes", "on")

_clock = time.perf_counter_ns
_tls = threading.local()  # .acc: [ns spent in nested observed next() calls of this thread]


class StatsOffError(DataFlowError, RuntimeError):
    """``stats()`` was asked of a pipeline that was never iterated with counting on."""


def enable(on: bool = True) -> None:
    """Turn per-stage counting on (or off with ``on=False``) for passes that begin from now on.

    A pass already under way keeps the choice it began with. ``DATAFLOW_STATS=1`` in the
    environment turns it on at import (worker processes inherit it that way under spawn).
    """
    global ON
    ON = bool(on)


def disable() -> None:
    """Turn per-stage counting off for passes that begin from now on."""
    enable(False)


def enabled() -> bool:
    """Whether passes that begin now are counted."""
    return ON


class _Record:
    """The counters of one flow (kept in its ``__dict__['_df_stats']``, not pickled)."""

    __slots__ = ("datapoints", "inclusive", "own", "first", "last", "passes", "live")

    def __init__(self) -> None:
        self.datapoints = 0
        self.inclusive = 0  # ns inside next()
        self.own = 0  # ns inside next() less nested observed next() calls
        self.first = 0  # clock at the first next() call (0: none yet)
        self.last = 0  # clock at the end of the latest next() call
        self.passes = 0
        self.live = 0  # passes under way


def record_of(flow: Any) -> _Record:
    rec = flow.__dict__.get("_df_stats")
    if rec is None:
        rec = flow.__dict__["_df_stats"] = _Record()
    return rec


def observe(flow: Any, it: Iterator) -> Iterator:
    """``it``, counted into ``flow``'s record (called by base._wrap_iter when counting is on)."""
    rec = record_of(flow)
    rec.passes += 1
    return _observed(rec, iter(it))


def _observed(rec: _Record, it: Iterator) -> Iterator:
    clock = _clock
    tls = _tls
    nxt = it.__next__
    rec.live += 1
    try:
        while True:
            try:
                acc = tls.acc
            except AttributeError:
                acc = tls.acc = [0]
            outer = acc[0]
            acc[0] = 0
            t0 = clock()
            if not rec.first:
                rec.first = t0
            try:
                dp = nxt()
            except BaseException:
                t1 = clock()
                dt = t1 - t0
                rec.inclusive += dt
                rec.own += dt - acc[0]
                rec.last = t1
                acc[0] = outer + dt
                raise
            t1 = clock()
            dt = t1 - t0
            rec.inclusive += dt
            rec.own += dt - acc[0]
            rec.last = t1
            rec.datapoints += 1
            acc[0] = outer + dt
            yield dp
    except StopIteration:
        return
    except GeneratorExit:
        close = getattr(it, "close", None)
        if close is not None:
            close()
        raise
    finally:
        rec.live -= 1


# -- the snapshot ----------------------------------------------------------------------------------
@dataclass
class StageStats:
    """One stage of the pipeline (times in seconds, shares as fractions of the pipeline's wall time).

    ``path`` is how the stage is reached from the outermost flow (``ds``, ``ds.ds``,
    ``ds.df_lists[1]``); ``produce_s`` is the time spent in the stage itself, ``wait_upstream_s`` in
    the flows it reads, ``wait_downstream_s`` between the calls of its consumer. Parallel stages
    fill ``workers`` (their number), ``workers_busy`` (the fraction of the workers' time spent in
    the user's function, as the workers report it with their results), ``busy_s`` (per worker),
    ``in_flight``, ``occupancy`` (in flight over capacity), ``restarts`` and ``skipped``.
    """

    name: str
    path: str
    datapoints: int
    dps: float
    share: float
    produce_s: float
    wait_upstream_s: float
    wait_downstream_s: float
    span_s: float
    passes: int
    workers: int | None = None
    workers_busy: float | None = None
    busy_s: list[float] = field(default_factory=list)
    in_flight: int | None = None
    occupancy: float | None = None
    restarts: int | None = None
    skipped: int | None = None

    @property
    def parallel(self) -> bool:
        return self.workers is not None


@dataclass
class PipelineStats:
    """A snapshot of a pipeline's per-stage statistics (from ``ds.stats()`` on its outermost flow).

    ``stages`` lists one :class:`StageStats` per flow, outermost first; ``wall_s`` is the span since
    the outermost flow's first ``next()``; ``bottleneck`` is the stage that limits throughput and
    ``bottleneck_reason`` says why in one sentence. ``str()`` renders a table, ``to_dict()`` plain
    (JSON-able) data, ``plot(path)`` a PNG chart (``pip install 'pydataflow[plot]'``).
    """

    stages: list[StageStats]
    wall_s: float
    bottleneck: StageStats | None
    bottleneck_reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "wall_s": self.wall_s,
            "stages": [asdict(s) for s in self.stages],
            "bottleneck": None if self.bottleneck is None else self.bottleneck.path,
            "bottleneck_reason": self.bottleneck_reason,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    def __str__(self) -> str:
        return render_table(self)

    def plot(self, path: str | os.PathLike[str]) -> None:
        """Write a PNG: per-stage throughput, and each stage's time split into produce / wait
        upstream / wait downstream as stacked bars; the bottleneck is highlighted."""
        plot(self, path)


def snapshot(
    root: DataFlow, upstream_flows: Callable[[Any], list[tuple[str, Any]]]
) -> PipelineStats:
    """The statistics of the pipeline ending at ``root`` as they stand now; ``upstream_flows``
    names a flow's upstreams (base.py passes its own walker: this module must not import base)."""
    now = _clock()
    found: list[tuple[str, Any]] = []
    seen: set[int] = set()
    stack: list[tuple[str, Any]] = [("ds", root)]
    while stack:
        path, flow = stack.pop()
        if id(flow) in seen:
            continue
        seen.add(id(flow))
        found.append((path, flow))
        kids = upstream_flows(flow) if hasattr(flow, "__dict__") else []
        stack.extend((f"{path}.{name}", kid) for name, kid in reversed(kids))
    records = [flow.__dict__.get("_df_stats") for _, flow in found]
    if all(rec is None for rec in records):
        raise StatsOffError(
            f"{type(root).__name__}.stats(): no stage of this pipeline was counted; turn counting "
            "on before iterating it (dataflow.stats.enable(), or DATAFLOW_STATS=1)"
        )
    top = records[0]
    if top is None or not top.first:
        wall_ns = 0
    else:
        wall_ns = (now if top.live else top.last) - top.first
    wall = wall_ns / 1e9
    stages = [_stage(path, flow, rec, now, wall) for (path, flow), rec in zip(found, records)]
    neck, reason = _bottleneck(stages)
    return PipelineStats(stages=stages, wall_s=wall, bottleneck=neck, bottleneck_reason=reason)


def _stage(path: str, flow: Any, rec: _Record | None, now: int, wall: float) -> StageStats:
    name = type(flow).__name__
    if rec is None or not rec.first:
        stage = StageStats(name, path, 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0 if rec is None else 0)
    else:
        span = ((now if rec.live else rec.last) - rec.first) / 1e9
        inclusive = rec.inclusive / 1e9
        own = max(rec.own, 0) / 1e9
        stage = StageStats(
            name=name,
            path=path,
            datapoints=rec.datapoints,
            dps=rec.datapoints / span if span > 0 else 0.0,
            share=own / wall if wall > 0 else 0.0,
            produce_s=own,
            wait_upstream_s=max(inclusive - own, 0.0),
            wait_downstream_s=max(span - inclusive, 0.0),
            span_s=span,
            passes=rec.passes,
        )
    extra = getattr(flow, "_df_stats_extra", None)
    if extra is not None:
        info = extra()
        if info:
            stage.workers = int(info["workers"])
            per = info.get("per_output", 1)
            if per != 1:  # a map batching for the BatchData on top: it yields whole batches
                n = stage.datapoints * per - info.get("short", 0)
                if stage.datapoints:
                    stage.dps *= n / stage.datapoints
                stage.datapoints = n
            stage.busy_s = [ns / 1e9 for ns in info.get("busy_ns", [])]
            if stage.busy_s and stage.span_s > 0:
                stage.workers_busy = min(sum(stage.busy_s) / (stage.workers * stage.span_s), 1.0)
            stage.in_flight = info.get("in_flight")
            capacity = info.get("capacity")
            if capacity and stage.in_flight is not None:
                stage.occupancy = stage.in_flight / capacity
            stage.restarts = info.get("restarts")
            stage.skipped = info.get("skipped")
    return stage


_BUSY = 0.8  # workers busier than this are "the limit": more of them would help


def _blame(stage: StageStats) -> float:
    """How much of the pipeline's time the consumer spent waiting on this stage itself.

    A parallel stage whose workers are not busy is waiting on something else (the transport,
    its own consumer-side work): it is blamed in proportion to how busy its workers are, so that
    a slow upstream read inline by the stage is not mistaken for slow workers."""
    if stage.parallel and stage.workers_busy is not None:
        return stage.share * max(stage.workers_busy, 0.25)
    return stage.share


def _bottleneck(stages: list[StageStats]) -> tuple[StageStats | None, str]:
    counted = [s for s in stages if s.datapoints]
    if not counted:
        return None, "nothing was yielded yet"
    neck = max(counted, key=_blame)
    top = stages[0]
    consumer = top.wait_downstream_s / top.span_s if top.span_s > 0 else 0.0
    if neck.parallel and neck.workers_busy is not None:
        if neck.workers_busy >= _BUSY:
            reason = (
                f"{neck.name}: workers busy {neck.workers_busy:.0%}, consumer waited "
                f"{neck.share:.0%} of the time on it: add workers or make its function cheaper"
            )
        else:
            reason = (
                f"{neck.name}: consumer waited {neck.share:.0%} of the time on it while its "
                f"workers were busy only {neck.workers_busy:.0%}: the hand-over to and from the "
                "workers limits it (bigger datapoints per message, or a batch inside the map)"
            )
    else:
        reason = f"{neck.name}: consumer waited {neck.share:.0%} of the time on it"
    if consumer >= 0.5:
        reason += (
            f"; but the pipeline's own consumer took {consumer:.0%} of the time between "
            "datapoints: the pipeline keeps up with it"
        )
    return neck, reason


# -- text table --------------------------------------------------------------------------------------
def _fmt_rate(v: float) -> str:
    if v >= 1e6:
        return f"{v / 1e6:.2f}M"
    if v >= 1e3:
        return f"{v / 1e3:.1f}k"
    return f"{v:.1f}"


def render_table(st: PipelineStats) -> str:
    head = [
        "stage",
        "class",
        "datapoints",
        "dp/s",
        "share",
        "produce",
        "wait up",
        "wait down",
        "workers",
    ]
    rows = []
    for s in st.stages:
        span = s.span_s or 1.0
        if s.parallel:
            busy = "?" if s.workers_busy is None else f"{s.workers_busy:.0%}"
            occ = "" if s.occupancy is None else f" fill {s.occupancy:.0%}"
            workers = f"{s.workers} busy {busy}{occ}"
            if s.restarts:
                workers += f" restarts {s.restarts}"
            if s.skipped:
                workers += f" skipped {s.skipped}"
        else:
            workers = ""
        mark = " <" if st.bottleneck is s else ""
        rows.append(
            [
                s.path + mark,
                s.name,
                str(s.datapoints),
                _fmt_rate(s.dps),
                f"{s.share:.0%}",
                f"{s.produce_s / span:.0%}",
                f"{s.wait_upstream_s / span:.0%}",
                f"{s.wait_downstream_s / span:.0%}",
                workers,
            ]
        )
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [head, *rows]]
    lines.append(f"wall {st.wall_s:.2f} s; bottleneck: {st.bottleneck_reason}")
    return "\n".join(lines)


# -- chart ------------------------------------------------------------------------------------------
# Fixed colours (the test finds the bars by them).
COLORS = {
    "rate": "#4c72b0",
    "rate_bottleneck": "#dd4444",
    "produce": "#dd8452",
    "wait_upstream": "#55a868",
    "wait_downstream": "#bbbbbb",
}


def plot(st: PipelineStats, path: str | os.PathLike[str]) -> None:
    from ._lazy import require

    matplotlib = require("matplotlib", "plot", who="PipelineStats.plot")
    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    stages = st.stages
    n = len(stages)
    fig = Figure(figsize=(11, 1.6 + 0.55 * n), dpi=100)
    ax_rate, ax_split = fig.subplots(1, 2, sharey=True)
    ys = list(range(n))[::-1]
    labels = [f"{s.path}  {s.name}" for s in stages]
    rate_colors = [
        COLORS["rate_bottleneck"] if s is st.bottleneck else COLORS["rate"] for s in stages
    ]
    ax_rate.barh(ys, [s.dps for s in stages], color=rate_colors, height=0.6)
    ax_rate.set_yticks(ys, labels)
    ax_rate.set_xlabel("datapoints/s")
    ax_rate.set_title("throughput (red: bottleneck)")
    left = [0.0] * n
    for key, label in (
        ("produce", "produce"),
        ("wait_upstream", "wait upstream"),
        ("wait_downstream", "wait downstream"),
    ):
        widths = [getattr(s, f"{key}_s") / s.span_s if s.span_s else 0.0 for s in stages]
        ax_split.barh(ys, widths, left=left, color=COLORS[key], height=0.6, label=label)
        left = [a + b for a, b in zip(left, widths)]
    ax_split.set_xlim(0, 1)
    ax_split.set_xlabel("share of the stage's time")
    ax_split.set_title("where each stage's time goes")
    fig.suptitle(f"bottleneck: {st.bottleneck_reason}", fontsize="small")
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.legend(*ax_split.get_legend_handles_labels(), loc="lower center", ncol=3, fontsize="small")
    fig.savefig(os.fspath(path), format="png")


# -- periodic reporting -------------------------------------------------------------------------------
def log_stats(ds: DataFlow, every: float = 30.0) -> Iterator:
    """Iterate ``ds`` (one pass), logging its stats table at INFO every ``every`` seconds and at
    the end of the pass, on the ``dataflow.stats`` logger. Turns counting on if it is off."""
    if not every > 0:
        from .errors import DataFlowArgumentError

        raise DataFlowArgumentError(f"log_stats: every must be > 0 seconds, got {every!r}")
    enable()
    return _logged(ds, every)


def _logged(ds: DataFlow, every: float) -> Iterator:
    clock = time.monotonic
    due = clock() + every
    for dp in ds:
        yield dp
        if clock() >= due:
            logger.info("pipeline stats:\n%s", ds.stats())
            due = clock() + every
    logger.info("pipeline stats (end of pass):\n%s", ds.stats())


def postfix(ds: Any) -> str | None:
    """A short bottleneck line for a progress bar, or None when ``ds`` is not counted."""
    try:
        st = ds.stats()
    except StatsOffError:
        return None
    if st.bottleneck is None:
        return None
    return f"{st.bottleneck.name} ({st.bottleneck.path}) {st.bottleneck.share:.0%}"

"""Per-stage statistics of a pipeline: which stage starves the training loop (docs/bottleneck.md).

Turn counting on with :func:`enable` (or ``DATAFLOW_STATS=1``) before iterating, then call
``ds.stats()`` on the outermost flow, during or after a pass: a :class:`PipelineStats` with one
:class:`StageStats` per stage, the ``bottleneck`` and a sentence saying why.
"""

from __future__ import annotations

from ._stats import (
    PipelineStats,
    StageStats,
    StatsOffError,
    disable,
    enable,
    enabled,
    log_stats,
)

__all__ = [
    "PipelineStats",
    "StageStats",
    "StatsOffError",
    "disable",
    "enable",
    "enabled",
    "log_stats",
]

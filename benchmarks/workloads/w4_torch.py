"""W4-TORCH: W4's pipeline handed to a training loop through ``dataflow.to_torch``.

The same source, user function, batches and checksum as W4 (workloads.w4_imagenet). The cases:

- ``ours`` ``default``: W4's pipeline (MultiProcessMapDataZMQ, strict, 2 workers, then BatchData 64)
  iterated directly, as in W4.
- ``ours`` ``to_torch``: the same pipeline wrapped by ``to_torch`` and iterated through
  ``torch.utils.data.DataLoader(adapter, batch_size=None, num_workers=0)``: batches arrive as
  tensors sharing the pipeline's arrays. The gap to ``default`` is the adapter's cost.
- ``torch`` ``default``: torch's own DataLoader on the same work (W4's torch case).

Ceiling: W4's (2 x the single-core rate of the function and collation).
"""

from __future__ import annotations

from typing import Any

from workloads import w4_imagenet as w4
from workloads._common import Built

NAME = "W4-TORCH"
TITLE = "W4 through to_torch + DataLoader(batch_size=None), vs W4 direct and torch's DataLoader"
METRIC = w4.METRIC
TIMING = w4.TIMING
N = w4.N
SMOKE_N = w4.SMOKE_N
RATE_SCALE = w4.RATE_SCALE
make_source = w4.make_source
expected_pass = w4.expected_pass
expected_prefix = w4.expected_prefix
batch_stats = w4.batch_stats


def import_ours() -> None:
    import torch.utils.data  # noqa: F401

    import dataflow  # noqa: F401


def build_ours_to_torch(source: list, start_method: str | None = None) -> Built:
    """W4's pipeline of ours, through the torch adapter and a DataLoader that only hands on."""
    from torch.utils.data import DataLoader

    from dataflow import BatchData, DataFromList, MultiProcessMapDataZMQ, to_torch

    ds: Any = DataFromList(source, shuffle=False)
    ds = MultiProcessMapDataZMQ(
        ds, num_proc=w4.WORKERS, map_func=w4.user_map, strict=True, start_method=start_method
    )
    ds = BatchData(ds, w4.BATCH)
    ds.reset_state()
    loader = DataLoader(to_torch(ds), batch_size=None, num_workers=0)
    return Built(loader.__iter__, close=ds.close)


IMPORTS = {"ceiling": lambda: None, "ours": import_ours, "torch": w4.import_torch}
BUILDERS = {
    "ceiling": {"default": w4.build_ceiling},
    "ours": {"default": w4.build_ours, "to_torch": build_ours_to_torch},
    "torch": {"default": w4.build_torch},
}

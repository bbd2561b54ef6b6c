"""Adapters that hand a flow to a training framework, and rank sharding for multi-process training.

Each framework is imported when its adapter is first called, never by ``import dataflow``:
:func:`to_torch` (``pydataflow[torch]``), :func:`to_jax` (``pydataflow[jax]``), :func:`to_tf`
(``pydataflow[tf]``). :class:`ShardByRank` needs no framework (it reads torch.distributed or jax
only when asked for a rank and one of them is already imported).
"""

from __future__ import annotations

from typing import Any

from .._lazy import require
from .shard import ShardByRank

__all__ = ["to_torch", "to_jax", "to_tf", "ShardByRank"]


def to_torch(ds: Any, *, device: Any = None, pin_memory: bool = False, prefetch: int = 2) -> Any:
    """A ``torch.utils.data.IterableDataset`` over ``ds``: see :func:`dataflow.integrations.torch.to_torch`."""
    require("torch", "torch", who="dataflow.to_torch")
    from . import torch as _torch

    return _torch.to_torch(ds, device=device, pin_memory=pin_memory, prefetch=prefetch)


def to_jax(ds: Any, *, prefetch: int = 2, sharding: Any = None) -> Any:
    """An iterator of ``jax.Array`` datapoints: see :func:`dataflow.integrations.jax.to_jax`."""
    require("jax", "jax", who="dataflow.to_jax")
    from . import jax as _jax

    return _jax.to_jax(ds, prefetch=prefetch, sharding=sharding)


def to_tf(ds: Any, output_signature: Any = None) -> Any:
    """A ``tf.data.Dataset`` over ``ds``: see :func:`dataflow.integrations.tf.to_tf`."""
    require("tensorflow", "tf", who="dataflow.to_tf")
    from . import tf as _tf

    return _tf.to_tf(ds, output_signature=output_signature)

"""JAX: a flow as an iterator of ``jax.Array`` datapoints (``pip install 'pydataflow[jax]'``)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import jax
import numpy as np

from ..base import DataFlow, check_dataflow
from ..errors import DataFlowArgumentError
from ._prefetch import prefetch as _prefetch

__all__ = ["to_jax"]

_WIDE = frozenset(
    {np.dtype(np.int64), np.dtype(np.uint64), np.dtype(np.float64), np.dtype(np.complex128)}
)
_narrow_warned = False


def _check_width(arrays: list[np.ndarray]) -> None:
    global _narrow_warned
    if _narrow_warned or jax.config.read("jax_enable_x64"):
        return
    wide = sorted({str(a.dtype) for a in arrays if a.dtype in _WIDE})
    if wide:
        _narrow_warned = True
        warnings.warn(
            f"to_jax: {', '.join(wide)} arrays become 32-bit, as jax's x64 mode is off "
            "(jax.config.update('jax_enable_x64', True) keeps 64 bits)",
            RuntimeWarning,
            stacklevel=2,
        )


def _arrays(dp: Any, found: list[np.ndarray]) -> None:
    if isinstance(dp, np.ndarray):
        found.append(dp)
    elif isinstance(dp, dict):
        for v in dp.values():
            _arrays(v, found)
    elif isinstance(dp, (list, tuple)):
        for v in dp:
            _arrays(v, found)


def _put(dp: Any, sharding: Any) -> Any:
    found: list[np.ndarray] = []
    _arrays(dp, found)
    _check_width(found)
    leaves, tree = jax.tree_util.tree_flatten(dp)
    placed = [
        jax.device_put(leaf, sharding)
        if isinstance(leaf, np.ndarray) and leaf.dtype.kind in "biufc"
        else leaf
        for leaf in leaves
    ]
    return jax.tree_util.tree_unflatten(tree, placed)


def to_jax(ds: DataFlow, *, prefetch: int = 2, sharding: Any = None) -> Iterator:
    """Iterate ``ds`` with its numpy arrays placed on a device as ``jax.Array``.

    A background thread reads the flow and calls ``jax.device_put`` (onto ``sharding``, a
    ``jax.sharding.Sharding``, when given; else the default device) at most ``prefetch`` datapoints
    ahead of the consumer. Lists, tuples and dicts keep their shape; scalars and non-numeric arrays
    are left as they are. With jax's x64 mode off, int64/float64 arrays become 32-bit (a warning
    says so, once). Each call makes one pass of ``ds``; closing the iterator stops the thread.
    """
    flow = check_dataflow(ds, "to_jax")
    if isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 1:
        raise DataFlowArgumentError(f"to_jax: prefetch must be an int >= 1, got {prefetch!r}")
    return _prefetch(iter(flow), lambda dp: _put(dp, sharding), prefetch, "dataflow-to-jax")

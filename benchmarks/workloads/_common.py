"""Pieces the workload modules share."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class Built:
    """A pipeline ready to run.

    ``epoch()`` starts one pass and returns its iterator of batches; it is called once per pass.
    ``close()`` (optional) tears the pipeline down. ``iid`` marks a mode whose semantics are i.i.d.
    sampling (each worker replays its own copy of the source, so a pass may duplicate or miss
    datapoints): the correctness guard then reports the count and checksum without requiring them
    to match, and the report flags the row.
    """

    epoch: Callable[[], Iterator[Any]]
    close: Callable[[], None] | None = None
    iid: bool = False


def as_numpy(component: Any) -> np.ndarray:
    """A batch component (numpy array, torch tensor, list) as a numpy array (torch not imported)."""
    if hasattr(component, "numpy") and not isinstance(component, np.ndarray):
        return component.numpy()
    return np.asarray(component)

"""PyTorch: a flow as a ``torch.utils.data.IterableDataset`` (``pip install 'pydataflow[torch]'``).

Use it as ``DataLoader(to_torch(ds), batch_size=None, num_workers=0)``: the pipeline batches and
runs its own workers (MultiProcessMapData, runners), so the DataLoader only hands the datapoints on.
``num_workers>0`` adds a second layer of processes and a copy of every batch through torch's
queues for nothing; if it is set anyway, each DataLoader worker iterates its own copy of the flow
and keeps every ``num_workers``-th datapoint starting at its id (reading and skipping the others),
so that no datapoint arrives twice.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from ..base import DataFlow, check_dataflow
from ..errors import DataFlowArgumentError, StateError
from ._prefetch import prefetch as _prefetch

__all__ = ["to_torch", "TorchAdapter", "as_tensors"]

# numpy dtypes torch.from_numpy accepts (kinds: bool, signed, unsigned, float, complex)
_TENSOR_KINDS = frozenset("biufc")
_pin_warned = False


def as_tensors(dp: Any) -> Any:
    """``dp`` with each numpy array turned into a tensor that shares its memory (``from_numpy``).

    Lists, tuples and dicts keep their shape; anything else (Python and numpy scalars, strings,
    arrays of strings or objects, which torch has no tensor for) is left as it is.
    """
    if isinstance(dp, np.ndarray):
        return torch.from_numpy(dp) if dp.dtype.kind in _TENSOR_KINDS else dp
    if isinstance(dp, dict):
        return {k: as_tensors(v) for k, v in dp.items()}
    if isinstance(dp, list):
        return [as_tensors(v) for v in dp]
    if isinstance(dp, tuple):
        return tuple(as_tensors(v) for v in dp)
    return dp


def _to_device(dp: Any, device: torch.device, pin: bool) -> Any:
    if isinstance(dp, torch.Tensor):
        if pin:
            dp = dp.pin_memory()
        return dp.to(device, non_blocking=pin)
    if isinstance(dp, dict):
        return {k: _to_device(v, device, pin) for k, v in dp.items()}
    if isinstance(dp, list):
        return [_to_device(v, device, pin) for v in dp]
    if isinstance(dp, tuple):
        return tuple(_to_device(v, device, pin) for v in dp)
    return dp


class TorchAdapter(IterableDataset):
    """The ``IterableDataset`` :func:`to_torch` returns; see there."""

    def __init__(self, ds: DataFlow, device: Any, pin_memory: bool, prefetch: int) -> None:
        super().__init__()
        self.ds = check_dataflow(ds, "to_torch")
        if isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 1:
            raise DataFlowArgumentError(f"to_torch: prefetch must be an int >= 1, got {prefetch!r}")
        self.device = None if device is None else torch.device(device)
        self.prefetch = prefetch
        self.pin_memory = bool(pin_memory)
        self._prefetching = False

    def __len__(self) -> int:
        return len(self.ds)

    def _pin(self) -> bool:
        global _pin_warned
        if not self.pin_memory:
            return False
        if self.device is not None and self.device.type != "cpu" and torch.cuda.is_available():
            return True
        if not _pin_warned:
            _pin_warned = True
            warnings.warn(
                "to_torch: pin_memory=True needs a CUDA device; none is in use here, so batches "
                "are not pinned",
                RuntimeWarning,
                stacklevel=3,
            )
        return False

    def __iter__(self) -> Iterator:
        items: Iterator = iter(self.ds)
        info = get_worker_info()
        if info is not None and info.num_workers > 1:
            items = itertools.islice(items, info.id, None, info.num_workers)
        pin = self._pin()
        if self.device is None:
            return map(as_tensors, items)
        device = self.device
        return self._prefetched(items, lambda dp: _to_device(as_tensors(dp), device, pin))

    def _prefetched(self, items: Iterator, transform: Any) -> Iterator:
        self._prefetching = True
        try:
            yield from _prefetch(items, transform, self.prefetch, "dataflow-to-torch")
        finally:
            self._prefetching = False

    # -- resume: the flow's own state (StatefulDataLoader calls these) --------------------------
    def state_dict(self) -> dict:
        """The flow's :meth:`~dataflow.DataFlow.state_dict`: the position after the last datapoint
        handed out. Not available while a ``device=`` prefetch thread runs ahead of the consumer
        (the flow stands ``prefetch`` datapoints further than what was handed out)."""
        if self._prefetching:
            raise StateError(
                "to_torch: state_dict() during a pass with device= prefetching is not exact (the "
                "flow is read ahead); save with device=None and move batches in the training loop"
            )
        return self.ds.state_dict()

    def load_state_dict(self, state: dict) -> None:
        """Hand ``state`` to the flow: the next pass continues from there."""
        self.ds.load_state_dict(state)

    def close(self) -> None:
        """Close the flow (its workers, files and shared memory)."""
        self.ds.close()

    def __enter__(self) -> TorchAdapter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def to_torch(
    ds: DataFlow, *, device: Any = None, pin_memory: bool = False, prefetch: int = 2
) -> TorchAdapter:
    """Wrap ``ds`` as a ``torch.utils.data.IterableDataset``.

    Each item is one datapoint of ``ds`` (usually a batch), its numpy arrays turned into tensors
    that share their memory (:func:`as_tensors`: no copy; lists, tuples and dicts kept; scalars
    left as they are, which ``DataLoader(batch_size=None)`` then turns into 0-d tensors). Order,
    len and exactly-once are those of ``ds``.

    Args:
        ds: the flow.
        device: when given (``"cuda:0"``, ``"cpu"``), a background thread moves each datapoint's
            tensors there, ``prefetch`` datapoints ahead of the consumer.
        pin_memory: pin the tensors before an accelerator transfer (asynchronous copies). Without
            a CUDA device it warns once and goes on unpinned.
        prefetch: how many datapoints the device thread keeps ready (>= 1).

    ``state_dict()``/``load_state_dict()`` are the flow's, so that torchdata's
    ``StatefulDataLoader(to_torch(ds), batch_size=None)`` checkpoints and resumes exactly.
    ``close()`` closes the flow.
    """
    return TorchAdapter(ds, device, pin_memory, prefetch)

"""Batching: group consecutive datapoints into one datapoint of stacked components.

BatchData batches in arrival order; BatchDataByShape first groups datapoints by the shape of one
component. The stacking rules themselves live in ``dataflow._batching``, which the parallel maps
share.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Sequence
from itertools import islice
from typing import Any

from .. import _state
from .._batching import aggregate_batch
from ..base import DataFlow, ProxyDataFlow
from ..errors import DatapointError
from ._shared import _bad_component, _check_int, logger

__all__ = ["BatchData", "BatchDataByShape"]


class BatchData(ProxyDataFlow):
    """Group consecutive datapoints into batches.

    In: datapoints that are lists (or tuples) with the same number of components, or dicts with the
    same keys. Out: one datapoint per ``batch_size`` inputs, of the same structure (a list for
    list/tuple inputs, a dict for dict inputs), whose every component stacks that component of the
    inputs along a new first axis:

    - numpy arrays: ``np.stack``, shape ``(batch_size, *shape)``, dtype kept (numpy's promotion if
      one batch mixes dtypes);
    - Python ``int`` -> ``int64``, ``bool`` -> ``bool``, ``float`` -> ``float64``, numpy scalars
      keep their dtype (tensorpack made ints int32 and floats float32);
    - ``str``, ``bytes`` and any other object -> a Python ``list`` of the values (tensorpack made
      strings a numpy unicode array and raised on other objects).

    With ``use_list=True`` every component is a plain list instead. Arrays of different shapes in
    one component raise :class:`~dataflow.errors.BatchError` naming the component and the shapes
    seen (tensorpack logged and opened a debugger); a mix of numbers and non-numbers raises too.

    ``len``: ``len(ds) // batch_size``, plus one if ``remainder`` and there is a partial batch.
    With ``remainder=False`` and ``batch_size > len(ds)`` that is 0 and a pass yields nothing
    (tensorpack refused this at construction; we log a warning). An upstream of unknown or
    infinite length is fine (``len`` then raises :class:`~dataflow.errors.LengthUnknownError`).

    End of pass: with ``remainder=False`` the last ``len(ds) % batch_size`` datapoints of the pass
    are dropped; every pass starts a fresh batch. The batch list is built anew for each batch, so
    consumers may keep batches.

    Directly on a :class:`~dataflow.MultiProcessMapData` with unordered output (its default),
    the batches are stacked in the map's worker processes, as
    :class:`~dataflow.MultiProcessMapAndBatchData` does, which spares the consumer the stacking
    and one hand-over per datapoint. The result is one that batching the map's output here
    could give: a batch holds datapoints in the order some worker finished them; with
    ``strict=True`` each pass is the same multiset, batched; errors are the same ones (a batch
    that does not stack raises BatchError here). With ``strict=False`` this happens only without
    ``remainder``, and the ``len(ds) % batch_size`` datapoints at the end of a pass are not
    dropped but start the next one (a non-strict map's stream goes on across passes). The map
    then keeps ``2 * num_proc * batch_size`` datapoints in flight if its ``buffer_size`` is
    smaller (a worker needs a full batch's worth to hand one over), and yields batches: iterate
    the BatchData, not the map (an error says so). Resume states are the same either way. An
    ordered map, a thread map, or a map reset on its own before this BatchData is batched here.
    """

    def __init__(
        self, ds: DataFlow, batch_size: int, remainder: bool = False, use_list: bool = False
    ) -> None:
        """
        Args:
            ds: a flow of list/tuple or dict datapoints.
            batch_size: datapoints per batch, >= 1.
            remainder: also yield the last, smaller batch of a pass.
            use_list: make every component a list of values instead of an array.
        """
        who = type(self).__name__
        super().__init__(ds)
        self.batch_size = _check_int(batch_size, who, "batch_size", 1)
        self.remainder = bool(remainder)
        self.use_list = bool(use_list)
        if not self.remainder:
            try:
                n = len(ds)
            except NotImplementedError:
                n = None
            if n is not None and self.batch_size > n:
                logger.warning(
                    "%s: batch_size=%d is larger than len(ds)=%d and remainder=False: "
                    "every pass yields nothing",
                    who,
                    self.batch_size,
                    n,
                )

    def reset_state(self) -> None:
        # Hand the batching to a parallel map directly below, where it can batch in its workers
        # with the same result (the map decides: _ParallelMap._take_batching).
        take = getattr(self.ds, "_take_batching", None) if type(self) is BatchData else None
        self._fused = bool(
            take is not None and take(self.batch_size, self.remainder, self.use_list)
        )
        super().reset_state()

    def __len__(self) -> int:
        n = len(self.ds)
        batches, rest = divmod(n, self.batch_size)
        return batches + (1 if rest and self.remainder else 0)

    def __iter__(self) -> Iterator:
        if self.__dict__.get("_fused"):
            # The map's pass is for this BatchData: it yields batches.
            self.ds.__dict__["_df_fused_pass"] = True
            yield from self.ds
            return
        size = self.batch_size
        use_list = self.use_list
        who = type(self).__name__
        it = iter(self.ds)
        while True:
            holder = list(islice(it, size))
            if len(holder) < size:
                if holder and self.remainder:
                    yield aggregate_batch(holder, use_list, who)
                return
            yield aggregate_batch(holder, use_list, who)

    @staticmethod
    def aggregate_batch(data_holder: Sequence[Any], use_list: bool = False) -> Any:
        """Batch a sequence of datapoints into one datapoint (the rules of the class docstring).

        Args:
            data_holder: list/tuple or dict datapoints with one structure.
            use_list: keep each component a list instead of stacking it.
        """
        return aggregate_batch(data_holder, use_list)

    _df_save = _state.no_own_state  # a batch is yielded as soon as it is read: nothing held


class BatchDataByShape(BatchData):
    """Batch datapoints whose component ``idx`` has the same shape.

    In: list or dict datapoints whose ``dp[idx]`` is a numpy array (the other components must batch
    as in :class:`BatchData`). Out: batches of ``batch_size`` datapoints that share
    ``dp[idx].shape``, in the order the batches fill up.

    Datapoints wait in one group per shape until their group is full. Groups are kept across
    passes (so a rare shape is eventually produced instead of being lost every pass); datapoints of
    a shape that never reaches ``batch_size`` are never produced. Because of that shared state the
    flow is not reentrant.

    ``len`` is ``len(ds) // batch_size`` as in tensorpack: exact when every datapoint has one shape,
    otherwise an estimate (a pass may yield fewer batches while groups fill, or more when it
    completes groups left over from the previous pass).
    """

    reentrant = False

    def __init__(self, ds: DataFlow, batch_size: int, idx: Hashable) -> None:
        """
        Args:
            ds: the input flow.
            batch_size: datapoints per batch, >= 1.
            idx: index or key of the component whose ``.shape`` groups datapoints.
        """
        super().__init__(ds, batch_size, remainder=False)
        self.idx = idx
        self.holder: dict[tuple, list] = {}

    def reset_state(self) -> None:
        super().reset_state()
        self.holder = {}

    # Its partial groups carry over from pass to pass; they go into the state as they are (at
    # most batch_size - 1 datapoints a shape, encoded with the codec).
    def _df_carries_over(self) -> bool:
        return True

    def _df_save(self) -> dict:
        who = type(self).__name__
        return {
            "groups": [
                [list(shape), [_state.pack(dp, who) for dp in group]]
                for shape, group in self.holder.items()
            ]
        }

    def _df_load(self, state: dict) -> None:
        self.holder = {
            tuple(shape): [_state.unpack(dp) for dp in group] for shape, group in state["groups"]
        }

    def __iter__(self) -> Iterator:
        idx: Any = self.idx
        size = self.batch_size
        groups = self.holder
        who = type(self).__name__
        for dp in self.ds:
            try:
                shape = dp[idx].shape
            except (IndexError, KeyError, TypeError, AttributeError) as e:
                if isinstance(e, AttributeError) and isinstance(dp, (list, tuple, dict)):
                    raise DatapointError(
                        f"{who}: component {idx!r} must be a numpy array to group by its shape, "
                        f"got {type(dp[idx]).__name__}"
                    ) from None
                raise _bad_component(who, dp, idx, e) from None
            group = groups.get(shape)
            if group is None:
                group = groups[shape] = []
            group.append(dp)
            if len(group) == size:
                del groups[shape]
                yield aggregate_batch(group, False, who)

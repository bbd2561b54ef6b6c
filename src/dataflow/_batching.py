"""Stacking datapoints into batches: the private engine behind BatchData and friends.

Kept apart from ``dataflow.common`` so that the parallel maps (which batch in their workers) share
the exact same rules. The strategy for each component is decided once per batch, from the value
the first datapoint holds there:

=================================================  =================================================
first value                                        batched component
=================================================  =================================================
``numpy.ndarray``                                  stacked: shape ``(n, *shape)``, dtype kept
                                                   (numpy promotion if the batch mixes dtypes)
Python ``int``                                     ``int64`` array (``float64`` with floats)
Python ``bool``                                    ``bool`` array
Python ``float``                                   ``float64`` array
Python ``complex``                                 ``complex128`` array
numpy scalar (``np.float32(1)``, ``np.uint8``...)  array of that dtype
anything else (``str``, ``bytes``, ``None``,       a Python ``list`` of the values, untouched
lists, dicts, other objects)
=================================================  =================================================

Numbers are converted by numpy's own type discovery, never by a forced dtype, so a value that does
not fit (a float among ints, a string among numbers) is promoted or reported, never truncated or
parsed silently.
"""

from __future__ import annotations

import sys
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

from .errors import BatchError, DatapointError

__all__ = ["aggregate_batch", "stack_component", "Stacker"]

# Types whose batch becomes a numeric array. ``np.bool_`` is not a ``np.number``.
_NUMBER_TYPES = (bool, int, float, complex, np.number, np.bool_)
_NUMERIC_KINDS = frozenset("biufc")


def _label(key: Hashable) -> str:
    return f"component {key!r}" if not isinstance(key, int) else f"component {key}"


def _describe(values: Sequence[Any], describe_one) -> str:
    """Group batch positions by ``describe_one(value)``: '(3,) x2 (first at batch position 0)'."""
    seen: dict[str, list[int]] = {}
    for pos, value in enumerate(values):
        entry = seen.setdefault(describe_one(value), [0, pos])
        entry[0] += 1
    return ", ".join(
        f"{what} x{count} (first at batch position {first})"
        for what, (count, first) in seen.items()
    )


def _shape_of(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"{value.shape} {value.dtype}"
    return type(value).__name__


def _ragged_error(
    values: Sequence[Any], key: Hashable, who: str, cause: BaseException
) -> BatchError:
    return BatchError(
        f"{who}: cannot stack {_label(key)} of a batch of {len(values)} datapoints into one array: "
        f"shapes seen: {_describe(values, _shape_of)}. Make the shapes equal (pad, crop, resize), "
        "group by shape with BatchDataByShape, or pass use_list=True to keep a list. "
        f"(numpy said: {cause})"
    )


def _mixed_error(values: Sequence[Any], key: Hashable, who: str, detail: str) -> BatchError:
    return BatchError(
        f"{who}: cannot stack {_label(key)} of a batch of {len(values)} datapoints into a numeric "
        f"array ({detail}): types seen: {_describe(values, lambda v: type(v).__name__)}. "
        "Pass use_list=True to keep a list."
    )


_STACK_MIN_SIZE = 1024  # elements; measured crossover of np.array vs np.stack for 64 arrays


def stack_component(values: Sequence[Any], key: Hashable = 0, who: str = "BatchData") -> Any:
    """Batch the values one component takes across a batch (see the module docstring).

    ``key`` (the component's index or dict key) and ``who`` only name the component in errors.
    Raises :class:`BatchError` on ragged arrays or on numbers mixed with other things.
    """
    first = values[0]
    if isinstance(first, np.ndarray):
        try:
            # Small arrays: np.array stacks the list in C with little per-call overhead. Large
            # ones: np.stack (one concatenate) copies ~2x faster than np.array's element walk.
            # Object arrays always go through np.stack so numpy does not descend into them.
            if first.dtype.hasobject or first.size >= _STACK_MIN_SIZE:
                return np.stack(values)
            arr = np.array(values)
        except (ValueError, TypeError) as e:
            raise _ragged_error(values, key, who, e) from None
        if arr.shape[1:] != first.shape:  # e.g. a nested list among the arrays
            raise _ragged_error(values, key, who, ValueError(f"got shape {arr.shape}"))
        return arr
    if isinstance(first, _NUMBER_TYPES):
        try:
            arr = np.array(values)
        except (ValueError, TypeError) as e:  # e.g. an array among scalars
            raise _ragged_error(values, key, who, e) from None
        kind = arr.dtype.kind
        if kind not in _NUMERIC_KINDS:
            detail = (
                "numpy could only make an object array (an int too large for int64, or None?)"
                if kind == "O"
                else f"numpy made it {arr.dtype}"
            )
            raise _mixed_error(values, key, who, detail)
        if kind == "i" and arr.dtype.itemsize < 8 and type(first) is int:
            arr = arr.astype(np.int64)  # numpy < 2 on Windows makes Python ints int32
        return arr
    if isinstance(first, np.generic):  # np.str_, np.bytes_, np.datetime64, ...: keep numpy's dtype
        return np.array(values)
    return list(values)


def _component_count_error(holder: Sequence[Any], who: str) -> DatapointError:
    n = len(holder[0])
    for pos, dp in enumerate(holder):
        if not isinstance(dp, (list, tuple)):
            return DatapointError(
                f"{who}: the datapoint at batch position {pos} is a {type(dp).__name__}, but the "
                "first datapoint of the batch is a list/tuple; all must have one structure"
            )
        if len(dp) != n:
            return DatapointError(
                f"{who}: the datapoint at batch position {pos} has {len(dp)} components, but the "
                f"first datapoint of the batch has {n}; every datapoint must have the same count"
            )
    return DatapointError(f"{who}: datapoints of the batch have different numbers of components")


def aggregate_batch(holder: Sequence[Any], use_list: bool = False, who: str = "BatchData") -> Any:
    """Turn a sequence of datapoints into one batched datapoint.

    Lists and tuples give a list whose component ``k`` batches every datapoint's component ``k``;
    dicts give a dict batched per key (the keys of the first datapoint; every datapoint must have
    exactly those keys). With ``use_list`` every component is a plain list of the values.
    Raises :class:`DatapointError` for datapoints that are not lists/tuples/dicts or do not share a
    structure, :class:`BatchError` for values that cannot be stacked.
    """
    first = holder[0]
    if isinstance(first, (list, tuple)):
        try:
            columns = list(zip(*holder, strict=True))
        except (ValueError, TypeError):
            raise _component_count_error(holder, who) from None
        if not columns:  # datapoints with no components
            return []
        if use_list:
            return [list(column) for column in columns]
        return [stack_component(column, k, who) for k, column in enumerate(columns)]
    if isinstance(first, dict):
        n_keys = len(first)
        result = {}
        for key in first:
            try:
                values = [dp[key] for dp in holder]
            except (KeyError, TypeError, IndexError):
                raise _missing_key_error(holder, key, who) from None
            result[key] = values if use_list else stack_component(values, key, who)
        for pos, dp in enumerate(holder):
            if len(dp) != n_keys:
                extra = sorted(map(repr, set(dp) - set(first)))
                raise DatapointError(
                    f"{who}: the datapoint at batch position {pos} has keys the first datapoint of "
                    f"the batch lacks: {', '.join(extra)}; every datapoint must have the same keys"
                )
        return result
    raise DatapointError(
        f"{who}: a datapoint must be a list, tuple or dict to be batched, got "
        f"{type(first).__name__}: {_short_repr(first)}"
    )


def _missing_key_error(holder: Sequence[Any], key: Hashable, who: str) -> DatapointError:
    for pos, dp in enumerate(holder):
        if not isinstance(dp, dict):
            return DatapointError(
                f"{who}: the datapoint at batch position {pos} is a {type(dp).__name__}, but the "
                "first datapoint of the batch is a dict; all must have one structure"
            )
        if key not in dp:
            return DatapointError(
                f"{who}: the datapoint at batch position {pos} has no key {key!r} (it has "
                f"{', '.join(map(repr, dp))}); every datapoint must have the same keys"
            )
    return DatapointError(f"{who}: cannot read key {key!r} from every datapoint of the batch")


def _short_repr(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters, for error messages (also dataflow.common's)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# Batch arrays a Stacker made in this process, reused once nothing else refers to them (a worker
# process's batch is copied into its ring and dropped, so the next batch fills the same memory
# instead of a fresh block: one batch's worth of heap per worker, not one per batch in flight).
# A batch still held anywhere (a thread pool's consumer, a view of a row, a message not yet
# written) keeps its references and is never reused.
_SPARE_ARRAYS: list[np.ndarray] = []
_MAX_SPARES = 4
_FREE_REFS: int | None = None  # what _refs_at counts for an array only the list holds


def _refs_at(arrays: list[np.ndarray], i: int) -> int:
    return sys.getrefcount(arrays[i])


def _batch_array(shape: tuple, dtype: Any) -> np.ndarray:
    global _FREE_REFS
    if _FREE_REFS is None:  # measured, not assumed: the count differs between interpreters
        _FREE_REFS = _refs_at([np.empty(0)], 0)
    spares = _SPARE_ARRAYS
    for i in range(len(spares)):
        arr = spares[i]
        if arr.shape == shape and arr.dtype == dtype:
            del arr
            if _refs_at(spares, i) <= _FREE_REFS:
                return spares[i]
    arr = np.empty(shape, dtype)
    spares.append(arr)
    if len(spares) > _MAX_SPARES:
        del spares[0]
    return arr


class Stacker:
    """Build one batch a datapoint at a time, as ``aggregate_batch`` would build it at the end.

    For the workers that batch (dataflow._engine.map_job): a large array component is copied into
    its row of the batch as each datapoint arrives, so the mapped datapoint can be freed at once
    and a worker holds one batch's worth of memory, not the datapoints and then the batch. Only
    list/tuple datapoints whose array components keep the first datapoint's shape and dtype take
    this path; anything else (a dict, another shape or dtype, another component count) turns the
    rows back into datapoints (views of the rows: equal values, shapes and dtypes) and the batch
    is made by ``aggregate_batch`` at the end, so the result and its errors are always the ones
    ``aggregate_batch`` gives for the same datapoints.
    """

    __slots__ = ("size", "use_list", "who", "_bufs", "_cols", "_n", "_dps")

    def __init__(self, size: int, use_list: bool = False, who: str = "BatchData") -> None:
        self.size = size
        self.use_list = use_list
        self.who = who
        self._bufs: list[Any] = []  # per component: a preallocated (size, *shape) array or None
        self._cols: list[list[Any]] = []  # per component not preallocated: its values
        self._n = 0
        self._dps: list[Any] | None = None  # the plain path: the datapoints themselves

    def __len__(self) -> int:
        return self._n

    def add(self, dp: Any) -> None:
        if self._dps is not None:
            self._dps.append(dp)
        elif self._n == 0:
            self._start(dp)
        elif not self._fits(dp):
            self._dps = self.datapoints()
            self._dps.append(dp)
        else:
            n = self._n
            for k, (buf, value) in enumerate(zip(self._bufs, dp)):
                if buf is None:
                    self._cols[k].append(value)
                else:
                    buf[n] = value
        self._n += 1

    def _start(self, dp: Any) -> None:
        if self.use_list or type(dp) not in (list, tuple) or not dp:
            self._dps = [dp]
            return
        bufs: list[Any] = []
        for value in dp:
            if (
                type(value) is np.ndarray
                and not value.dtype.hasobject
                and value.size >= _STACK_MIN_SIZE
            ):
                buf = _batch_array((self.size, *value.shape), value.dtype)
                buf[0] = value
                bufs.append(buf)
            else:
                bufs.append(None)
        if all(buf is None for buf in bufs):
            self._dps = [dp]  # nothing large to stack early
            return
        self._bufs = bufs
        self._cols = [[value] if buf is None else [] for buf, value in zip(bufs, dp)]

    def _fits(self, dp: Any) -> bool:
        if type(dp) not in (list, tuple) or len(dp) != len(self._bufs):
            return False
        for buf, value in zip(self._bufs, dp):
            if buf is not None and (
                type(value) is not np.ndarray
                or value.shape != buf.shape[1:]
                or value.dtype != buf.dtype
            ):
                return False
        return True

    def datapoints(self) -> list[Any]:
        """The datapoints added so far (rows of the preallocated arrays as views)."""
        if self._dps is not None:
            return list(self._dps)
        return [
            [self._cols[k][i] if buf is None else buf[i] for k, buf in enumerate(self._bufs)]
            for i in range(self._n)
        ]

    def batch(self) -> Any:
        """The batch of what was added (``aggregate_batch``'s result; its errors too)."""
        if self._dps is not None or self._n < self.size:
            return aggregate_batch(self.datapoints(), self.use_list, self.who)
        return [
            stack_component(self._cols[k], k, self.who) if buf is None else buf
            for k, buf in enumerate(self._bufs)
        ]

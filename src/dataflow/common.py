"""Single-process combinators: map, batch, repeat, mix, join, shuffle locally, cache, inspect.

Every class here is a drop-in for the one of the same name in ``tensorpack.dataflow.common``: same
signature, defaults and documented behaviour, except where tensorpack had a defect (each docstring
says what differs). All of them run in the calling process and thread; put them inside a runner or a
parallel map to use more cores.

A datapoint is a list (tuples accepted) of components, or a dict. Upstream flows are validated
when a combinator is built; a datapoint with the wrong structure raises
:class:`~dataflow.errors.DatapointError` naming the component, a batch that cannot be stacked
raises :class:`~dataflow.errors.BatchError`.
"""

from __future__ import annotations

import logging
import math
import numbers
import sys
import time
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from copy import copy
from itertools import chain, islice
from typing import Any

import numpy as np
import tqdm

from ._batching import aggregate_batch
from .base import DataFlow, ProxyDataFlow, RNGDataFlow, check_dataflow
from .errors import DataFlowArgumentError, DataFlowError, DatapointError, LengthUnknownError

__all__ = [
    "TestDataSpeed",
    "PrintData",
    "BatchData",
    "BatchDataByShape",
    "FixedSizeData",
    "MapData",
    "MapDataComponent",
    "RepeatedData",
    "RepeatedDataPoint",
    "RandomChooseData",
    "RandomMixData",
    "JoinData",
    "ConcatData",
    "SelectComponent",
    "LocallyShuffleData",
    "CacheData",
]

logger = logging.getLogger(__name__)

_END = object()  # sentinel for next(it, _END)


# -- argument checks ---------------------------------------------------------------------------
def _check_int(value: object, who: str, arg: str, minimum: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise DataFlowArgumentError(f"{who}: {arg} must be an int, got {value!r}")
    value = int(value)
    if value < minimum:
        raise DataFlowArgumentError(f"{who}: {arg} must be >= {minimum}, got {value}")
    return value


def _check_flows(df_lists: object, who: str) -> list[DataFlow]:
    if isinstance(df_lists, DataFlow) or not isinstance(df_lists, (list, tuple)):
        raise DataFlowArgumentError(
            f"{who}: df_lists must be a list of DataFlow, got {type(df_lists).__name__}"
        )
    if not df_lists:
        raise DataFlowArgumentError(f"{who}: df_lists must contain at least one DataFlow")
    return [check_dataflow(d, who, f"df_lists[{i}]") for i, d in enumerate(df_lists)]


def _close_all(iterators: Iterable[Iterator]) -> None:
    for it in iterators:
        close = getattr(it, "close", None)
        if close is not None:
            close()


def _short_repr(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _not_a_datapoint(who: str, dp: Any) -> DatapointError:
    return DatapointError(
        f"{who}: a datapoint must be a list, tuple or dict, got {type(dp).__name__}: "
        f"{_short_repr(dp)}"
    )


def _bad_component(who: str, dp: Any, index: Hashable, cause: BaseException) -> DatapointError:
    if isinstance(dp, dict):
        detail = f"the datapoint has keys {', '.join(map(repr, dp)) or '(none)'}"
        what = f"key {index!r}"
    elif isinstance(dp, (list, tuple)):
        detail = f"the datapoint has {len(dp)} components"
        what = f"index {index!r}"
    else:
        return _not_a_datapoint(who, dp)
    return DatapointError(f"{who}: cannot read component {what}: {detail} ({cause!r})")


# -- measuring and inspecting --------------------------------------------------------------------
class TestDataSpeed(ProxyDataFlow):
    """Measure how fast a flow produces datapoints, with a progress bar.

    ``TestDataSpeed(ds).start()`` takes ``warmup`` datapoints untimed, then ``size`` datapoints
    under a tqdm progress bar (on stderr), logs the rate and returns it in datapoints per second.
    Iterating the flow itself first runs that test (as a separate pass of ``ds``), then yields
    ``ds``'s datapoints unchanged; ``len`` is ``len(ds)``.

    If ``ds`` ends before ``warmup + size`` datapoints, the test stops there and the rate covers
    what was timed. The pass used by the test is closed afterwards, so a non-reentrant upstream can
    be iterated again.
    """

    __test__ = False  # not a pytest test class, despite the name

    def __init__(self, ds: DataFlow, size: int = 5000, warmup: int = 0) -> None:
        """
        Args:
            ds: the flow to measure.
            size: how many datapoints to time.
            warmup: how many datapoints to take before the clock starts.
        """
        super().__init__(ds)
        self.test_size = _check_int(size, "TestDataSpeed", "size", 1)
        self.warmup = _check_int(warmup, "TestDataSpeed", "warmup", 0)
        self.rate: float | None = None  # datapoints/s measured by the last start()
        self.timed = 0  # how many datapoints the last start() timed

    def __iter__(self) -> Iterator:
        self.start()
        yield from self.ds

    def start(self) -> float:
        """Run the test now; return (and log) the rate in datapoints per second."""
        self.ds.reset_state()  # a no-op when already reset in this process
        itr = iter(self.ds)
        timed = 0
        try:
            if self.warmup:
                for _ in tqdm.trange(self.warmup, desc="TestDataSpeed warmup", leave=False):
                    if next(itr, _END) is _END:
                        break
            start = time.perf_counter()
            # The bar is refreshed at most every 0.1 s: tqdm's update() per datapoint costs about
            # 2 us, which would dominate the measurement of a fast flow.
            clock = time.perf_counter
            with tqdm.tqdm(total=self.test_size, desc="TestDataSpeed", smoothing=0.2) as bar:
                shown, next_refresh = 0, start + 0.1
                for _ in islice(itr, self.test_size):
                    timed += 1
                    if clock() >= next_refresh:
                        bar.update(timed - shown)
                        shown, next_refresh = timed, clock() + 0.1
                bar.update(timed - shown)
            elapsed = time.perf_counter() - start
        finally:
            _close_all([itr])
        self.timed = timed
        self.rate = timed / elapsed if elapsed > 0 else float("inf")
        logger.info(
            "TestDataSpeed: %d datapoints in %.3f s: %.1f datapoints/s", timed, elapsed, self.rate
        )
        if timed < self.test_size:
            logger.info(
                "TestDataSpeed: the flow ended after %d of %d datapoints", timed, self.test_size
            )
        return self.rate

    start_test = start  # the old name, still called by tensorpack's remote.py


class PrintData(ProxyDataFlow):
    """Pass datapoints through unchanged, describing the first ``num`` of them.

    For debugging a pipeline: put it anywhere, and the first ``num`` datapoints it sees (per
    process) are described one component per line: type, dtype, shape and value range of arrays,
    the value of scalars, nested lists/tuples/dicts up to ``max_depth`` levels and ``max_list``
    elements each. Example output::

        DataFlow contents (train): datapoint 0 of 2, a list of 2 components:
          0: ndarray float32 of shape (28, 28) in range [0, 0.99]
          1: int with value 7

    The description goes to the ``dataflow.common`` logger at INFO level when that logger would
    show it (INFO enabled and a handler configured); otherwise it is written to stderr, since
    showing it is this flow's whole purpose. ``len`` is ``len(ds)``; datapoints are not copied or changed.
    Works with numpy 2 (tensorpack's relies on the removed ``np.sctypes``).
    """

    def __init__(
        self,
        ds: DataFlow,
        num: int = 1,
        name: str | None = None,
        max_depth: int = 3,
        max_list: int = 3,
    ) -> None:
        """
        Args:
            ds: the flow to inspect.
            num: how many datapoints to describe.
            name: a label shown in the header, to tell several PrintData apart.
            max_depth: how deep to describe nested lists/tuples/dicts.
            max_list: how many elements of a nested list/tuple/dict to describe.
        """
        super().__init__(ds)
        self.num = _check_int(num, "PrintData", "num", 0)
        self.name = name
        self.max_depth = _check_int(max_depth, "PrintData", "max_depth", 0)
        self.max_list = _check_int(max_list, "PrintData", "max_list", 0)
        self.cnt = 0

    def reset_state(self) -> None:
        super().reset_state()
        self.cnt = 0

    def __iter__(self) -> Iterator:
        for dp in self.ds:
            if self.cnt < self.num:
                self._emit(self._get_msg(dp))
                self.cnt += 1
            yield dp

    def _emit(self, msg: str) -> None:
        if logger.isEnabledFor(logging.INFO) and logger.hasHandlers():
            logger.info("%s", msg)
        else:
            sys.stderr.write(msg + "\n")
            sys.stderr.flush()

    def _get_msg(self, dp: Any) -> str:
        label = f" ({self.name})" if self.name is not None else ""
        if isinstance(dp, dict):
            items: Iterable[tuple[Any, Any]] = dp.items()
            shape = f"a dict of {len(dp)} components"
        elif isinstance(dp, (list, tuple)):
            items = enumerate(dp)
            shape = f"a {type(dp).__name__} of {len(dp)} components"
        else:
            items = [("-", dp)]
            shape = f"not a list or dict but a {type(dp).__name__}"
        lines = [f"DataFlow contents{label}: datapoint {self.cnt} of {self.num}, {shape}:"]
        for key, value in items:
            self._describe(value, key, 1, lines)
        return "\n".join(lines)

    def _describe(self, el: Any, key: Any, depth: int, lines: list[str]) -> None:
        indent = "  " * depth
        kind = type(el).__name__
        if isinstance(el, np.ndarray):
            text = f"ndarray {el.dtype} of shape {el.shape}{_array_range(el)}"
        elif isinstance(el, (bool, int, float, complex, np.generic)):
            text = f"{kind} with value {el}"
        elif isinstance(el, (str, bytes)):
            text = f"{kind} of len {len(el)}: {_short_repr(el, 60)}"
        elif isinstance(el, (list, tuple, dict)):
            text = f"{kind} of len {len(el)}"
        else:
            text = kind
        lines.append(f"{indent}{key}: {text}")
        if isinstance(el, (list, tuple, dict)) and len(el):
            if depth >= self.max_depth:
                lines.append(f"{indent}  ...")
                return
            pairs = el.items() if isinstance(el, dict) else enumerate(el)
            for i, (sub_key, sub) in enumerate(pairs):
                if i >= self.max_list:
                    lines.append(f"{indent}  ...")
                    break
                self._describe(sub, sub_key, depth + 1, lines)


def _array_range(arr: np.ndarray) -> str:
    if arr.size == 0 or arr.dtype.kind not in "biuf":
        return ""
    try:
        return f" in range [{arr.min()}, {arr.max()}]"
    except (TypeError, ValueError):  # pragma: no cover - exotic dtypes
        return ""


# -- batching ------------------------------------------------------------------------------------
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

    def __len__(self) -> int:
        n = len(self.ds)
        batches, rest = divmod(n, self.batch_size)
        return batches + (1 if rest and self.remainder else 0)

    def __iter__(self) -> Iterator:
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


# -- size control ----------------------------------------------------------------------------------
class FixedSizeData(ProxyDataFlow):
    """Yield exactly ``size`` datapoints per pass, restarting ``ds`` whenever it ends.

    Out: the datapoints of ``ds`` unchanged; ``len`` is ``size``. With ``keep_state=True`` each
    pass continues where the previous one stopped in ``ds``; with ``keep_state=False`` every pass
    starts a fresh pass of ``ds``::

        ds yields:                    1 2 3 4 5 | 1 2 3 4 5 | ...
        FixedSizeData(ds, 3, True):   1 2 3 | 4 5 1 | 2 3 4 | ...
        FixedSizeData(ds, 3, False):  1 2 3 | 1 2 3 | ...
        FixedSizeData(ds, 6, False):  1 2 3 4 5 1 | 1 2 3 4 5 1 | ...

    Works with an infinite ``ds``. An empty ``ds`` cannot fill a pass: it raises
    :class:`~dataflow.errors.DataFlowError` (tensorpack raised a bare RuntimeError). The position in
    ``ds`` is shared between passes, so the flow is not reentrant; an abandoned pass leaves the
    position where it stopped.
    """

    reentrant = False

    def __init__(self, ds: DataFlow, size: int, keep_state: bool = True) -> None:
        """
        Args:
            ds: the input flow.
            size: datapoints per pass, >= 0.
            keep_state: continue in ``ds`` across passes instead of restarting it.
        """
        super().__init__(ds)
        self._size = _check_int(size, "FixedSizeData", "size", 0)
        self._keep = bool(keep_state)
        self.itr: Iterator | None = None

    def __len__(self) -> int:
        return self._size

    def reset_state(self) -> None:
        super().reset_state()
        self.itr = None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["itr"] = None  # a live generator cannot cross a process boundary
        return state

    def __iter__(self) -> Iterator:
        remaining = self._size
        if remaining == 0:
            return
        keep = self._keep
        itr = self.itr if keep else None
        fresh = itr is None
        if itr is None:
            itr = iter(self.ds)
            if keep:
                self.itr = itr
        while True:
            for dp in itr:
                fresh = False
                remaining -= 1
                if remaining == 0:
                    if not keep:
                        _close_all([itr])
                    yield dp
                    return
                yield dp
            if fresh:
                self.itr = None
                raise DataFlowError(
                    f"FixedSizeData: the upstream {type(self.ds).__name__} yielded no datapoints, "
                    f"so a pass of {self._size} cannot be filled"
                )
            itr = iter(self.ds)
            fresh = True
            if keep:
                self.itr = itr


class RepeatedData(ProxyDataFlow):
    """Run ``ds`` ``num`` times in a row (``num=-1``: forever) as one pass.

    Out: ``dp1 ... dpn, dp1 ... dpn, ...``; each repetition is a new pass of ``ds`` (a shuffling
    source reshuffles). ``len`` is ``len(ds) * num``; with ``num=-1`` it raises
    :class:`~dataflow.errors.LengthUnknownError` (a ``NotImplementedError``). ``num=0`` yields
    nothing.

    With ``num=-1`` and an upstream whose pass yields nothing, the pass ends instead of spinning
    forever (tensorpack hung). Reentrant when ``ds`` is.
    """

    def __init__(self, ds: DataFlow, num: int) -> None:
        """
        Args:
            ds: the input flow.
            num: how many times to repeat ``ds``; -1 for forever.
        """
        super().__init__(ds)
        self.num = _check_int(num, "RepeatedData", "num", -1)

    def __len__(self) -> int:
        if self.num == -1:
            raise LengthUnknownError("RepeatedData with num=-1 is infinite")
        return len(self.ds) * self.num

    def __iter__(self) -> Iterator:
        if self.num == -1:
            yield from _repeat_forever(self.ds)
        else:
            for _ in range(self.num):
                yield from self.ds


def _repeat_forever(ds: DataFlow) -> Iterator:
    """Pass after pass of ``ds``; stops after a pass that yields nothing (instead of spinning)."""
    while True:
        it = iter(ds)
        first = next(it, _END)
        if first is _END:
            logger.warning(
                "%s yielded no datapoints; stopping instead of repeating it forever",
                type(ds).__name__,
            )
            return
        yield first
        yield from it


class RepeatedDataPoint(ProxyDataFlow):
    """Yield each datapoint of ``ds`` ``num`` times in a row: ``dp1 x num, dp2 x num, ...``.

    The same object is yielded each time (no copy): a consumer that changes a datapoint in place
    changes its repeats. ``len`` is ``len(ds) * num``.
    """

    def __init__(self, ds: DataFlow, num: int) -> None:
        """
        Args:
            ds: the input flow.
            num: how many times to yield each datapoint, >= 1.
        """
        super().__init__(ds)
        self.num = _check_int(num, "RepeatedDataPoint", "num", 1)

    def __len__(self) -> int:
        return len(self.ds) * self.num

    def __iter__(self) -> Iterator:
        num = self.num
        if num == 1:
            yield from self.ds
            return
        for dp in self.ds:
            for _ in range(num):
                yield dp


# -- mapping ---------------------------------------------------------------------------------------
class MapData(ProxyDataFlow):
    """Apply ``func`` to every datapoint; drop it where ``func`` returns ``None``.

    In: any datapoint. ``func`` receives a shallow copy (a new list/dict holding the same
    components, as in tensorpack), so it may replace components (``dp[0] = ...; return dp``) without
    touching the upstream's data; changing a component *in place* (``dp[0] += 1`` on an array) does
    change the upstream's data. Out: whatever ``func`` returns, unless ``None``.

    ``len`` is ``len(ds)``, which is too large when ``func`` drops datapoints (as in tensorpack).
    Reentrant when ``ds`` is and ``func`` is safe to call from two iterators.

    Example::

        ds = MapData(ds, lambda dp: [dp[0] * 255, dp[1]])
    """

    def __init__(self, ds: DataFlow, func: Callable[[Any], Any]) -> None:
        """
        Args:
            ds: the input flow.
            func: datapoint -> datapoint, or ``None`` to drop it.
        """
        super().__init__(ds)
        if not callable(func):
            raise DataFlowArgumentError(
                f"{type(self).__name__}: func must be callable, got {type(func).__name__}"
            )
        self.func = func

    def __iter__(self) -> Iterator:
        func = self.func
        for dp in self.ds:
            # A shallow copy, as tensorpack's copy(dp) but without its per-call dispatch cost.
            kind = type(dp)
            if kind is list:
                dp = [*dp]
            elif kind is dict:
                dp = dp.copy()
            elif kind is not tuple:
                dp = copy(dp)
            ret = func(dp)
            if ret is not None:
                yield ret


class MapDataComponent(MapData):
    """Apply ``func`` to one component of every datapoint; drop the datapoint where it returns None.

    In: list/tuple or dict datapoints; ``index`` is the position or key of the component. Out: a
    new list (tuples become lists) or dict equal to the input except that
    ``dp[index] = func(dp[index])``; the input datapoint is not changed (but ``func`` must not
    change the component in place unless that is safe for the upstream).

    A datapoint that is not a list/tuple/dict, or lacks ``index``, raises
    :class:`~dataflow.errors.DatapointError` naming the index and what the datapoint has.
    ``len`` is ``len(ds)`` (too large when datapoints are dropped).

    Example::

        ds = MapDataComponent(ds, lambda img: img * 255, 0)  # map component 0
    """

    def __init__(self, ds: DataFlow, func: Callable[[Any], Any], index: Hashable = 0) -> None:
        """
        Args:
            ds: a flow of list/tuple or dict datapoints.
            func: component -> component, or ``None`` to drop the datapoint.
            index: index (int) or key of the component.
        """
        if not callable(func):
            raise DataFlowArgumentError(
                f"MapDataComponent: func must be callable, got {type(func).__name__}"
            )
        self._index = index
        self._func = func
        super().__init__(ds, self._mapper)

    def _mapper(self, dp: Any) -> Any:
        """Map one datapoint (also what ``self.func`` does, for code that calls it directly)."""
        index: Any = self._index
        if not isinstance(dp, (list, tuple, dict)):
            raise _not_a_datapoint("MapDataComponent", dp)
        try:
            value = dp[index]
        except (IndexError, KeyError, TypeError) as e:
            raise _bad_component("MapDataComponent", dp, index, e) from None
        ret = self._func(value)
        if ret is None:
            return None
        dp = list(dp) if isinstance(dp, tuple) else copy(dp)
        dp[index] = ret
        return dp

    def __iter__(self) -> Iterator:
        index = self._index
        func = self._func
        for dp in self.ds:
            kind = type(dp)
            try:
                value = dp[index]
            except (IndexError, KeyError, TypeError) as e:
                raise _bad_component("MapDataComponent", dp, index, e) from None
            if kind is list:
                ret = func(value)
                if ret is None:
                    continue
                dp = dp[:]
            elif kind is dict:
                ret = func(value)
                if ret is None:
                    continue
                dp = dp.copy()
            elif isinstance(dp, tuple):
                ret = func(value)
                if ret is None:
                    continue
                dp = list(dp)
            elif isinstance(dp, (list, dict)):
                ret = func(value)
                if ret is None:
                    continue
                dp = copy(dp)
            else:
                raise _not_a_datapoint("MapDataComponent", dp)
            dp[index] = ret
            yield dp


class SelectComponent(MapData):
    """Select and reorder components: out ``[dp[i] for i in idxs]``.

    In: list/tuple or dict datapoints. Out: always a list, one entry per element of ``idxs`` (an
    index or key may repeat). ``[c1, c2, c3]`` with ``idxs=[2, 1]`` gives ``[c3, c2]``. A missing
    index/key raises :class:`~dataflow.errors.DatapointError` naming it. ``len`` is ``len(ds)``.
    (tensorpack made this a function returning a MapData; it is now a MapData subclass.)
    """

    def __init__(self, ds: DataFlow, idxs: Sequence[Hashable]) -> None:
        """
        Args:
            ds: a flow of list/tuple or dict datapoints.
            idxs: the indices or keys to keep, in output order.
        """
        if isinstance(idxs, (str, bytes)) or not isinstance(idxs, Iterable):
            raise DataFlowArgumentError(
                f"SelectComponent: idxs must be a list of indices or keys, got {idxs!r}"
            )
        self.idxs: list[Any] = list(idxs)
        super().__init__(ds, self._select)

    def _select(self, dp: Any) -> list:
        if not isinstance(dp, (list, tuple, dict)):
            raise _not_a_datapoint("SelectComponent", dp)
        idxs = self.idxs
        try:
            return [dp[i] for i in idxs]
        except (IndexError, KeyError, TypeError):
            for i in idxs:
                try:
                    dp[i]
                except (IndexError, KeyError, TypeError) as e:
                    raise _bad_component("SelectComponent", dp, i, e) from None
            raise

    def __iter__(self) -> Iterator:
        select = self._select
        for dp in self.ds:
            yield select(dp)


# -- several upstreams ---------------------------------------------------------------------------
class RandomChooseData(RNGDataFlow):
    """Yield from one of several flows at a time, chosen at random per datapoint.

    ``df_lists`` is a list of flows (chosen uniformly) or of ``(flow, probability)`` pairs.
    Probabilities must be finite and non-negative, not all zero, and sum to 1 within 1e-6 (they
    are then normalized exactly; tensorpack compared the float sum with ``== 1``). Out: the chosen
    flow's next datapoint, unchanged.

    End of pass: as soon as any chosen flow is exhausted (as in tensorpack), so a pass is shorter
    than the sum of the lengths; ``len`` is unknown (raises
    :class:`~dataflow.errors.LengthUnknownError`). Infinite upstreams are fine: with all of them
    infinite, so is the pass. Choices come from ``self.rng`` (reproducible under
    :func:`dataflow.set_seed`).
    """

    _CHUNK = 1024  # choices drawn per rng call

    def __init__(self, df_lists: Sequence[DataFlow] | Sequence[tuple[DataFlow, float]]) -> None:
        """
        Args:
            df_lists: flows, or (flow, probability) pairs.
        """
        who = "RandomChooseData"
        if not isinstance(df_lists, (list, tuple)) or not df_lists:
            raise DataFlowArgumentError(
                f"{who}: df_lists must be a non-empty list of DataFlow or (DataFlow, probability) "
                f"pairs, got {_short_repr(df_lists)}"
            )
        pairs = [isinstance(d, (tuple, list)) for d in df_lists]
        if any(pairs) and not all(pairs):
            raise DataFlowArgumentError(
                f"{who}: df_lists must be all flows or all (flow, probability) pairs, not a mix"
            )
        if all(pairs):
            for i, d in enumerate(df_lists):
                if len(d) != 2:
                    raise DataFlowArgumentError(
                        f"{who}: df_lists[{i}] must be a (DataFlow, probability) pair, got "
                        f"{len(d)} elements"
                    )
            flows = [d[0] for d in df_lists]
            probs = [_check_probability(d[1], i, who) for i, d in enumerate(df_lists)]
            total = math.fsum(probs)
            if total <= 0:
                raise DataFlowArgumentError(f"{who}: the probabilities are all zero")
            if not math.isclose(total, 1.0, rel_tol=0, abs_tol=1e-6):
                raise DataFlowArgumentError(
                    f"{who}: the probabilities must sum to 1, got {probs} which sum to {total!r}"
                )
        else:
            flows = list(df_lists)
            probs = [1.0] * len(flows)
            total = float(len(flows))
        self.df_lists = _check_flows(flows, who)
        self.probs = np.array(probs, dtype=np.float64) / total

    def reset_state(self) -> None:
        super().reset_state()
        for d in self.df_lists:
            d.reset_state()

    def __iter__(self) -> Iterator:
        itrs = [iter(d) for d in self.df_lists]
        rng = self.rng
        n = len(itrs)
        probs = self.probs
        try:
            while True:
                for k in rng.choice(n, size=self._CHUNK, p=probs).tolist():
                    dp = next(itrs[k], _END)
                    if dp is _END:
                        return
                    yield dp
        finally:
            _close_all(itrs)


def _check_probability(value: object, i: int, who: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise DataFlowArgumentError(
            f"{who}: the probability of df_lists[{i}] must be a number, got {value!r}"
        )
    p = float(value)
    if not math.isfinite(p) or p < 0:
        raise DataFlowArgumentError(
            f"{who}: the probability of df_lists[{i}] must be finite and >= 0, got {p!r}"
        )
    return p


class RandomMixData(RNGDataFlow):
    """Interleave several flows at random, each datapoint of each flow exactly once per pass.

    Every upstream must know its ``len``. A pass draws a random order in which flow ``k`` occupies
    ``len(df_lists[k])`` slots and yields each flow's datapoints, in that flow's own order, at its
    slots: the output is a perfect random mix. ``len`` is the sum of the lengths; the pass ends when
    all slots are filled.

    If a flow yields fewer datapoints than its ``len`` claims, its remaining slots are skipped (a
    warning is logged) and the others continue; extra datapoints beyond its ``len`` are not read
    (tensorpack crashed in the first case). The order comes from ``self.rng``.
    """

    def __init__(self, df_lists: Sequence[DataFlow]) -> None:
        """
        Args:
            df_lists: flows with a known ``len``.
        """
        self.df_lists = _check_flows(df_lists, "RandomMixData")
        for i, d in enumerate(self.df_lists):
            try:
                len(d)
            except NotImplementedError:
                raise DataFlowArgumentError(
                    f"RandomMixData: df_lists[{i}] ({type(d).__name__}) does not know its len; "
                    "every flow must (use RandomChooseData for flows of unknown length)"
                ) from None

    def reset_state(self) -> None:
        super().reset_state()
        for d in self.df_lists:
            d.reset_state()

    @property
    def sizes(self) -> list[int]:
        """The current ``len`` of each upstream flow."""
        return [len(d) for d in self.df_lists]

    def __len__(self) -> int:
        return sum(self.sizes)

    def __iter__(self) -> Iterator:
        sizes = self.sizes
        order = np.repeat(np.arange(len(sizes)), sizes)
        self.rng.shuffle(order)
        itrs = [iter(d) for d in self.df_lists]
        short = [False] * len(itrs)
        try:
            for k in order.tolist():
                if short[k]:
                    continue
                dp = next(itrs[k], _END)
                if dp is _END:
                    short[k] = True
                    logger.warning(
                        "RandomMixData: df_lists[%d] (%s) ended before its len() of %d; its "
                        "remaining slots are skipped",
                        k,
                        type(self.df_lists[k]).__name__,
                        sizes[k],
                    )
                    continue
                yield dp
        finally:
            _close_all(itrs)


class ConcatData(DataFlow):
    """Yield all of ``df_lists[0]``, then all of ``df_lists[1]``, and so on, as one pass.

    Datapoints are unchanged; ``len`` is the sum of the lengths. An infinite flow in the list means
    the ones after it are never reached.
    """

    def __init__(self, df_lists: Sequence[DataFlow]) -> None:
        """
        Args:
            df_lists: the flows to concatenate.
        """
        self.df_lists = _check_flows(df_lists, "ConcatData")

    def reset_state(self) -> None:
        for d in self.df_lists:
            d.reset_state()

    def __len__(self) -> int:
        return sum(len(d) for d in self.df_lists)

    def __iter__(self) -> Iterator:
        for d in self.df_lists:
            yield from d


class JoinData(DataFlow):
    """Join the components of several flows, datapoint by datapoint::

        df1 yields [c1, c2], df2 yields [c3, c4]         -> [c1, c2, c3, c4]
        df1 yields {"a": c1, "b": c2}, df2 {"c": c3}    -> {"a": c1, "b": c2, "c": c3}

    All flows must yield lists/tuples, or all dicts (a later dict's key wins on a clash). The pass
    ends when any flow is exhausted; ``len`` is the smallest length (a warning is logged at
    construction when the lengths differ). The same flow may appear twice (its ``__iter__`` is then
    called twice, which a non-reentrant flow refuses). A mixed or non-list/dict datapoint raises
    :class:`~dataflow.errors.DatapointError` naming the flow.
    """

    def __init__(self, df_lists: Sequence[DataFlow]) -> None:
        """
        Args:
            df_lists: the flows to join.
        """
        self.df_lists = _check_flows(df_lists, "JoinData")
        try:
            sizes = [len(d) for d in self.df_lists]
        except NotImplementedError:
            return
        if len(set(sizes)) > 1:
            logger.warning(
                "JoinData: the flows have different lengths %s; each pass stops at the shortest",
                sizes,
            )

    def reset_state(self) -> None:
        for d in self.df_lists:
            d.reset_state()

    def __len__(self) -> int:
        return min(len(d) for d in self.df_lists)

    def __iter__(self) -> Iterator:
        itrs = [iter(d) for d in self.df_lists]
        try:
            for dps in zip(*itrs):
                first = dps[0]
                if isinstance(first, (list, tuple)):
                    for dp in dps:
                        if not isinstance(dp, (list, tuple)):
                            raise self._mixed(dps)
                    yield list(chain.from_iterable(dps))
                elif isinstance(first, dict):
                    joined = {}
                    for dp in dps:
                        if not isinstance(dp, dict):
                            raise self._mixed(dps)
                        joined.update(dp)
                    yield joined
                else:
                    raise _not_a_datapoint("JoinData (from df_lists[0])", first)
        finally:
            _close_all(itrs)

    @staticmethod
    def _mixed(dps: Sequence[Any]) -> DatapointError:
        kinds = ", ".join(f"df_lists[{i}]: {type(dp).__name__}" for i, dp in enumerate(dps))
        return DatapointError(
            f"JoinData: all flows must yield lists/tuples or all dicts, got {kinds}"
        )


# -- buffering -----------------------------------------------------------------------------------
class LocallyShuffleData(ProxyDataFlow, RNGDataFlow):
    """Shuffle within a buffer: for sources too large (or too sequential) to shuffle globally.

    How it works (as tensorpack): datapoints from ``ds`` enter a buffer of ``buffer_size``, each
    ``num_reuse`` times. Once the buffer is full, every new entry pushes out the oldest one, which
    is yielded. The buffer is shuffled after every ``shuffle_interval`` datapoints taken from
    ``ds`` (default ``buffer_size // 3``). Reading starts with a full buffer, so the first
    datapoint comes after ``buffer_size`` entries.

    ``ds`` is repeated internally without end (each repetition is a new pass of ``ds``), and the
    buffer and the position in ``ds`` carry over from one pass of this flow to the next: the mix
    is continuous, as in tensorpack.

    ``len`` and the end of a pass: ``len`` is ``len(ds) * num_reuse``, and a pass ends after
    exactly that many datapoints. (tensorpack reported this ``len`` but never ended a pass: its
    iterator ran forever.) Because the buffer carries over, one pass is *not* a permutation of
    ``ds``: some datapoints may appear in it more often than ``num_reuse`` times and others not at
    all; over many passes each appears ``num_reuse`` times per pass on average. If ``len(ds)`` is
    unknown (or ``ds`` is infinite), ``len`` raises
    :class:`~dataflow.errors.LengthUnknownError` and a pass never ends. If a pass of ``ds`` yields
    nothing, the buffer is drained and the pass ends.

    Pitfalls: ``num_reuse > 1`` yields the same object several times (no copy). The buffer is shared
    state, so the flow is not reentrant. Shuffling uses ``self.rng`` (reproducible under
    :func:`dataflow.set_seed`).
    """

    reentrant = False

    def __init__(
        self,
        ds: DataFlow,
        buffer_size: int,
        num_reuse: int = 1,
        shuffle_interval: int | None = None,
    ) -> None:
        """
        Args:
            ds: the input flow.
            buffer_size: how many datapoints the buffer holds, >= 1.
            num_reuse: how many times each datapoint enters the buffer, >= 1 (duplicates may hurt
                training; they save reading).
            shuffle_interval: shuffle the buffer after this many datapoints from ``ds``; default
                ``max(1, buffer_size // 3)``.
        """
        who = "LocallyShuffleData"
        ProxyDataFlow.__init__(self, ds)
        self.buffer_size = _check_int(buffer_size, who, "buffer_size", 1)
        self.num_reuse = _check_int(num_reuse, who, "num_reuse", 1)
        if shuffle_interval is None:
            shuffle_interval = max(1, self.buffer_size // 3)
        self.shuffle_interval = _check_int(shuffle_interval, who, "shuffle_interval", 1)
        self._clear_buffer()

    def _clear_buffer(self) -> None:
        # The buffer is a ring once full: ``_head`` is the oldest entry. ``_pending`` counts the
        # entries of ``_pending_dp`` still to add (num_reuse), ``_since_shuffle`` the datapoints
        # read since the last shuffle, ``_source`` the endless iterator over ``ds``.
        self._buffer: list = []
        self._head = 0
        self._pending = 0
        self._pending_dp: Any = None
        self._since_shuffle = 0
        self._source: Iterator | None = None

    def reset_state(self) -> None:
        self.ds.reset_state()
        RNGDataFlow.reset_state(self)
        self._clear_buffer()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_source"] = None  # a live generator cannot cross a process boundary
        return state

    def __len__(self) -> int:
        return len(self.ds) * self.num_reuse

    def __iter__(self) -> Iterator:
        try:
            target: int | None = len(self)
        except NotImplementedError:
            target = None
        if self._source is None:
            self._source = _repeat_forever(self.ds)
        source = self._source
        buf = self._buffer
        capacity = self.buffer_size
        reuse = self.num_reuse
        interval = self.shuffle_interval
        rng = self.rng
        produced = 0
        source_ended = False
        # The loop works on locals; ``finally`` writes them back when the pass ends, is closed or
        # is collected. No other pass can start before that (the flow is not reentrant), so the
        # attributes are current whenever a pass begins.
        head, pending, pending_dp, since = (
            self._head,
            self._pending,
            self._pending_dp,
            self._since_shuffle,
        )
        try:
            while target is None or produced < target:
                if pending == 0:
                    pending_dp = next(source, _END)
                    if pending_dp is _END:
                        pending_dp = None
                        source_ended = True
                        break
                    pending = reuse
                    since += 1
                    if since >= interval:
                        since = 0
                        rng.shuffle(buf)
                pending -= 1
                if len(buf) < capacity:
                    buf.append(pending_dp)
                    continue
                out = buf[head]
                buf[head] = pending_dp
                head += 1
                if head == capacity:
                    head = 0
                produced += 1
                yield out
            if not source_ended:
                return
            # A pass of ds yielded nothing, so the source ended: drain the buffer, oldest first,
            # and try ds again on the next pass.
            self._source = None
            while buf and (target is None or produced < target):
                if head >= len(buf):
                    head = 0
                out = buf.pop(head)
                produced += 1
                yield out
            if not buf:
                head = 0
        finally:
            self._head, self._pending, self._pending_dp, self._since_shuffle = (
                head,
                pending,
                pending_dp if pending else None,
                since,
            )


class CacheData(ProxyDataFlow, RNGDataFlow):
    """Keep the first complete pass of ``ds`` in memory and serve later passes from it.

    The first pass reads ``ds`` and yields its datapoints as they come, recording them. Only when
    that pass reaches its end does the record become the cache; a first pass that is abandoned
    (closed, garbage collected, interrupted by an error) is discarded and the next pass reads
    ``ds`` again from its start (tensorpack served the partial record as if it were complete).
    Later passes yield the cached datapoints, in a fresh random order each pass if ``shuffle``
    (the first pass is always in ``ds``'s order).

    ``len`` is ``len(ds)`` until the cache is complete, then the number of cached datapoints.
    ``ds`` must be finite. The cache holds references to the datapoints: a consumer that changes
    one in place changes the cache. Each pass keeps its own record and order, so two iterators at
    once are fine. ``close()`` drops the cache. Shuffling uses ``self.rng``.
    """

    def __init__(self, ds: DataFlow, shuffle: bool = False) -> None:
        """
        Args:
            ds: a finite input flow.
            shuffle: yield the cache in a new random order every pass after the first.
        """
        ProxyDataFlow.__init__(self, ds)
        self.shuffle = bool(shuffle)
        self._cache: list | None = None

    def reset_state(self) -> None:
        self.ds.reset_state()
        RNGDataFlow.reset_state(self)

    def __len__(self) -> int:
        cache = self._cache
        return len(cache) if cache is not None else len(self.ds)

    @property
    def buffer(self) -> list:
        """The cached datapoints (empty until the first pass has completed)."""
        return self._cache if self._cache is not None else []

    def __iter__(self) -> Iterator:
        cache = self._cache
        if cache is not None:
            if self.shuffle:
                cache = cache[:]  # shuffle a private copy: concurrent passes stay independent
                self.rng.shuffle(cache)
            yield from cache
            return
        record: list = []
        append = record.append
        for dp in self.ds:
            append(dp)
            yield dp
        self._cache = record

    def close(self) -> None:
        self._cache = None
        super().close()

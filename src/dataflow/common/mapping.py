"""Per-datapoint transforms, one datapoint in, at most one out.

MapData applies any function to the datapoint, MapDataComponent to one of its components,
SelectComponent keeps and reorders components. A function that returns ``None`` drops the
datapoint.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from copy import copy
from typing import Any

from .. import _state
from .._skipping import ErrorBudget, check_on_error
from ..base import DataFlow, ProxyDataFlow
from ..errors import DataFlowArgumentError
from ._shared import _bad_component, _not_a_datapoint

__all__ = ["MapData", "MapDataComponent", "SelectComponent"]


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

    def __init__(
        self,
        ds: DataFlow,
        func: Callable[[Any], Any],
        *,
        on_error: str = "raise",
        max_errors: int | None = None,
    ) -> None:
        """
        Args:
            ds: the input flow.
            func: datapoint -> datapoint, or ``None`` to drop it.
            on_error: ``"raise"`` (an exception of ``func`` ends the pass) or ``"skip"`` (the
                datapoint is dropped and counted in :attr:`errors_skipped`; see
                :mod:`dataflow._skipping`).
            max_errors: with ``"skip"``, how many failures to tolerate (``None``: no limit).
        """
        super().__init__(ds)
        if not callable(func):
            raise DataFlowArgumentError(
                f"{type(self).__name__}: func must be callable, got {type(func).__name__}"
            )
        self.func = func
        self._skip, max_errors = check_on_error(on_error, max_errors, type(self).__name__)
        self._errors = ErrorBudget(type(self).__name__, max_errors)

    _skip = False
    _errors: ErrorBudget

    @property
    def errors_skipped(self) -> int:
        """Datapoints dropped because mapping them raised (``on_error="skip"``), in this process."""
        errors = self.__dict__.get("_errors")
        return 0 if errors is None else errors.skipped

    def _skipping(self, mapper: Callable[[Any], Any]) -> Iterator:
        """The pass with ``on_error="skip"``: a datapoint whose mapping raises is counted."""
        errors = self._errors
        for i, dp in enumerate(self.ds):
            try:
                ret = mapper(dp)
            except Exception:
                errors.skip(f"datapoint #{i} of the pass", traceback.format_exc())
                continue
            if ret is not None:
                yield ret

    def _copy_and_call(self, dp: Any) -> Any:
        kind = type(dp)
        return self.func([*dp] if kind is list else dp if kind is tuple else copy(dp))

    def __iter__(self) -> Iterator:
        if self._skip:
            yield from self._skipping(self._copy_and_call)
            return
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

    _df_save = _state.no_own_state  # one datapoint in, at most one out: the upstream's position


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

    def __init__(
        self,
        ds: DataFlow,
        func: Callable[[Any], Any],
        index: Hashable = 0,
        *,
        on_error: str = "raise",
        max_errors: int | None = None,
    ) -> None:
        """
        Args:
            ds: a flow of list/tuple or dict datapoints.
            func: component -> component, or ``None`` to drop the datapoint.
            index: index (int) or key of the component.
            on_error, max_errors: as in :class:`MapData`.
        """
        if not callable(func):
            raise DataFlowArgumentError(
                f"MapDataComponent: func must be callable, got {type(func).__name__}"
            )
        self._index = index
        self._func = func
        super().__init__(ds, self._mapper, on_error=on_error, max_errors=max_errors)

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
        if self._skip:
            yield from self._skipping(self._mapper)
            return
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

    _df_save = _state.no_own_state


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

    _df_save = _state.no_own_state

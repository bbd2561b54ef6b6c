"""Several upstreams into one flow.

RandomChooseData picks a random upstream per datapoint, RandomMixData interleaves the upstreams at
random with each datapoint once, ConcatData yields them one after another, JoinData puts their
components side by side.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator, Sequence
from itertools import chain
from typing import Any

import numpy as np

from .. import _state
from ..base import DataFlow, RNGDataFlow
from ..errors import DataFlowArgumentError, DatapointError
from ._shared import _END, _check_flows, _close_all, _not_a_datapoint, _short_repr, logger

__all__ = ["RandomChooseData", "RandomMixData", "ConcatData", "JoinData"]


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
        resumed = self.__dict__.pop("_df_start", None)
        try:
            while True:
                first = 0
                if resumed is not None:  # draw the saved chunk again, go on after its used part
                    _state.rng_from_plain(rng, resumed["chunk_rng"])
                    first, resumed = int(resumed["used"]), None
                self._df_chunk_rng = rng.get_state()
                chunk = rng.choice(n, size=self._CHUNK, p=probs).tolist()
                for used in range(first, self._CHUNK):  # ``used``: read by _df_save
                    dp = next(itrs[chunk[used]], _END)
                    if dp is _END:
                        return
                    yield dp
        finally:
            _close_all(itrs)

    def _df_save(self) -> dict:
        live_ref = self.__dict__.get("_df_live")
        used = _state.gen_local(live_ref() if live_ref is not None else None, "used")
        chunk_rng = _state.rng_to_plain(self._df_chunk_rng)  # type: ignore[arg-type]
        return {"chunk_rng": chunk_rng, "used": used + 1}

    def _df_load(self, state: dict) -> None:
        self._df_start = state


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

    def _df_save(self) -> dict:
        live_ref = self.__dict__.get("_df_live")
        slot = _state.gen_local(live_ref() if live_ref is not None else None, "slot")
        return {"slot": slot + 1, "sizes": self.sizes}

    def _df_load(self, state: dict) -> None:
        self._df_start = int(state["slot"])

    def _df_check(self, node: dict) -> str | None:
        saved = (node.get("state") or {}).get("sizes")
        if saved is not None and saved != self.sizes:
            return f"the state was saved with flows of lengths {saved}, they now have {self.sizes}"
        return None

    def __iter__(self) -> Iterator:
        sizes = self.sizes
        order = np.repeat(np.arange(len(sizes)), sizes)
        self.rng.shuffle(order)  # a resumed pass draws the same order: the rng stands at its start
        start = self.__dict__.pop("_df_start", 0)
        itrs = [iter(d) for d in self.df_lists]
        short = [False] * len(itrs)
        slots = order.tolist()
        try:
            for slot in range(start, len(slots)):
                k = slots[slot]
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
        flows = self.df_lists
        for at in range(self.__dict__.pop("_df_start", 0), len(flows)):  # noqa: B007
            yield from flows[at]

    def _df_save(self) -> dict:
        live_ref = self.__dict__.get("_df_live")
        return {"at": _state.gen_local(live_ref() if live_ref is not None else None, "at")}

    def _df_load(self, state: dict) -> None:
        self._df_start = int(state["at"])

    def _df_upstream_nodes(self) -> list[dict]:
        nodes = [_state.node_of(flow) for flow in self.df_lists]
        live_ref = self.__dict__.get("_df_live")
        at = _state.gen_local(live_ref() if live_ref is not None else None, "at")
        # The flows before the current one are done for this pass, those after it begin new
        # passes when their turn comes: either way, a new pass is what each does next.
        return [n if i == at else _state.between_passes(n) for i, n in enumerate(nodes)]


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

    _df_save = _state.no_own_state  # one datapoint from each flow per output: nothing held

    @staticmethod
    def _mixed(dps: Sequence[Any]) -> DatapointError:
        kinds = ", ".join(f"df_lists[{i}]: {type(dp).__name__}" for i, dp in enumerate(dps))
        return DatapointError(
            f"JoinData: all flows must yield lists/tuples or all dicts, got {kinds}"
        )

"""Pass length: repeat a flow or its datapoints, or fix how many datapoints a pass has.

FixedSizeData yields exactly ``size`` datapoints a pass, restarting the upstream as needed;
RepeatedData runs whole passes of the upstream ``num`` times (or forever); RepeatedDataPoint
yields each datapoint ``num`` times in a row.
"""

from __future__ import annotations

from collections.abc import Iterator

from .. import _state
from ..base import DataFlow, ProxyDataFlow
from ..errors import DataFlowError, LengthUnknownError
from ._shared import _check_int, _close_all, _repeat_forever

__all__ = ["FixedSizeData", "RepeatedData", "RepeatedDataPoint"]


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

    def _df_carries_over(self) -> bool:
        return self._keep  # the upstream's pass goes on in the next pass of this flow

    def _df_save(self) -> dict | None:
        live_ref = self.__dict__.get("_df_live")
        live = live_ref() if live_ref is not None else None
        remaining = _state.gen_local(live, "remaining")
        if remaining is None:
            return None  # between passes: the upstream's own state says where it stands
        fresh = bool(_state.gen_local(live, "fresh"))
        return {"pass": {"remaining": remaining, "fresh": fresh}}

    def _df_load(self, state: dict) -> None:
        if "pass" in state:
            self._df_start = (int(state["pass"]["remaining"]), bool(state["pass"]["fresh"]))

    def _df_upstream_nodes(self) -> list[dict]:
        nodes = super()._df_upstream_nodes()
        live_ref = self.__dict__.get("_df_live")
        remaining = _state.gen_local(live_ref() if live_ref is not None else None, "remaining")
        if not self._keep and remaining == 0:  # the pass is full and its upstream pass closed
            nodes = [_state.between_passes(n) for n in nodes]
        return nodes

    def __iter__(self) -> Iterator:
        remaining, fresh = self.__dict__.pop("_df_start", (self._size, True))
        if remaining == 0:
            return
        keep = self._keep
        itr = self.itr if keep else None
        fresh = fresh and itr is None
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
        start = self.__dict__.pop("_df_start", None)
        if self.num == -1:
            yield from _repeat_forever(self.ds, resumed=start is not None)
        else:
            for rep in range(start or 0, self.num):  # noqa: B007  # ``rep``: the saved position
                yield from self.ds

    def _df_save(self) -> dict:
        live_ref = self.__dict__.get("_df_live")
        rep = _state.gen_local(live_ref() if live_ref is not None else None, "rep")
        return {"rep": rep or 0}

    def _df_load(self, state: dict) -> None:
        self._df_start = int(state["rep"])


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
        held = self.__dict__.pop("_df_start", None)
        if held is not None:  # resumed between two repeats of a datapoint
            dp, first = held
            for j in range(first, num):  # noqa: B007
                yield dp
        if num == 1:
            yield from self.ds
            return
        for dp in self.ds:
            for j in range(num):  # noqa: B007  # ``j``, ``dp``: what the state saves
                yield dp

    def _df_save(self) -> dict | None:
        live_ref = self.__dict__.get("_df_live")
        live = live_ref() if live_ref is not None else None
        j = _state.gen_local(live, "j")
        if j is None or j + 1 >= self.num:
            return None  # no repeat left to yield: the upstream's position says it all
        return {"dp": _state.pack(_state.gen_local(live, "dp"), "RepeatedDataPoint"), "next": j + 1}

    def _df_load(self, state: dict) -> None:
        self._df_start = (_state.unpack(state["dp"]), int(state["next"]))

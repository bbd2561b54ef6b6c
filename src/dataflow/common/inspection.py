"""Measuring and looking at a flow while it runs.

TestDataSpeed measures datapoints per second under a progress bar; PrintData describes the first
datapoints it passes. Both log to the ``dataflow.common`` logger (see ``_shared``), the name they
logged to when the package was one module.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any

import numpy as np
import tqdm

from .. import _state, _stats
from ..base import DataFlow, ProxyDataFlow
from ._shared import _END, _check_int, _close_all, _short_repr, logger

__all__ = ["TestDataSpeed", "PrintData"]


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
        if not self.__dict__.pop("_df_tested", False):
            self.start()
        yield from self.ds

    def _df_save(self) -> dict:
        return {"tested": True}

    def _df_load(self, state: dict) -> None:
        self._df_tested = bool(state.get("tested"))

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
                        if _stats.ON:  # per-stage counting is on: show the bottleneck
                            neck = _stats.postfix(self.ds)
                            if neck is not None:
                                bar.set_postfix_str(f"bottleneck {neck}", refresh=False)
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

    _df_save = _state.no_own_state  # printing changes nothing the pipeline yields

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

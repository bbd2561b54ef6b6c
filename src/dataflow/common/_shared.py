"""What the combinator modules of ``dataflow.common`` share: argument checks, error builders, the
end-of-iterator sentinel, endless repetition of a flow, and the logger.

Private. It imports none of its sibling modules, so that each of them can import it without a cycle.
"""

from __future__ import annotations

import logging
import numbers
from collections.abc import Hashable, Iterable, Iterator
from typing import Any

import numpy as np

from .._batching import _short_repr
from ..base import DataFlow, check_dataflow
from ..errors import DataFlowArgumentError, DatapointError

# Every combinator logs under the package's name, as it did when the package was one module:
# PrintData documents it, and `dataflow inspect` and users route ``dataflow.common`` by that name.
logger = logging.getLogger("dataflow.common")

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


def _repeat_forever(ds: DataFlow, resumed: bool = False) -> Iterator:
    """Pass after pass of ``ds``; stops after a pass that yields nothing (instead of spinning).

    ``resumed``: the first pass continues a saved one, which may have nothing left: not an end.
    """
    while True:
        it = iter(ds)
        first = next(it, _END)
        if first is _END and resumed:
            resumed = False
            continue
        resumed = False
        if first is _END:
            logger.warning(
                "%s yielded no datapoints; stopping instead of repeating it forever",
                type(ds).__name__,
            )
            return
        yield first
        yield from it

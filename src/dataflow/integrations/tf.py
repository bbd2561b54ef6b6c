"""TensorFlow: a flow as a ``tf.data.Dataset`` (``pip install 'pydataflow[tf]'``)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import numpy as np
import tensorflow as tf

from ..base import DataFlow, check_dataflow
from ..errors import DataFlowArgumentError

__all__ = ["to_tf", "infer_signature"]


def _spec_of(values: list[Any], where: str) -> Any:
    first = values[0]
    if isinstance(first, dict):
        keys = list(first)
        for v in values:
            if not isinstance(v, dict) or list(v) != keys:
                raise DataFlowArgumentError(f"to_tf: datapoints differ in keys at {where}")
        return {k: _spec_of([v[k] for v in values], f"{where}[{k!r}]") for k in keys}
    if isinstance(first, (list, tuple)):
        n = len(first)
        for v in values:
            if not isinstance(v, (list, tuple)) or len(v) != n:
                raise DataFlowArgumentError(f"to_tf: datapoints differ in length at {where}")
        return tuple(_spec_of([v[i] for v in values], f"{where}[{i}]") for i in range(n))
    arrays = [np.asarray(v) for v in values]
    dtypes = {a.dtype for a in arrays}
    if len(dtypes) > 1:
        raise DataFlowArgumentError(
            f"to_tf: the dtype at {where} varies between datapoints: {sorted(map(str, dtypes))}"
        )
    ranks = {a.ndim for a in arrays}
    if len(ranks) > 1:
        raise DataFlowArgumentError(f"to_tf: the rank at {where} varies: {sorted(ranks)}")
    shape = [
        dims.pop() if len(dims) == 1 else None
        for dims in ({a.shape[i] for a in arrays} for i in range(arrays[0].ndim))
    ]
    dtype = tf.string if arrays[0].dtype.kind in "US" else tf.as_dtype(arrays[0].dtype)
    return tf.TensorSpec(shape=shape, dtype=dtype)


def infer_signature(datapoints: list[Any]) -> Any:
    """The ``output_signature`` that fits all of ``datapoints``: their dtypes, and their shapes with
    ``None`` where a dimension differs between them. A dict datapoint gives a dict, a list or tuple
    a tuple."""
    if not datapoints:
        raise DataFlowArgumentError("to_tf: the flow yielded nothing to infer a signature from")
    return _spec_of(list(datapoints), "datapoint")


def _plain(dp: Any) -> Any:
    return tuple(dp) if isinstance(dp, list) else dp


def to_tf(ds: DataFlow, output_signature: Any = None, *, infer_from: int = 8) -> Any:
    """Wrap ``ds`` as a ``tf.data.Dataset`` (``tf.data.Dataset.from_generator``).

    Each element is one datapoint: a list or tuple becomes a tuple, a dict a dict. Without
    ``output_signature`` it is inferred from the first ``infer_from`` datapoints of a pass (see
    :func:`infer_signature`): a dimension that differs among them is ``None``; one that is equal
    among them but varies later fails in tf, so give the signature yourself then. Those datapoints
    are read once and kept for the first pass, which then goes on from there: nothing is read twice.

    Every iteration of the dataset is one pass of ``ds``. tf cannot checkpoint a generator, so
    save the position with ``ds.state_dict()`` and resume with ``ds.load_state_dict()`` before
    iterating the dataset again. tf reads the generator ahead of the loop, so save the state at
    the pass's start with the count of elements consumed, and resume with ``.skip(count)``
    (docs/frameworks.md).
    """
    flow = check_dataflow(ds, "to_tf")
    head: list[Any] = []
    if output_signature is None:
        if isinstance(infer_from, bool) or not isinstance(infer_from, int) or infer_from < 1:
            raise DataFlowArgumentError(
                f"to_tf: infer_from must be an int >= 1, got {infer_from!r}"
            )
        first_pass = iter(flow)
        head = list(itertools.islice(first_pass, infer_from))
        output_signature = infer_signature(head)
        pending: list[Iterator] = [first_pass]
    else:
        pending = []

    def generate() -> Iterator:
        if pending:
            rest = pending.pop()
            for dp in itertools.chain(head, rest):
                yield _plain(dp)
            head.clear()
            return
        for dp in flow:
            yield _plain(dp)

    return tf.data.Dataset.from_generator(generate, output_signature=output_signature)

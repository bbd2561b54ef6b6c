"""FixedSizeData, RepeatedData, RepeatedDataPoint (dataflow.common.repeat): pass lengths."""

from __future__ import annotations

import gc
import logging
import pickle
from itertools import islice

import pytest

from dataflow.common import FixedSizeData, RepeatedData, RepeatedDataPoint
from dataflow.errors import (
    DataFlowArgumentError,
    DataFlowError,
    LengthUnknownError,
    ReentrancyError,
)
from flows import Count, Src, firsts, ints

pytestmark = pytest.mark.timeout(30)


# -- FixedSizeData -----------------------------------------------------------------------------
def test_fixed_size_data_keep_state():
    ds = FixedSizeData(Src([[i] for i in range(1, 6)]), 3)
    assert len(ds) == 3
    assert [firsts(ds) for _ in range(3)] == [[1, 2, 3], [4, 5, 1], [2, 3, 4]]


def test_fixed_size_data_without_keep_state():
    ds = FixedSizeData(Src([[i] for i in range(1, 6)]), 3, keep_state=False)
    assert [firsts(ds) for _ in range(2)] == [[1, 2, 3], [1, 2, 3]]
    six = FixedSizeData(Src([[i] for i in range(1, 6)]), 6, keep_state=False)
    assert [firsts(six) for _ in range(2)] == [[1, 2, 3, 4, 5, 1]] * 2


def test_fixed_size_data_infinite_empty_and_zero():
    ds = FixedSizeData(Count(), 4)
    assert firsts(ds) == [0, 1, 2, 3] and firsts(ds) == [4, 5, 6, 7]
    with pytest.raises(DataFlowError, match="yielded no datapoints"):
        list(FixedSizeData(Src([]), 2))
    assert list(FixedSizeData(ints(3), 0)) == []
    with pytest.raises(DataFlowArgumentError, match="size"):
        FixedSizeData(ints(3), -1)


def test_fixed_size_data_is_not_reentrant_but_abandoning_does_not_block():
    ds = FixedSizeData(ints(10), 4)
    first = iter(ds)
    next(first)
    with pytest.raises(ReentrancyError):
        iter(ds)
    del first
    gc.collect()
    assert firsts(ds) == [1, 2, 3, 4]  # continues where the abandoned pass stopped


def test_fixed_size_data_pickles_after_iteration():
    ds = FixedSizeData(ints(5), 2)
    list(ds)
    clone = pickle.loads(pickle.dumps(ds))
    assert firsts(clone) == [0, 1]


# -- RepeatedData / RepeatedDataPoint ------------------------------------------------------------
def test_repeated_data_finite():
    src = ints(3)
    ds = RepeatedData(src, 2)
    assert len(ds) == 6 and firsts(ds) == [0, 1, 2, 0, 1, 2]
    assert src.passes == 2  # each repetition is a new pass of the upstream
    assert list(RepeatedData(src, 0)) == [] and len(RepeatedData(src, 0)) == 0
    assert list(RepeatedData(Src([]), 3)) == []


def test_repeated_data_forever():
    ds = RepeatedData(ints(2), -1)
    with pytest.raises(LengthUnknownError):
        len(ds)
    with pytest.raises(NotImplementedError):
        ds.size()
    assert firsts(islice(ds, 7)) == [0, 1, 0, 1, 0, 1, 0]
    assert firsts(islice(RepeatedData(Count(), -1), 3)) == [0, 1, 2]


def test_repeated_data_forever_on_empty_upstream_ends(caplog):
    with caplog.at_level(logging.WARNING, logger="dataflow.common"):
        assert list(RepeatedData(Src([]), -1)) == []
    assert "yielded no datapoints" in caplog.text


@pytest.mark.parametrize("bad", [-2, 1.5, "3", None])
def test_repeated_data_rejects_bad_num(bad):
    with pytest.raises(DataFlowArgumentError, match="num"):
        RepeatedData(ints(1), bad)


def test_repeated_data_point():
    ds = RepeatedDataPoint(ints(3), 2)
    out = list(ds)
    assert len(ds) == 6 and firsts(out) == [0, 0, 1, 1, 2, 2]
    assert out[0] is out[1]  # the same object, not a copy
    assert firsts(RepeatedDataPoint(ints(2), 1)) == [0, 1]
    assert list(RepeatedDataPoint(Src([]), 3)) == []
    assert firsts(islice(RepeatedDataPoint(Count(), 2), 3)) == [0, 0, 1]
    with pytest.raises(DataFlowArgumentError, match="num"):
        RepeatedDataPoint(ints(1), 0)

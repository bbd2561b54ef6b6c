"""BatchData and BatchDataByShape (dataflow.common.batch): output, dtypes, len, bad input."""

from __future__ import annotations

import logging
from itertools import islice

import numpy as np
import pytest

from dataflow.common import BatchData, BatchDataByShape
from dataflow.errors import BatchError, DataFlowArgumentError, DatapointError, LengthUnknownError
from flows import Count, Src, ints

pytestmark = pytest.mark.timeout(30)


# -- BatchData ---------------------------------------------------------------------------------
def test_batch_data_output_len_and_remainder():
    src = Src([[i, np.full(2, i, np.float32)] for i in range(10)])
    plain = BatchData(src, 4)
    assert len(plain) == 2
    out = list(plain)
    assert len(out) == 2
    assert out[0][0].tolist() == [0, 1, 2, 3] and out[1][0].tolist() == [4, 5, 6, 7]
    assert out[0][1].shape == (4, 2) and out[0][1].dtype == np.float32
    # a new pass starts a fresh batch: the dropped rest of the previous pass does not leak in
    assert list(plain)[0][0].tolist() == [0, 1, 2, 3]

    rest = BatchData(src, 4, remainder=True)
    assert len(rest) == 3
    sizes = [len(b[0]) for b in rest]
    assert sizes == [4, 4, 2]
    assert len(BatchData(src, 5, remainder=True)) == 2  # no partial batch to add


def test_batch_data_batch_of_one_and_use_list():
    src = Src([[i, f"s{i}"] for i in range(3)])
    ones = list(BatchData(src, 1))
    assert [b[0].tolist() for b in ones] == [[0], [1], [2]]
    assert ones[0][1] == ["s0"]
    lists = list(BatchData(src, 2, remainder=True, use_list=True))
    assert lists == [[[0, 1], ["s0", "s1"]], [[2], ["s2"]]]


def test_batch_data_dict_datapoints_batch_per_key():
    src = Src([{"x": np.ones(3) * i, "y": i} for i in range(4)])
    (batch,) = BatchData(src, 4)
    assert set(batch) == {"x", "y"}
    assert batch["x"].shape == (4, 3) and batch["y"].tolist() == [0, 1, 2, 3]
    (listed,) = BatchData(src, 4, use_list=True)
    assert listed["y"] == [0, 1, 2, 3]


def test_batch_data_tuple_datapoints_give_lists():
    (batch,) = BatchData(Src([(1, 2.0), (3, 4.0)]), 2)
    assert isinstance(batch, list) and batch[0].tolist() == [1, 3]


def test_batch_data_empty_upstream_and_batch_larger_than_len(caplog):
    assert list(BatchData(Src([]), 3)) == [] and len(BatchData(Src([]), 3)) == 0
    assert list(BatchData(Src([]), 3, remainder=True)) == []
    with caplog.at_level(logging.WARNING, logger="dataflow.common"):
        big = BatchData(ints(3), 5)
    assert "larger than len(ds)=3" in caplog.text
    assert len(big) == 0 and list(big) == []
    assert len(BatchData(ints(3), 5, remainder=True)) == 1


def test_batch_data_infinite_upstream():
    ds = BatchData(Count(), 3)
    with pytest.raises(LengthUnknownError):
        len(ds)
    with pytest.raises(NotImplementedError):
        len(ds)
    got = [b[0].tolist() for b in islice(ds, 3)]
    assert got == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([1, 2], np.int64),
        ([True, False], np.bool_),
        ([0.5, 1.5], np.float64),
        ([1 + 2j, 3j], np.complex128),
        ([1, 2.5], np.float64),  # promoted, never truncated
        ([np.float32(1), np.float32(2)], np.float32),
        ([np.uint8(1), np.uint8(2)], np.uint8),
        ([np.int16(1), np.int16(2)], np.int16),
        ([np.bool_(True), np.bool_(False)], np.bool_),
        ([np.zeros(2, np.float16), np.ones(2, np.float16)], np.float16),
        ([np.zeros((2, 2), np.uint8), np.ones((2, 2), np.uint8)], np.uint8),
        ([np.array(3, np.int8), np.array(4, np.int8)], np.int8),  # 0-d arrays
    ],
)
def test_batch_data_keeps_dtypes(values, expected):
    (batch,) = BatchData(Src([[v] for v in values]), len(values))
    assert isinstance(batch[0], np.ndarray)
    assert batch[0].dtype == expected
    assert batch[0].shape == (len(values), *np.shape(values[0]))
    assert np.array_equal(batch[0], np.array(values))


@pytest.mark.parametrize(
    "values",
    [["a", "bc"], [b"a", b"bc"], [None, None], [{"k": 1}, {"k": 2}], [[1, 2], [3]], [object()] * 2],
)
def test_batch_data_keeps_other_objects_in_a_list(values):
    (batch,) = BatchData(Src([[v] for v in values]), 2)
    assert isinstance(batch[0], list) and batch[0] == values


def test_batch_data_ragged_arrays_raise_batch_error_naming_component_and_shapes():
    src = Src([[0, np.zeros((3, 2))], [1, np.zeros((3, 2))], [2, np.zeros((4, 2))]])
    with pytest.raises(BatchError) as info:
        list(BatchData(src, 3))
    msg = str(info.value)
    assert "component 1" in msg
    assert "(3, 2) float64 x2 (first at batch position 0)" in msg
    assert "(4, 2) float64 x1 (first at batch position 2)" in msg
    assert isinstance(info.value, ValueError)


def test_batch_data_ragged_dict_component_names_the_key():
    src = Src([{"img": np.zeros(2)}, {"img": np.zeros(5)}])
    with pytest.raises(BatchError, match=r"component 'img'.*\(2,\).*\(5,\)"):
        list(BatchData(src, 2))


def test_batch_data_numbers_mixed_with_strings_raise():
    with pytest.raises(BatchError, match=r"component 0.*int x1.*str x1"):
        list(BatchData(Src([[1], ["x"]]), 2))
    with pytest.raises(BatchError, match="component 0"):
        list(BatchData(Src([[2**70], [1]]), 2))  # would overflow int64
    with pytest.raises(BatchError, match="component 0"):
        list(BatchData(Src([[1], [np.zeros(3)]]), 2))


def test_batch_data_bad_datapoints_raise_datapoint_error():
    with pytest.raises(DatapointError, match="list, tuple or dict.*int"):
        list(BatchData(Src([1, 2]), 2))
    with pytest.raises(DatapointError, match="batch position 1 has 1 components.*has 2"):
        list(BatchData(Src([[1, 2], [3]]), 2))
    with pytest.raises(DatapointError, match="batch position 1 has no key 'a'"):
        list(BatchData(Src([{"a": 1}, {"b": 2}]), 2))
    with pytest.raises(DatapointError, match="keys the first datapoint.*'b'"):
        list(BatchData(Src([{"a": 1}, {"a": 1, "b": 2}]), 2))


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "4", None])
def test_batch_data_rejects_bad_batch_size(bad):
    with pytest.raises(DataFlowArgumentError, match="batch_size"):
        BatchData(ints(10), bad)


def test_batch_data_aggregate_batch_static_method():
    out = BatchData.aggregate_batch([[1, np.zeros(2)], [2, np.ones(2)]])
    assert out[0].tolist() == [1, 2] and out[1].shape == (2, 2)
    assert BatchData.aggregate_batch([[1], [2]], use_list=True) == [[1, 2]]


# -- BatchDataByShape --------------------------------------------------------------------------
def test_batch_data_by_shape_groups_and_carries_leftovers_across_passes():
    dps = [[np.zeros((1, 2)), 0], [np.zeros((3,)), 1], [np.zeros((1, 2)), 2], [np.zeros(3), 3]]
    dps.append([np.zeros((1, 2)), 4])
    ds = BatchDataByShape(Src(dps), 2, 0)
    assert len(ds) == 2
    first = list(ds)
    assert [(b[0].shape, b[1].tolist()) for b in first] == [((2, 1, 2), [0, 2]), ((2, 3), [1, 3])]
    second = list(ds)  # datapoint 4 waited across the pass boundary
    assert [b[1].tolist() for b in second] == [[4, 0], [1, 3], [2, 4]]  # more than len: documented


def test_batch_data_by_shape_dict_key_and_errors():
    ds = BatchDataByShape(Src([{"im": np.zeros(2), "y": i} for i in range(4)]), 2, "im")
    assert [b["y"].tolist() for b in ds] == [[0, 1], [2, 3]]
    with pytest.raises(DatapointError, match="component 0 must be a numpy array"):
        list(BatchDataByShape(Src([[1, 2]]), 2, 0))
    with pytest.raises(DatapointError, match="index 5"):
        list(BatchDataByShape(Src([[np.zeros(1)]]), 2, 5))
    with pytest.raises(DataFlowArgumentError, match="batch_size"):
        BatchDataByShape(ints(3), 0, 0)
    assert BatchDataByShape.reentrant is False

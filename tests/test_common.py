"""The single-process combinators of dataflow.common: output, len, end of pass, bad input."""

from __future__ import annotations

import gc
import logging
import pickle
from itertools import islice

import numpy as np
import pytest

from dataflow._engine.seeding import set_seed
from dataflow.base import DataFlow
from dataflow.common import (
    BatchData,
    BatchDataByShape,
    CacheData,
    ConcatData,
    FixedSizeData,
    JoinData,
    LocallyShuffleData,
    MapData,
    MapDataComponent,
    PrintData,
    RandomChooseData,
    RandomMixData,
    RepeatedData,
    RepeatedDataPoint,
    SelectComponent,
    TestDataSpeed,
)
from dataflow.errors import (
    BatchError,
    DataFlowArgumentError,
    DataFlowError,
    DatapointError,
    LengthUnknownError,
    ReentrancyError,
)

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(autouse=True)
def _unseeded():
    yield
    set_seed(None)


# -- small sources defined here, so these tests depend on nothing but dataflow.base ---------------
class Src(DataFlow):
    """Yields the given datapoints in order; counts the passes begun and datapoints read."""

    def __init__(self, items):
        self.items = list(items)
        self.passes = 0
        self.read = 0

    def __len__(self):
        return len(self.items)

    def __iter__(self):
        self.passes += 1
        for dp in self.items:
            self.read += 1
            yield dp


class NoLen(Src):
    """Finite, but does not know its len."""

    def __len__(self):
        raise NotImplementedError


class Infinite(DataFlow):
    """[0], [1], [2], ... without end."""

    def __iter__(self):
        i = 0
        while True:
            yield [i]
            i += 1


class OneShot(Src):
    reentrant = False


def ints(n, start=0):
    return Src([[i] for i in range(start, start + n)])


def firsts(dps):
    return [dp[0] for dp in dps]


# -- TestDataSpeed -----------------------------------------------------------------------------
def test_test_data_speed_measures_then_yields_the_upstream(caplog, capsys):
    src = ints(50)
    speed = TestDataSpeed(src, size=20, warmup=5)
    with caplog.at_level(logging.INFO, logger="dataflow.common"):
        out = list(speed)
    assert firsts(out) == list(range(50))
    assert src.passes == 2  # the test pass, then the pass it yields
    assert src.read == 25 + 50  # warmup + size, then the whole pass
    assert speed.rate is not None and speed.rate > 0
    assert "datapoints/s" in caplog.text
    assert "TestDataSpeed" in capsys.readouterr().err  # the progress bar
    assert len(speed) == 50


def test_test_data_speed_start_returns_rate_and_handles_short_upstream(caplog):
    src = OneShot([[i] for i in range(7)])
    with caplog.at_level(logging.INFO, logger="dataflow.common"):
        rate = TestDataSpeed(src, size=100).start()
    assert rate > 0
    assert "ended after 7 of 100" in caplog.text
    # the test pass was closed: a non-reentrant upstream can be iterated again at once
    assert firsts(src) == list(range(7))
    assert TestDataSpeed.start_test is TestDataSpeed.start


def test_test_data_speed_rejects_bad_arguments():
    with pytest.raises(DataFlowArgumentError, match="size"):
        TestDataSpeed(ints(3), size=0)
    with pytest.raises(DataFlowArgumentError, match="warmup"):
        TestDataSpeed(ints(3), warmup=-1)
    with pytest.raises(DataFlowArgumentError, match="ds"):
        TestDataSpeed([1, 2, 3])


# -- PrintData ---------------------------------------------------------------------------------
def test_print_data_describes_first_datapoints_and_passes_everything(caplog):
    dps = [[np.arange(6, dtype=np.int32).reshape(2, 3), 7, "abc", [1.5, [2, [3, [4]]]]]] * 3
    ds = PrintData(Src(dps), num=2, name="mine", max_depth=2, max_list=1)
    with caplog.at_level(logging.INFO, logger="dataflow.common"):
        out = list(ds)
        list(ds)  # a second pass describes nothing more: num counts per process
    assert out == dps and all(a is b for a, b in zip(out, dps))
    text = caplog.text
    assert text.count("DataFlow contents (mine)") == 2
    assert "ndarray int32 of shape (2, 3) in range [0, 5]" in text
    assert "int with value 7" in text
    assert "str of len 3" in text
    assert "list of len 2" in text and "..." in text
    assert len(ds) == 3


def test_print_data_dicts_numpy2_scalars_and_empty_arrays(caplog):
    dp = {"img": np.zeros((0, 4), np.uint8), "label": np.float32(0.5), "ok": np.bool_(True)}
    with caplog.at_level(logging.INFO, logger="dataflow.common"):
        assert list(PrintData(Src([dp]))) == [dp]
    assert "a dict of 3 components" in caplog.text
    assert "img: ndarray uint8 of shape (0, 4)" in caplog.text
    assert "label: float32 with value 0.5" in caplog.text


def test_print_data_writes_to_stderr_when_logging_would_hide_it(capsys):
    log = logging.getLogger("dataflow.common")
    saved = (log.propagate, log.level)
    log.propagate = False  # no handler reaches it
    try:
        list(PrintData(ints(2), name="nohandler"))
        log.propagate = True
        log.setLevel(logging.WARNING)  # INFO disabled
        list(PrintData(ints(2), name="quiet"))
    finally:
        log.propagate = saved[0]
        log.setLevel(saved[1])
    err = capsys.readouterr().err
    assert "DataFlow contents (nohandler): datapoint 0 of 1" in err
    assert "DataFlow contents (quiet)" in err


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
    ds = BatchData(Infinite(), 3)
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
    ds = FixedSizeData(Infinite(), 4)
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


# -- MapData / MapDataComponent / SelectComponent --------------------------------------------------
def test_map_data_maps_drops_none_and_protects_the_upstream():
    items = [[i, i * 10] for i in range(5)]
    src = Src(items)

    def func(dp):
        if dp[0] == 2:
            return None
        dp[1] = -dp[1]  # assigning into the (copied) list must not touch the source
        return dp

    ds = MapData(src, func)
    assert list(ds) == [[0, 0], [1, -10], [3, -30], [4, -40]]
    assert items == [[i, i * 10] for i in range(5)]
    assert len(ds) == 5  # as tensorpack: len does not know about dropped datapoints


def test_map_data_dicts_tuples_empty_infinite_and_bad_func():
    d = {"a": 1}
    assert list(MapData(Src([d]), lambda dp: dp.update(b=2) or dp)) == [{"a": 1, "b": 2}]
    assert d == {"a": 1}
    assert list(MapData(Src([(1, 2)]), lambda dp: list(dp[::-1]))) == [[2, 1]]
    assert list(MapData(Src([]), lambda dp: dp)) == []
    assert firsts(islice(MapData(Infinite(), lambda dp: [dp[0] * 2]), 3)) == [0, 2, 4]
    with pytest.raises(DataFlowArgumentError, match="func must be callable"):
        MapData(ints(2), 3)


def test_map_data_component_int_index_and_key():
    items = [[i, i] for i in range(4)]
    ds = MapDataComponent(Src(items), lambda x: None if x == 1 else x * 100, index=1)
    assert list(ds) == [[0, 0], [2, 200], [3, 300]]
    assert items == [[i, i] for i in range(4)]
    assert len(ds) == 4
    dicts = MapDataComponent(Src([{"x": 2, "y": 3}]), lambda v: v + 1, "y")
    assert list(dicts) == [{"x": 2, "y": 4}]
    assert list(MapDataComponent(Src([(1, 2)]), str, -1)) == [[1, "2"]]  # tuples become lists
    assert firsts(islice(MapDataComponent(Infinite(), lambda v: -v), 3)) == [0, -1, -2]
    assert isinstance(ds, MapData) and ds.func([5, 6]) == [5, 600]


def test_map_data_component_bad_datapoints_name_the_index():
    with pytest.raises(DatapointError, match=r"index 3.*2 components"):
        list(MapDataComponent(Src([[1, 2]]), str, 3))
    with pytest.raises(DatapointError, match=r"key 'z'.*'x'"):
        list(MapDataComponent(Src([{"x": 1}]), str, "z"))
    with pytest.raises(DatapointError, match="list, tuple or dict.*str"):
        list(MapDataComponent(Src(["abc"]), str, 0))
    with pytest.raises(DatapointError, match="list, tuple or dict.*int"):
        list(MapDataComponent(Src([7]), str, 0))
    with pytest.raises(DataFlowArgumentError, match="func"):
        MapDataComponent(ints(2), None)


def test_select_component():
    ds = SelectComponent(Src([["a", "b", "c"]]), [2, 1])
    assert list(ds) == [["c", "b"]] and len(ds) == 1 and isinstance(ds, MapData)
    assert list(SelectComponent(Src([{"x": 1, "y": 2}]), ["y", "y"])) == [[2, 2]]
    assert firsts(islice(SelectComponent(Infinite(), [0]), 2)) == [0, 1]
    with pytest.raises(DatapointError, match=r"index 3.*3 components"):
        list(SelectComponent(Src([[1, 2, 3]]), [0, 3]))
    with pytest.raises(DatapointError, match="key 'q'"):
        list(SelectComponent(Src([{"x": 1}]), ["q"]))
    with pytest.raises(DatapointError, match="list, tuple or dict"):
        list(SelectComponent(Src([5]), [0]))
    with pytest.raises(DataFlowArgumentError, match="idxs"):
        SelectComponent(ints(1), "ab")


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
    assert firsts(islice(RepeatedData(Infinite(), -1), 3)) == [0, 1, 2]


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
    assert firsts(islice(RepeatedDataPoint(Infinite(), 2), 3)) == [0, 0, 1]
    with pytest.raises(DataFlowArgumentError, match="num"):
        RepeatedDataPoint(ints(1), 0)


# -- RandomChooseData / RandomMixData ------------------------------------------------------------
def test_random_choose_data_stops_when_any_upstream_ends():
    set_seed(0)
    a, b = Src([["a", i] for i in range(50)]), Src([["b", i] for i in range(5)])
    out = list(RandomChooseData([a, b]))
    from_b = [dp[1] for dp in out if dp[0] == "b"]
    from_a = [dp[1] for dp in out if dp[0] == "a"]
    assert from_b == [0, 1, 2, 3, 4]  # b was exhausted: that ended the pass
    assert from_a == list(range(len(from_a)))  # each upstream keeps its order
    with pytest.raises(LengthUnknownError):
        len(RandomChooseData([a, b]))


def test_random_choose_data_probabilities_and_infinite_upstreams():
    set_seed(7)
    ds = RandomChooseData([(MapData(Infinite(), lambda dp: ["x"]), 0.9), (Infinite(), 0.1)])
    out = list(islice(ds, 2000))
    share = sum(dp[0] == "x" for dp in out) / len(out)
    assert 0.85 < share < 0.95
    never = RandomChooseData([(ints(3), 0.0), (Infinite(), 1.0)])
    assert firsts(islice(never, 5)) == [0, 1, 2, 3, 4]  # probability 0: never chosen
    tolerant = RandomChooseData([(ints(1), 0.1) for _ in range(10)])  # sums to 0.999...
    assert tolerant.probs.sum() == pytest.approx(1.0, abs=1e-12)


def test_random_choose_data_is_reproducible_under_a_seed():
    def run():
        set_seed(123)
        ds = RandomChooseData([ints(30), ints(30, start=100)])
        return [firsts(ds), firsts(ds)]

    first, again = run(), run()
    assert first == again
    assert first[0] != sorted(first[0])  # really mixed


@pytest.mark.parametrize(
    ("df_lists", "match"),
    [
        ([], "non-empty"),
        ("nope", "non-empty"),
        ([(None, 1.0)], r"df_lists\[0\]"),
        ([1, 2], r"df_lists\[0\]"),
        ("pairs", "-0.5"),
        ("zeros", "all zero"),
        ("sum", "sum to 1"),
        ("nan", "nan"),
        ("text", "'0.5'"),
        ("mixed", "not a mix"),
        ("triple", "pair"),
    ],
)
def test_random_choose_data_rejects_bad_arguments(df_lists, match):
    a, b = ints(2), ints(2)
    cases = {
        "pairs": [(a, 1.5), (b, -0.5)],
        "zeros": [(a, 0.0), (b, 0)],
        "sum": [(a, 0.5), (b, 0.4)],
        "nan": [(a, float("nan")), (b, 1.0)],
        "text": [(a, "0.5"), (b, 0.5)],
        "mixed": [(a, 0.5), b],
        "triple": [(a, 0.5, 1), (b, 0.5, 1)],
    }
    arg = cases.get(df_lists, df_lists) if isinstance(df_lists, str) else df_lists
    with pytest.raises(DataFlowArgumentError, match=match):
        RandomChooseData(arg)


def test_random_mix_data_mixes_each_datapoint_exactly_once():
    set_seed(0)
    a, b = Src([["a", i] for i in range(20)]), Src([["b", i] for i in range(5)])
    ds = RandomMixData([a, b])
    assert len(ds) == 25
    out = list(ds)
    assert sorted(map(tuple, out)) == sorted(
        [("a", i) for i in range(20)] + [("b", i) for i in range(5)]
    )
    assert [dp[1] for dp in out if dp[0] == "b"] == list(range(5))
    assert [dp[0] for dp in out] != ["a"] * 20 + ["b"] * 5
    assert list(RandomMixData([Src([]), ints(2)])) == [[0], [1]]


def test_random_mix_data_requires_len_and_survives_a_short_upstream(caplog):
    with pytest.raises(DataFlowArgumentError, match=r"df_lists\[1\].*len"):
        RandomMixData([ints(2), NoLen([[1]])])

    class Liar(Src):
        def __len__(self):
            return 10

    ds = RandomMixData([Liar([["liar"]] * 3), ints(4)])
    with caplog.at_level(logging.WARNING, logger="dataflow.common"):
        out = list(ds)
    assert len(out) == 7 and "ended before its len() of 10" in caplog.text


# -- ConcatData / JoinData -----------------------------------------------------------------------
def test_concat_data():
    ds = ConcatData([ints(2), Src([]), ints(3, start=10)])
    assert len(ds) == 5 and firsts(ds) == [0, 1, 10, 11, 12]
    assert firsts(islice(ConcatData([ints(1), Infinite()]), 4)) == [0, 0, 1, 2]
    with pytest.raises(DataFlowArgumentError, match="at least one"):
        ConcatData([])
    with pytest.raises(DataFlowArgumentError, match=r"df_lists\[1\]"):
        ConcatData([ints(1), [1, 2]])
    with pytest.raises(DataFlowArgumentError, match="list of DataFlow"):
        ConcatData(ints(2))


def test_join_data_lists_dicts_and_shortest(caplog):
    with caplog.at_level(logging.WARNING, logger="dataflow.common"):
        ds = JoinData([Src([[1, 2], [3, 4], [5, 6]]), Src([["a"], ["b"]])])
    assert "different lengths" in caplog.text
    assert len(ds) == 2 and list(ds) == [[1, 2, "a"], [3, 4, "b"]]
    dicts = JoinData([Src([{"a": 1, "b": 2}]), Src([{"c": 3}])])
    assert list(dicts) == [{"a": 1, "b": 2, "c": 3}]
    assert list(JoinData([ints(2), Src([])])) == []
    assert list(JoinData([Infinite(), ints(2, start=5)])) == [[0, 5], [1, 6]]
    same = ints(2)
    assert list(JoinData([same, same])) == [[0, 0], [1, 1]]


def test_join_data_rejects_mixed_structures():
    with pytest.raises(DatapointError, match=r"df_lists\[0\]: list, df_lists\[1\]: dict"):
        list(JoinData([Src([[1]]), Src([{"a": 1}])]))
    with pytest.raises(DatapointError, match="list, tuple or dict"):
        list(JoinData([Src([3]), Src([[1]])]))


# -- LocallyShuffleData --------------------------------------------------------------------------
def test_locally_shuffle_data_pass_length_and_continuity():
    set_seed(1)
    src = ints(10)
    ds = LocallyShuffleData(src, buffer_size=4)
    assert len(ds) == 10
    passes = [firsts(ds) for _ in range(20)]
    assert all(len(p) == 10 for p in passes)
    assert passes[0] != list(range(10))  # shuffled
    # Every datapoint read from the upstream is either yielded or still in the buffer.
    yielded = sorted(x for p in passes for x in p)
    buffered = firsts(ds._buffer)
    read = sorted(yielded + buffered)
    assert len(read) == 204 and len(buffered) == 4
    assert read == sorted(list(range(10)) * 20 + list(range(4)))  # the upstream, repeated in order


def test_locally_shuffle_data_num_reuse():
    set_seed(2)
    ds = LocallyShuffleData(ints(6), buffer_size=3, num_reuse=2)
    assert len(ds) == 12
    out = firsts(ds)
    assert len(out) == 12
    counts = np.bincount(out + firsts(ds._buffer), minlength=6)
    assert counts.sum() == 15 and set(counts.tolist()) <= {2, 3, 4}


def test_locally_shuffle_data_infinite_and_empty_upstream():
    ds = LocallyShuffleData(Infinite(), buffer_size=5)
    with pytest.raises(LengthUnknownError):
        len(ds)
    out = firsts(islice(ds, 50))
    assert len(set(out)) == 50 and max(out) < 55
    empty = LocallyShuffleData(Src([]), buffer_size=5)
    assert len(empty) == 0 and list(empty) == []
    # an upstream of unknown length that yields nothing: the pass ends instead of spinning
    assert list(LocallyShuffleData(NoLen([]), buffer_size=5)) == []


def test_locally_shuffle_data_drains_the_buffer_when_the_upstream_runs_dry():
    class Dries(Src):
        def __len__(self):
            raise NotImplementedError

        def __iter__(self):
            self.passes += 1
            if self.passes == 1:
                yield from self.items

    ds = LocallyShuffleData(Dries([[i] for i in range(7)]), buffer_size=3)
    assert sorted(firsts(ds)) == list(range(7))


def test_locally_shuffle_data_small_buffers_and_arguments():
    assert len(firsts(LocallyShuffleData(ints(5), buffer_size=1))) == 5  # interval max(1, 1 // 3)
    assert LocallyShuffleData(ints(5), 2).shuffle_interval == 1
    assert LocallyShuffleData(ints(5), 30).shuffle_interval == 10
    for kwargs, name in [
        ({"buffer_size": 0}, "buffer_size"),
        ({"buffer_size": 3, "num_reuse": 0}, "num_reuse"),
        ({"buffer_size": 3, "shuffle_interval": 0}, "shuffle_interval"),
    ]:
        with pytest.raises(DataFlowArgumentError, match=name):
            LocallyShuffleData(ints(5), **kwargs)


def test_locally_shuffle_data_reentrancy_and_abandoned_iterator():
    ds = LocallyShuffleData(ints(10), buffer_size=3)
    it = iter(ds)
    next(it)
    with pytest.raises(ReentrancyError):
        iter(ds)
    it.close()
    assert len(firsts(ds)) == 10


def test_locally_shuffle_data_is_reproducible_and_pickles():
    def run():
        set_seed(5)
        ds = LocallyShuffleData(ints(20), buffer_size=6)
        return [firsts(ds) for _ in range(3)]

    assert run() == run()
    ds = LocallyShuffleData(ints(20), buffer_size=6)
    list(ds)
    assert len(firsts(pickle.loads(pickle.dumps(ds)))) == 20


# -- CacheData -----------------------------------------------------------------------------------
def test_cache_data_reads_upstream_once():
    src = ints(5)
    ds = CacheData(src)
    assert firsts(ds) == list(range(5)) and firsts(ds) == list(range(5))
    assert src.passes == 1 and len(ds) == 5
    assert firsts(ds.buffer) == list(range(5))


def test_cache_data_shuffle():
    set_seed(3)
    ds = CacheData(ints(30), shuffle=True)
    first = firsts(ds)
    assert first == list(range(30))  # the first pass is in upstream order
    later = [firsts(ds) for _ in range(2)]
    assert all(sorted(p) == first for p in later)
    assert later[0] != first and later[0] != later[1]


def test_cache_data_never_serves_a_partial_first_pass():
    src = ints(6)
    ds = CacheData(src)
    it = iter(ds)
    assert firsts(islice(it, 3)) == [0, 1, 2]
    it.close()  # the first pass is abandoned
    assert firsts(ds) == list(range(6))  # re-read from the start, complete
    assert src.passes == 2
    assert firsts(ds) == list(range(6)) and src.passes == 2  # now cached


def test_cache_data_error_in_first_pass_is_not_cached():
    class Flaky(Src):
        def __iter__(self):
            self.passes += 1
            yield [0]
            if self.passes == 1:
                raise OSError("disk hiccup")
            yield [1]

    src = Flaky([])
    ds = CacheData(src)
    with pytest.raises(OSError):
        list(ds)
    assert firsts(ds) == [0, 1] and firsts(ds) == [0, 1] and src.passes == 2


def test_cache_data_empty_upstream_concurrent_iterators_and_close():
    src = Src([])
    ds = CacheData(src)
    assert list(ds) == [] and list(ds) == [] and src.passes == 1 and len(ds) == 0
    cached = CacheData(ints(3))
    list(cached)
    a, b = iter(cached), iter(cached)
    assert [next(a)[0], next(b)[0], next(a)[0]] == [0, 0, 1]
    cached.close()
    assert cached.buffer == []


def test_test_data_speed_counts_what_it_timed():
    from dataflow.raw import DataFromList

    speed = TestDataSpeed(DataFromList([[i] for i in range(100)], shuffle=False), size=60)
    assert speed.start() > 0 and speed.timed == 60
    short = TestDataSpeed(DataFromList([[i] for i in range(10)], shuffle=False), size=60)
    short.start()
    assert short.timed == 10

"""RandomChooseData, RandomMixData, ConcatData, JoinData (dataflow.common.mix): many upstreams."""

from __future__ import annotations

import logging
from itertools import islice

import pytest

from dataflow._engine.seeding import set_seed
from dataflow.common import ConcatData, JoinData, MapData, RandomChooseData, RandomMixData
from dataflow.errors import DataFlowArgumentError, DatapointError, LengthUnknownError
from flows import Count, NoLen, Src, firsts, ints

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(autouse=True)
def _unseeded():
    yield
    set_seed(None)


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
    ds = RandomChooseData([(MapData(Count(), lambda dp: ["x"]), 0.9), (Count(), 0.1)])
    out = list(islice(ds, 2000))
    share = sum(dp[0] == "x" for dp in out) / len(out)
    assert 0.85 < share < 0.95
    never = RandomChooseData([(ints(3), 0.0), (Count(), 1.0)])
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
    assert firsts(islice(ConcatData([ints(1), Count()]), 4)) == [0, 0, 1, 2]
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
    assert list(JoinData([Count(), ints(2, start=5)])) == [[0, 5], [1, 6]]
    same = ints(2)
    assert list(JoinData([same, same])) == [[0, 0], [1, 1]]


def test_join_data_rejects_mixed_structures():
    with pytest.raises(DatapointError, match=r"df_lists\[0\]: list, df_lists\[1\]: dict"):
        list(JoinData([Src([[1]]), Src([{"a": 1}])]))
    with pytest.raises(DatapointError, match="list, tuple or dict"):
        list(JoinData([Src([3]), Src([[1]])]))

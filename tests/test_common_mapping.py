"""MapData, MapDataComponent, SelectComponent (dataflow.common.mapping): output, drops, errors."""

from __future__ import annotations

from itertools import islice

import pytest

from dataflow.common import MapData, MapDataComponent, SelectComponent
from dataflow.errors import DataFlowArgumentError, DatapointError
from flows import Count, Src, firsts, ints

pytestmark = pytest.mark.timeout(30)


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
    assert firsts(islice(MapData(Count(), lambda dp: [dp[0] * 2]), 3)) == [0, 2, 4]
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
    assert firsts(islice(MapDataComponent(Count(), lambda v: -v), 3)) == [0, -1, -2]
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
    assert firsts(islice(SelectComponent(Count(), [0]), 2)) == [0, 1]
    with pytest.raises(DatapointError, match=r"index 3.*3 components"):
        list(SelectComponent(Src([[1, 2, 3]]), [0, 3]))
    with pytest.raises(DatapointError, match="key 'q'"):
        list(SelectComponent(Src([{"x": 1}]), ["q"]))
    with pytest.raises(DatapointError, match="list, tuple or dict"):
        list(SelectComponent(Src([5]), [0]))
    with pytest.raises(DataFlowArgumentError, match="idxs"):
        SelectComponent(ints(1), "ab")

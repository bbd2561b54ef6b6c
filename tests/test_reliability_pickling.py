"""A map function that cannot be pickled for a spawn worker: the error names the path to the
object that fails and that object's type, also inside functools.partial."""

from __future__ import annotations

import functools
import threading

import pytest

from dataflow import MultiProcessMapData
from dataflow.errors import DataFlowArgumentError
from dataflow.raw import DataFromList

pytestmark = pytest.mark.usefixtures("no_leaks")


class Configured:
    def __init__(self, cfg: dict) -> None:
        self.cfg = cfg

    def __call__(self, dp):
        return dp


def scaled(dp, factor, lock=None):
    return [dp[0] * factor]


def _error_of(map_func) -> str:
    ds = None
    with pytest.raises(DataFlowArgumentError) as info:
        ds = MultiProcessMapData(DataFromList([[1], [2]]), 2, map_func, start_method="spawn")
        ds.reset_state()
    if ds is not None:
        ds.close()
    return str(info.value)


@pytest.mark.timeout(60)
def test_the_error_names_the_type_of_the_nested_object_that_fails():
    message = _error_of(Configured({"a": [1, threading.Lock()], "b": 2}))
    assert "map_func.cfg['a'][1] (a lock object)" in message, message
    assert "start_method='spawn'" in message


@pytest.mark.timeout(60)
def test_the_search_looks_inside_partial_arguments_and_keywords():
    message = _error_of(functools.partial(scaled, threading.Lock()))
    assert "map_func.args[0] (a lock object)" in message, message
    message = _error_of(functools.partial(scaled, factor=2, lock=threading.RLock()))
    assert "map_func.keywords['lock'] (a RLock object)" in message, message
    message = _error_of(functools.partial(lambda dp: dp))
    assert "map_func.func (function" in message and "<lambda>" in message, message


@pytest.mark.timeout(60)
def test_a_picklable_partial_passes_the_check():
    with MultiProcessMapData(
        DataFromList([[1], [2], [3]]),
        2,
        functools.partial(scaled, factor=3),
        strict=True,
        start_method="spawn",
    ) as ds:
        assert sorted(dp[0] for dp in ds) == [3, 6, 9]

"""Resume of the base contract and the sources (raw.py): state_dict/load_state_dict, the concatenation
law for every k, counted replay of user flows, user-written state, and the clear errors."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

import dataflow
import flows
import resume_check
from dataflow import (
    DataFlow,
    DataFromDict,
    DataFromGenerator,
    DataFromIterable,
    DataFromList,
    DataFromQueue,
    FakeData,
    MapData,
    RNGDataFlow,
    StateError,
)
from resume_check import check_resume

pytestmark = pytest.mark.timeout(60)


class UserSource(RNGDataFlow):
    """A seed-style source with no state support: resumed by counted replay."""

    def __init__(self, n: int = 9) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        for i in self.rng.permutation(self.n):
            yield [int(i), float(self.rng.rand())]


class UserMap(DataFlow):
    """A user's stage over an upstream, no state support."""

    def __init__(self, ds: DataFlow) -> None:
        self.ds = ds

    def __iter__(self):
        for dp in self.ds:
            if dp[0] % 4:
                yield [dp[0] * 10]


class SeekingSource(DataFlow):
    """The docs' example: a source that saves its own position, so resume seeks."""

    def __init__(self, n: int = 10) -> None:
        self.n = n
        self.reads = 0
        self._start = 0
        self._next = 0

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        start, self._start = self._start, 0
        for i in range(start, self.n):
            self.reads += 1
            self._next = i + 1  # the position after this datapoint, set before it is yielded
            yield [i]

    def state_dict(self):
        return {"next": self._next}

    def load_state_dict(self, state):
        self._start = state["next"]


SOURCES = {
    "list": lambda: DataFromList([[i] for i in range(9)], shuffle=False),
    "list-shuffle": lambda: DataFromList([[i] for i in range(9)], shuffle=True),
    "array-shuffle": lambda: DataFromList(np.arange(18).reshape(9, 2), shuffle=True),
    "dict": lambda: DataFromDict({"a": list(range(7)), "b": np.arange(7.0)}, shuffle=False),
    "dict-shuffle": lambda: DataFromDict({"a": list(range(7)), "b": np.arange(7.0)}),
    "fake": lambda: FakeData([[2, 3], [1]], size=8, random=True),
    "fake-fixed": lambda: FakeData([[2]], size=6, random=False),
    "generator": lambda: DataFromGenerator(lambda: ([i, i * i] for i in range(8))),
    "iterable": lambda: DataFromIterable([[i] for i in range(6)]),
    "user-rng": lambda: UserSource(),
    "user-map": lambda: UserMap(UserSource(12)),
    "user-seeking": lambda: SeekingSource(),
    "count": lambda: flows.Count(7),
}


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_sources_resume_exactly_at_every_k(name):
    check_resume(SOURCES[name], passes=3)


def test_state_is_plain_json_with_version_and_class_names():
    dataflow.set_seed(1)
    ds = MapData(DataFromList(list(range(20))), lambda x: x)
    it = iter(ds)
    next(it)
    state = ds.state_dict()
    assert json.loads(json.dumps(state)) == state
    assert state["format"] == "dataflow.state" and state["version"] == 1
    assert state["pipeline"]["class"] == "MapData"
    assert state["pipeline"]["upstream"][0]["class"] == "DataFromList"
    assert state["pipeline"]["upstream"][0]["state"]["pos"] == 1


def test_load_before_or_after_reset_state_is_the_same():
    def build():
        return DataFromList(list(range(10)), shuffle=True)

    dataflow.set_seed(3)
    ds = build()
    it = iter(ds)
    first = [next(it) for _ in range(4)]
    state = ds.state_dict()
    rest = list(it)
    for reset_first in (True, False):
        dataflow.set_seed(99)
        fresh = build()
        if reset_first:
            fresh.reset_state()
        fresh.load_state_dict(state)
        if not reset_first:
            fresh.reset_state()
        assert first + list(fresh) == first + rest


def test_state_before_first_next_resumes_at_that_pass_start():
    dataflow.set_seed(5)
    ds = DataFromList(list(range(6)))
    list(ds)  # pass 1
    it = iter(ds)  # pass 2 begun, nothing taken
    state = ds.state_dict()
    second = list(it)
    dataflow.set_seed(5)
    again = DataFromList(list(range(6)))
    again.load_state_dict(state)
    assert list(again) == second


def test_saved_at_end_of_pass_never_resumes_into_an_empty_pass():
    def build():
        return UserMap(UserSource(12))

    dataflow.set_seed(2)
    ds = build()
    it = iter(ds)
    first = list(it)  # the whole pass, StopIteration seen
    state_after = ds.state_dict()
    second = list(ds)
    dataflow.set_seed(2)
    ds = build()
    it = iter(ds)
    for _ in range(len(first)):
        next(it)  # the last datapoint is out, StopIteration not yet raised
    state_before_stop = ds.state_dict()
    for state in (state_after, state_before_stop):
        fresh = build()
        fresh.load_state_dict(state)
        assert list(fresh) == second


def test_repeated_save_and_resume_within_a_pass_stays_exact():
    def build():
        return MapData(UserMap(UserSource(40)), lambda dp: [dp[0] + 1])

    dataflow.set_seed(11)
    full = resume_check.run_passes(build(), 2)
    flat = [dp for p in full for dp in p]
    dataflow.set_seed(11)
    ds = build()
    it = iter(ds)
    got = [resume_check.canon(next(it)) for _ in range(5)]
    state = ds.state_dict()
    for step in (7, 3):  # resume, go on a little, save again, resume again
        ds = build()
        ds.load_state_dict(json.loads(json.dumps(state)))
        it = iter(ds)
        got += [resume_check.canon(next(it)) for _ in range(step)]
        state = ds.state_dict()
    ds = build()
    ds.load_state_dict(state)
    got += [resume_check.canon(dp) for dp in ds]
    got += [resume_check.canon(dp) for dp in ds]
    assert got == flat


def test_resume_seeks_in_a_source_with_its_own_state():
    ds = MapData(SeekingSource(100), lambda dp: dp)
    it = iter(ds)
    for _ in range(90):
        next(it)
    state = ds.state_dict()
    fresh_source = SeekingSource(100)
    fresh = MapData(fresh_source, lambda dp: dp)
    fresh.load_state_dict(state)
    assert [dp[0] for dp in fresh] == list(range(90, 100))
    assert fresh_source.reads == 10


def test_counted_replay_is_logged_once_naming_the_class(caplog):
    dataflow.set_seed(0)
    ds = UserMap(UserSource(20))
    it = iter(ds)
    next(it)
    state = ds.state_dict()
    with caplog.at_level(logging.INFO, logger="dataflow.state"):
        for _ in range(2):
            fresh = UserMap(UserSource(20))
            fresh.load_state_dict(state)
            list(fresh)
    messages = [r.getMessage() for r in caplog.records if "UserMap" in r.getMessage()]
    assert len(messages) <= 1  # once per class per process (an earlier test may have logged it)
    assert all("replays" in m for m in messages)


def test_state_of_another_pipeline_names_the_stage_that_differs():
    ds = MapData(DataFromList(list(range(5))), lambda x: x)
    state = ds.state_dict()
    other = MapData(FakeData([[1]], size=5), lambda x: x)
    with pytest.raises(
        StateError, match="MapData.*pipeline has FakeData, the state has DataFromList"
    ):
        other.load_state_dict(state)
    longer = MapData(DataFromList(list(range(6))), lambda x: x)
    it = iter(ds)
    next(it)
    with pytest.raises(StateError, match="saved with 5 datapoints a pass, the flow now has 6"):
        longer.load_state_dict(ds.state_dict())
    with pytest.raises(StateError, match="reads from 1 flow"):
        MapData(MapData(DataFromList([1]), abs), abs).load_state_dict(
            MapData(MapData(MapData(DataFromList([1]), abs), abs), abs).state_dict()
            | {"pipeline": ds.state_dict()["pipeline"] | {"upstream": []}}
        )


def test_newer_format_version_and_garbage_are_refused():
    ds = DataFromList([1, 2])
    state = ds.state_dict()
    with pytest.raises(StateError, match="version 2.*newer"):
        ds.load_state_dict({**state, "version": 2})
    with pytest.raises(StateError, match="not a dataflow state"):
        ds.load_state_dict({"pos": 3})


def test_one_shot_generator_skips_forward_in_a_fresh_object_and_refuses_a_consumed_one():
    ds = DataFromGenerator(iter([[i] for i in range(10)]))
    it = iter(ds)
    first = [next(it) for _ in range(4)]
    state = ds.state_dict()
    fresh = DataFromGenerator(iter([[i] for i in range(10)]))
    fresh.load_state_dict(state)
    assert first + list(fresh) == [[i] for i in range(10)]
    consumed = iter([[i] for i in range(10)])
    next(consumed)
    used = DataFromGenerator(dp for dp in consumed)
    next(iter(used))
    with pytest.raises(StateError, match="one-shot iterator.*pass a callable"):
        used.load_state_dict(state)


def test_queue_source_cannot_save_a_position():
    import queue

    with pytest.raises(StateError, match="DataFromQueue.*queue"):
        MapData(DataFromQueue(queue.Queue()), abs).state_dict()


def test_a_class_with_only_one_of_the_state_methods_is_refused():
    with pytest.raises(TypeError, match="needs both"):

        class Half(DataFlow):  # noqa: F841
            def __iter__(self):
                yield [1]

            def state_dict(self):
                return {}


def test_remote_feed_cannot_save_a_position():
    from dataflow import RemoteDataZMQ

    ds = RemoteDataZMQ("tcp://127.0.0.1:*")
    try:
        with pytest.raises(StateError, match="RemoteDataZMQ.*socket"):
            MapData(ds, abs).state_dict()
    finally:
        ds.close()


SEEKING = [
    "DataFromList", "DataFromDict", "FakeData", "MapData", "MapDataComponent", "SelectComponent",
    "BatchData", "BatchDataByShape", "RepeatedData", "RepeatedDataPoint", "FixedSizeData",
    "ConcatData", "JoinData", "RandomChooseData", "RandomMixData", "LocallyShuffleData",
    "CacheData", "PrintData", "TestDataSpeed", "AugmentImageComponent", "AugmentImageComponents",
    "AugmentImageCoordinates", "MultiThreadMapData", "MultiProcessMapData",
    "MultiProcessMapAndBatchData", "MultiProcessRunner", "MultiProcessRunnerZMQ",
    "MultiThreadRunner", "LMDBData", "HDF5Data", "SVMLightData", "LMDBDataDecoder",
]  # fmt: skip


@pytest.mark.parametrize("name", SEEKING)
def test_library_flows_seek_instead_of_replaying(name):
    # A class whose state hooks are shadowed by its own __iter__ would fall back to counted
    # replay: still exact, but O(k) (and map work repeated). The flows above must not.
    from dataflow import _state

    assert _state.kind(getattr(dataflow, name)) == "native"

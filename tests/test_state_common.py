"""Resume of the combinators (dataflow.common): the concatenation law at every k over 3 passes."""

from __future__ import annotations

import numpy as np
import pytest

from dataflow import (
    BatchData,
    BatchDataByShape,
    CacheData,
    ConcatData,
    DataFromList,
    FakeData,
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
from resume_check import check_resume

pytestmark = pytest.mark.timeout(120)


def src(n=10, shuffle=True, offset=0):
    return DataFromList([[i + offset, float(i) / 2] for i in range(n)], shuffle=shuffle)


def by_shape(n=23):
    return DataFromList([[np.full((1 + i % 3,), i, np.int64)] for i in range(n)], shuffle=True)


FLOWS = {
    "map": lambda: MapData(src(), lambda dp: [dp[0] * 3, dp[1]]),
    "map-filter": lambda: MapData(src(), lambda dp: None if dp[0] % 3 == 0 else dp),
    "map-component": lambda: MapDataComponent(src(), lambda x: x + 1, index=0),
    "select": lambda: SelectComponent(src(), [1, 0]),
    "batch": lambda: BatchData(src(11), 3, remainder=False),
    "batch-remainder": lambda: BatchData(src(11), 3, remainder=True),
    "batch-by-shape": lambda: BatchDataByShape(by_shape(), 2, idx=0),
    "repeated": lambda: RepeatedData(src(4), 3),
    "repeated-forever": lambda: FixedSizeData(RepeatedData(src(4), -1), 9),
    "repeated-datapoint": lambda: RepeatedDataPoint(src(5), 3),
    "fixed-size-keep": lambda: FixedSizeData(src(4), 7, keep_state=True),
    "fixed-size-fresh": lambda: FixedSizeData(src(7), 5, keep_state=False),
    "concat": lambda: ConcatData([src(3), src(4, offset=100), src(2, offset=200)]),
    "join": lambda: JoinData([src(6), src(6, offset=50)]),
    "random-choose": lambda: RandomChooseData([src(6), src(5, offset=100)]),
    "random-choose-probs": lambda: RandomChooseData(
        [(FakeData([[2]], size=30), 0.3), (src(40, offset=100), 0.7)]
    ),
    "random-mix": lambda: RandomMixData([src(4), src(5, offset=100)]),
    "locally-shuffle": lambda: LocallyShuffleData(src(13), 5),
    "locally-shuffle-reuse": lambda: LocallyShuffleData(src(7), 4, num_reuse=2, shuffle_interval=3),
    "locally-shuffle-long": lambda: LocallyShuffleData(src(300), 20, shuffle_interval=7),
    "cache": lambda: CacheData(src(6), shuffle=False),
    "cache-shuffle": lambda: CacheData(src(6), shuffle=True),
    "print": lambda: PrintData(src(5), num=0),
    "test-speed": lambda: TestDataSpeed(src(6), size=3, warmup=0),
    "deep": lambda: BatchData(
        MapData(LocallyShuffleData(RepeatedData(src(5), 2), 4), lambda dp: [dp[0] + 1, dp[1]]),
        3,
        remainder=True,
    ),
}


@pytest.mark.parametrize("name", sorted(FLOWS))
def test_combinators_resume_exactly_at_every_k(name):
    check_resume(FLOWS[name], passes=3)


def test_locally_shuffle_data_saved_twice_in_a_pass_resumes_exactly():
    def build():
        return LocallyShuffleData(src(200), 16)

    check_resume(build, ks=[150, 370], passes=3)
    # save -> resume -> save later in the same pass -> resume again
    import json

    import dataflow
    from resume_check import canon, run_passes

    dataflow.set_seed(4)
    flat = [dp for p in run_passes(build(), 2) for dp in p]
    dataflow.set_seed(4)
    ds = build()
    it = iter(ds)
    got = [canon(next(it)) for _ in range(30)]
    state = ds.state_dict()
    for step in (90, 41):
        ds = build()
        ds.load_state_dict(json.loads(json.dumps(state)))
        it = iter(ds)
        got += [canon(next(it)) for _ in range(step)]
        state = ds.state_dict()
    ds = build()
    ds.load_state_dict(state)
    got += [canon(dp) for dp in ds] + [canon(dp) for dp in ds]
    assert got == flat

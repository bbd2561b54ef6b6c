"""LocallyShuffleData and CacheData (dataflow.common.shuffle): buffers, seeding, reentrancy."""

from __future__ import annotations

import pickle
from itertools import islice

import numpy as np
import pytest

from dataflow._engine.seeding import set_seed
from dataflow.common import CacheData, LocallyShuffleData
from dataflow.errors import DataFlowArgumentError, LengthUnknownError, ReentrancyError
from flows import Count, NoLen, Src, firsts, ints

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(autouse=True)
def _unseeded():
    yield
    set_seed(None)


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
    ds = LocallyShuffleData(Count(), buffer_size=5)
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

"""ShardByRank without a framework: equal shares, disjoint and complete, defaults, resume."""

from __future__ import annotations

import json

import pytest

from dataflow import (
    BatchData,
    DataFromList,
    MultiProcessMapData,
    MultiProcessRunner,
    ShardByRank,
    set_seed,
)
from dataflow.errors import DataFlowArgumentError
from flows import NoLen, double, ints

pytestmark = pytest.mark.timeout(60)


def items(n):
    return [[i] for i in range(n)]


def shards(make, world, **kw):
    return [
        [dp[0] for dp in ShardByRank(make(), rank=r, world_size=world, **kw)] for r in range(world)
    ]


@pytest.mark.parametrize(("n", "world"), [(10, 3), (9, 3), (7, 2), (2, 3), (5, 1)])
def test_drop_gives_equal_disjoint_shards_missing_only_the_remainder(n, world):
    got = shards(lambda: DataFromList(items(n), shuffle=False), world)
    assert [len(s) for s in got] == [n // world] * world
    assert got[0] == list(range(0, n - n % world, world))
    union = sorted(i for s in got for i in s)
    assert union == list(range(n - n % world))
    assert all(
        len(ShardByRank(DataFromList(items(n)), rank=r, world_size=world)) == n // world
        for r in range(world)
    )


@pytest.mark.parametrize(("n", "world"), [(10, 3), (9, 3), (7, 4), (2, 3)])
def test_pad_gives_equal_shards_covering_everything(n, world):
    got = shards(lambda: DataFromList(items(n), shuffle=False), world, equal="pad")
    per_rank = -(-n // world)
    assert [len(s) for s in got] == [per_rank] * world
    assert (
        len(ShardByRank(DataFromList(items(n)), rank=0, world_size=world, equal="pad")) == per_rank
    )
    union = [i for s in got for i in s]
    assert set(union) == set(range(n))
    # the padding repeats the pass's first datapoints, at most world - 1 of them
    repeated = sorted(union)
    for i in range(n):
        repeated.remove(i)
    assert repeated == [i % n for i in range((-n) % world)]


def test_a_flow_of_unknown_length_shards_too():
    got = shards(lambda: NoLen(items(8)), 3)
    assert got == [[0, 3], [1, 4], [2, 5]]


def test_shuffled_sources_shard_disjointly_with_a_shared_seed_and_every_epoch_differs(unseeded):
    def rank_epochs(rank):
        set_seed(5)  # each rank (process) sets the same seed
        ds = ShardByRank(DataFromList(items(12), shuffle=True), rank=rank, world_size=3)
        return [[dp[0] for dp in ds] for _ in range(2)]

    per_rank = [rank_epochs(r) for r in range(3)]
    for epoch in range(2):
        union = [i for r in range(3) for i in per_rank[r][epoch]]
        assert sorted(union) == list(range(12))
    assert per_rank[0][0] != per_rank[0][1]


def test_an_unseeded_shuffle_is_refused(unseeded):
    set_seed(None)
    ds = ShardByRank(DataFromList(items(4), shuffle=True), rank=0, world_size=2)
    with pytest.raises(DataFlowArgumentError, match="set_seed"):
        list(ds)


def test_rank_and_world_size_default_to_the_environment(monkeypatch):
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "4")
    ds = ShardByRank(DataFromList(items(9), shuffle=False))
    assert (ds.rank, ds.world_size) == (2, 4)
    assert [dp[0] for dp in ds] == [2, 6]
    explicit = ShardByRank(DataFromList(items(9), shuffle=False), rank=1)
    assert (explicit.rank, explicit.world_size) == (1, 4)
    monkeypatch.delenv("RANK")
    monkeypatch.delenv("WORLD_SIZE")
    assert ShardByRank(DataFromList(items(3))).world_size == 1


def test_bad_arguments_are_named(monkeypatch):
    with pytest.raises(DataFlowArgumentError, match="equal"):
        ShardByRank(DataFromList(items(3)), 0, 2, equal="repeat")
    with pytest.raises(DataFlowArgumentError, match="rank must be in"):
        ShardByRank(DataFromList(items(3)), 2, 2)
    with pytest.raises(DataFlowArgumentError, match="world_size"):
        ShardByRank(DataFromList(items(3)), 0, 0)
    monkeypatch.setenv("RANK", "one")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(DataFlowArgumentError, match="RANK"):
        ShardByRank(DataFromList(items(3)))


@pytest.mark.usefixtures("no_leaks")
def test_composes_with_a_parallel_map_and_a_sharded_runner():
    per_rank = []
    for rank in range(2):
        with MultiProcessMapData(
            ShardByRank(DataFromList(items(11), shuffle=False), rank=rank, world_size=2),
            2,
            double,
            strict=True,
        ) as ds:
            per_rank.append(sorted(dp[0] for dp in ds))
    assert per_rank == [[0, 4, 8, 12, 16], [2, 6, 10, 14, 18]]
    runs = []
    for rank in range(2):
        with MultiProcessRunner(
            ShardByRank(DataFromList(items(16), shuffle=False), rank=rank, world_size=2),
            num_prefetch=4,
            num_proc=2,
            shard=True,
        ) as ds:
            it = iter(ds)
            runs.append(sorted(next(it)[0] for _ in range(len(ds))))
    assert sorted(runs[0] + runs[1]) == list(range(16))  # rank, then worker: each datapoint once


@pytest.mark.parametrize("k", [0, 1, 3, 4])
@pytest.mark.parametrize("equal", ["drop", "pad"])
def test_resume_per_rank_is_exact(k, equal):
    def build(rank):
        return BatchData(
            ShardByRank(ints(14), rank=rank, world_size=3, equal=equal), 2, remainder=True
        )

    for rank in range(3):
        whole = [b[0].tolist() for b in build(rank)]
        first = build(rank)
        it = iter(first)
        head = [next(it)[0].tolist() for _ in range(min(k, len(whole)))]
        state = json.loads(json.dumps(first.state_dict()))
        resumed = build(rank)
        resumed.load_state_dict(state)
        rest = [b[0].tolist() for b in resumed]
        if k < len(whole):
            assert head + rest == whole, (rank, k)
        else:  # saved after the pass's last batch: the next pass (docs/resume.md)
            assert rest == whole, (rank, k)

"""ShardByRank under real torch.distributed (gloo on 127.0.0.1): equal batch counts, disjoint shards."""

from __future__ import annotations

import multiprocessing
import socket
from datetime import timedelta

import pytest

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")

from torch.utils.data import DataLoader  # noqa: E402

from dataflow import BatchData, DataFromList, MapData, ShardByRank, set_seed, to_torch  # noqa: E402

DATASET = 23  # a multiple of neither 2 nor 3
BATCH = 2
EPOCHS = 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train(rank: int, world: int, port: int, equal: str, results) -> None:
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world,
        timeout=timedelta(seconds=30),
    )
    try:
        set_seed(1234)  # the same on every rank: every epoch's shuffle is the same everywhere
        source = DataFromList([[i] for i in range(DATASET)], shuffle=True)
        ds = BatchData(
            MapData(ShardByRank(source, equal=equal), lambda dp: [dp[0] * 10]),
            BATCH,
            remainder=True,
        )
        loader = DataLoader(to_torch(ds), batch_size=None)
        epochs = []
        for _ in range(EPOCHS):
            seen, batches = [], 0
            for batch in loader:
                seen.extend(int(v) // 10 for v in batch[0])
                batches += 1
                dist.all_reduce(torch.ones(1))  # a collective per step, as DDP's backward does
            counts = [torch.zeros(1, dtype=torch.int64) for _ in range(world)]
            dist.all_gather(counts, torch.tensor([batches]))
            shards: list = [None] * world
            dist.all_gather_object(shards, seen)
            epochs.append(([int(c) for c in counts], shards))
        if rank == 0:
            results.put(epochs)
    finally:
        dist.destroy_process_group()


def run_ranks(world: int, equal: str):
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    port = free_port()
    procs = [ctx.Process(target=train, args=(r, world, port, equal, results)) for r in range(world)]
    for p in procs:
        p.start()
    try:
        epochs = results.get(timeout=60)
    finally:
        for p in procs:
            p.join(30)
        alive = [p for p in procs if p.is_alive()]
        for p in alive:
            p.kill()
            p.join()
    assert not alive, "a rank hung"
    assert [p.exitcode for p in procs] == [0] * world
    return epochs


@pytest.mark.timeout(120)
@pytest.mark.parametrize("world", [2, 3])
def test_ddp_ranks_get_equal_disjoint_shards_each_epoch(world):
    epochs = run_ranks(world, "drop")
    per_rank = DATASET // world
    orders = []
    for counts, shards in epochs:
        assert counts == [-(-per_rank // BATCH)] * world  # the same batch count on every rank
        assert [len(s) for s in shards] == [per_rank] * world
        union = [i for s in shards for i in s]
        assert len(set(union)) == len(union) == DATASET - DATASET % world  # disjoint; drop the rest
        orders.append(shards)
    assert orders[0] != orders[1]  # a new shuffle each epoch, shared by the ranks


@pytest.mark.timeout(120)
def test_ddp_pad_covers_the_whole_dataset():
    world = 3
    for counts, shards in run_ranks(world, "pad"):
        assert len(set(counts)) == 1
        assert [len(s) for s in shards] == [-(-DATASET // world)] * world
        union = [i for s in shards for i in s]
        assert set(union) == set(range(DATASET))  # nothing dropped
        assert len(union) - DATASET == (-DATASET) % world  # the padding, at most world - 1

"""Resume of the runners: shard=True exact per shard with the same worker count (a clear error with
another), i.i.d. runners keep the pass length and draw fresh streams."""

from __future__ import annotations

import json
from collections import Counter

import pytest

import dataflow
from dataflow import (
    DataFromList,
    MapData,
    MultiProcessRunner,
    MultiProcessRunnerZMQ,
    MultiThreadRunner,
    StateError,
)
from resume_check import canon, check_resume, save_after

pytestmark = pytest.mark.timeout(120)


def source(n=30):
    return MapData(DataFromList([[i] for i in range(n)], shuffle=True), lambda dp: [dp[0] * 10])


def process_runner(num=2, seed=3):
    return MultiProcessRunner(source(), 4, num, shard=True, seed=seed, start_method="fork")


def zmq_runner(num=2, seed=3):
    return MultiProcessRunnerZMQ(source(), num, hwm=2, shard=True, seed=seed, start_method="fork")


def thread_runner(num=2, seed=3):
    return MultiThreadRunner(source, 4, num, shard=True, seed=seed)


def run(build, state=None, passes=1):
    ds = build()
    if state is not None:
        ds.load_state_dict(json.loads(json.dumps(state)))
    out = [[canon(dp) for dp in ds] for _ in range(passes)]
    ds.close()
    return out


@pytest.mark.parametrize("build", [process_runner, zmq_runner, thread_runner])
def test_sharded_runner_resumes_exactly_with_the_same_worker_count(build):
    # With a seed the runner merges its workers in a fixed order: the output is one sequence.
    check_resume(build, passes=3)


def test_sharded_runner_without_a_seed_resumes_each_shard_exactly_once():
    def build():
        return MultiProcessRunner(source(40), 4, 2, shard=True, start_method="fork")

    dataflow.set_seed(None)
    first, state = save_after(build(), 15)
    (rest,) = run(build, state)
    assert Counter(first + rest) == Counter(canon([i * 10]) for i in range(40))


def test_sharded_runner_refuses_another_worker_count():
    _, state = save_after(process_runner(2), 1)
    with process_runner(3) as other, pytest.raises(StateError, match="same count"):
        other.load_state_dict(state)


def test_iid_runner_keeps_the_pass_length_after_resume():
    def build():
        return MultiProcessRunner(source(20), 4, 2, seed=1, start_method="fork")

    _, state = save_after(build(), 7)
    with build() as again:
        again.load_state_dict(state)
        assert len(list(again)) == 13  # the rest of the pass
        assert len(list(again)) == 20

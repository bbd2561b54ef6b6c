"""restart_workers on the runners: a SIGKILLed worker is replaced; with shard=True the new one
resumes the dead one's shard where the consumer stood, so the pass stays exactly one pass."""

from __future__ import annotations

import os
import signal
from collections import Counter

import pytest

from dataflow import MultiProcessRunner, MultiProcessRunnerZMQ
from dataflow.errors import DataFlowArgumentError, WorkerDied
from dataflow.raw import DataFromList
from flows import METHODS

pytestmark = pytest.mark.usefixtures("no_leaks")

N = 3000


def upstream() -> DataFromList:
    return DataFromList([[i, f"s{i}"] for i in range(N)], shuffle=True)


def one_pass_killing(ds, kills: dict[int, int]) -> Counter:
    """Iterate one pass; after ``k`` datapoints, SIGKILL worker ``kills[k]``."""
    got: Counter = Counter()
    for k, dp in enumerate(ds):
        if k in kills:
            os.kill(ds.worker_pids()[kills[k]], signal.SIGKILL)
        got[(dp[0], dp[1])] += 1
    return got


WHOLE = Counter((i, f"s{i}") for i in range(N))


@pytest.mark.timeout(120)
@pytest.mark.parametrize("method", METHODS)
def test_sigkill_of_a_sharded_worker_mid_pass_keeps_the_pass_exact(method):
    ds = MultiProcessRunner(upstream(), 8, 2, shard=True, restart_workers=True, start_method=method)
    assert one_pass_killing(ds, {700: 0}) == WHOLE
    # the next passes are exact too (the restarted copy went on from where its shard stood)
    assert one_pass_killing(ds, {100: 1, 2000: 0}) == WHOLE
    assert one_pass_killing(ds, {}) == WHOLE
    ds.close()


@pytest.mark.timeout(120)
def test_seeded_sharded_runner_zmq_restart_is_exact():
    ds = MultiProcessRunnerZMQ(upstream(), 3, hwm=4, shard=True, restart_workers=2, seed=5)
    assert one_pass_killing(ds, {10: 2, 1500: 1}) == WHOLE
    ds.close()


@pytest.mark.timeout(60)
def test_past_the_restart_budget_worker_died_names_every_death():
    ds = MultiProcessRunner(upstream(), 8, 2, shard=True, restart_workers=1)
    with pytest.raises(
        WorkerDied, match=r"2 worker deaths in this pass, more than restart_workers=1"
    ):
        one_pass_killing(ds, {200: 0, 900: 1})
    ds.close()


@pytest.mark.timeout(60)
def test_an_iid_runner_just_restarts_the_worker():
    ds = MultiProcessRunner(upstream(), 8, 2, restart_workers=True)
    got = one_pass_killing(ds, {500: 0})
    assert sum(got.values()) == N  # len(ds) datapoints, from fresh copies (duplicates allowed)
    ds.close()


def test_restart_workers_is_checked():
    with pytest.raises(DataFlowArgumentError, match="restart_workers"):
        MultiProcessRunner(upstream(), 8, 2, restart_workers="yes")

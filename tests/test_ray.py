"""RayMapData and RayRunner on a real local Ray (one per test process, started once)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from collections import Counter

import numpy as np
import pytest

import dataflow
from dataflow import DataFromList, MultiProcessMapData, RayMapData, RayRunner
from dataflow import stats as dfstats
from dataflow._engine.workers import pid_alive
from dataflow.errors import DataFlowArgumentError, DataFlowError, WorkerDied, WorkerError

ray = pytest.importorskip("ray", reason="the [ray] extra is part of the dev install")

import flows  # noqa: E402
from flows import Count, double, fail_on_13, slow_double, wait_until  # noqa: E402

# One worker runs every Ray test, one after the other (./run passes --dist loadgroup), so one Ray
# starts for them, and it is shut down before that worker goes on to other files (whose no_leaks
# fixture would see Ray's processes as leftover children).
# The first test's timeout includes the module's Ray start (setup counts against it): under load
# (the suite's other worker busy on the same 2 cores) ray.init took up to a minute here.
pytestmark = [pytest.mark.timeout(300), pytest.mark.xdist_group("ray")]

HALF_CPU = {"num_cpus": 0.5}  # three actors fit the 2-CPU test Ray

# Read by the Ray processes at start (they inherit the driver's environment): actor worker
# processes get 3 minutes to register instead of 1, for a machine busy with other tests.
RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_worker_register_timeout_seconds": "180"}


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    """One local Ray (127.0.0.1, 2 CPUs, no dashboard) for this file's tests.

    Module-scoped, not session-scoped, on purpose: the Ray tests run on one xdist worker (their
    xdist_group) and Ray is shut down before that worker goes on to other files."""
    with pytest.MonkeyPatch.context() as mp:
        for key, value in RAY_ENV.items():
            mp.setenv(key, os.environ.get(key, value))
        for attempt in range(3):
            try:
                ray.init(
                    address="local",
                    num_cpus=2,
                    include_dashboard=False,
                    log_to_driver=False,
                    _node_ip_address="127.0.0.1",
                )
                break
            except Exception:  # Ray waits 30 s (fixed) for its raylet: a busy machine can miss it
                ray.shutdown()
                if attempt == 2:
                    raise
        # The tests' map functions and flows live in tests/, which the actors cannot import.
        ray.cloudpickle.register_pickle_by_value(flows)
        yield
        ray.shutdown()


def our_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("dataflow")}


def alive_actor_ids() -> set[str]:
    # Ray's actor table in the GCS (the public state API needs the dashboard, which is off)
    from ray._private import state

    return {aid for aid, info in state.actors().items() if info["State"] != "DEAD"}


def wait_dead(ids: set[str]) -> None:
    # ray.kill is asynchronous: the GCS marks the actors dead shortly after close() returns.
    wait_until(lambda: not ids & alive_actor_ids(), 30, "the actors to be marked dead")


def ids_of(ds) -> set[str]:
    return {a._actor_id.hex() for a in ds.actor_handles() if a is not None}


def test_strict_unordered_is_exactly_once_every_pass():
    n = 10_000
    with RayMapData(Count(n), double, 2, strict=True) as ds:
        assert len(ds) == n
        for _ in range(3):
            got = Counter(dp[0] for dp in ds)
            assert got == Counter(2 * i for i in range(n))


def test_strict_ordered_equals_map_data():
    with RayMapData(Count(2000), slow_double, 2, strict=True, ordered=True, batch_size=16) as ds:
        for _ in range(2):
            assert [dp[0] for dp in ds] == [2 * i for i in range(2000)]


def test_non_strict_pass_has_len_and_continues_the_stream():
    with RayMapData(
        DataFromList(list(range(10)), shuffle=False), lambda x: x, 2, strict=False
    ) as ds:
        first = [x for x in ds]
        second = [x for x in ds]
    assert len(first) == len(second) == 10
    # Two passes of the map are two upstream passes in all, mapped once each.
    assert Counter(first + second) == Counter(list(range(10)) * 2)


def test_arrays_arrive_as_read_only_views():
    def make(dp):
        return [np.full((256, 1024), dp[0], dtype=np.float32)]  # 1 MiB: out of band

    with RayMapData(Count(8), make, 2, strict=True, ordered=True, batch_size=2) as ds:
        out = [dp[0] for dp in ds]
    assert [int(a[0, 0]) for a in out] == list(range(8))
    assert not out[0].flags.writeable


@pytest.mark.parametrize("ordered", [False, True])
def test_sigkilled_actor_is_replaced_and_the_pass_stays_exact(ordered):
    n = 3000
    with RayMapData(Count(n), slow_double, 2, strict=True, ordered=ordered, batch_size=32) as ds:
        it = iter(ds)
        got = [next(it)[0] for _ in range(200)]
        old = ds.worker_pids()
        os.kill(old[0], signal.SIGKILL)
        got += [dp[0] for dp in it]
        assert ds.worker_pids()[0] != old[0]  # replaced
        expected = [2 * i for i in range(n)]
        assert (got if ordered else sorted(got)) == expected
        assert sorted(dp[0] for dp in ds) == expected  # the next pass too


def test_past_max_restarts_raises_worker_died_naming_the_actor_and_reason():
    with RayMapData(Count(5000), slow_double, 1, strict=True, max_restarts=1) as ds:
        it = iter(ds)
        next(it)
        first = ds.worker_pids()[0]
        os.kill(first, signal.SIGKILL)  # within the budget: replaced
        got = 1
        while ds.worker_pids()[0] == first:
            next(it)
            got += 1
        assert got < 5000, "the pass ended before the actor was replaced"
        second = ds.worker_pids()[0]
        os.kill(second, signal.SIGKILL)  # past it
        with pytest.raises(WorkerDied) as info:
            list(it)
    message = str(info.value)
    assert "RayMapData Ray actor 0" in message and f"pid {second}" in message
    assert "died:" in message and "replaced 1 time(s) already (max_restarts=1)" in message
    assert info.value.worker.startswith("RayMapData Ray actor 0")


def test_map_exception_carries_the_remote_traceback():
    with RayMapData(Count(100), fail_on_13, 2, strict=True) as ds:
        with pytest.raises(WorkerError) as info:
            list(ds)
    err = info.value
    assert err.exc_type_name == "ZeroDivisionError"
    assert "no thirteen" in str(err)
    assert "fail_on_13" in err.traceback_text and "Traceback" in err.traceback_text
    assert isinstance(err.__cause__, ZeroDivisionError)


def test_unserializable_map_function_is_named_at_construction():
    lock = threading.Lock()

    def locked(dp):
        with lock:
            return dp

    with pytest.raises(
        DataFlowArgumentError, match=r"RayMapData: map_func<closure lock> \(in .*locked\) cannot be"
    ):
        RayMapData(Count(10), locked, 1)


def skip_fives(dp):
    """flows.slow_double, raising on multiples of 5 (defined here: pickled by value)."""
    if dp[0] % 5 == 0:
        raise ValueError(f"no multiple of five: {dp[0]}")
    return slow_double(dp)


FIVES = skip_fives.__module__  # the actors cannot import this module: send the function by value
ray.cloudpickle.register_pickle_by_value(sys.modules[FIVES])


def kept(n: int) -> list[int]:
    return [2 * i for i in range(n) if i % 5]


@pytest.mark.parametrize("ordered", [False, True])
def test_on_error_skip_drops_and_counts_what_raises_every_pass(ordered):
    with RayMapData(
        Count(400), skip_fives, 2, strict=True, ordered=ordered, batch_size=16, on_error="skip"
    ) as ds:
        for p in range(1, 3):
            got = [dp[0] for dp in ds]
            assert (got if ordered else sorted(got)) == kept(400)
            assert ds.errors_skipped == 80 * p


def test_past_max_errors_raises_with_the_remote_traceback():
    with RayMapData(Count(400), skip_fives, 2, on_error="skip", max_errors=3) as ds:
        with pytest.raises(DataFlowError, match="4 datapoints failed, more than max_errors=3") as e:
            list(ds)
    assert "ValueError: no multiple of five" in str(e.value) and "skip_fives" in str(e.value)
    with pytest.raises(DataFlowArgumentError, match="max_errors applies to on_error='skip'"):
        RayMapData(Count(10), double, 1, max_errors=3)


@pytest.fixture
def counting():
    was = dfstats.enabled()
    dfstats.enable()
    yield
    dfstats.enable(was)


def test_stats_report_the_same_figures_as_multiprocess_map_data(counting):
    n = 1500

    def figures(ds, kill: bool):
        with ds:
            it = iter(ds)
            got = [next(it)[0] for _ in range(100)]
            if kill:
                os.kill(ds.worker_pids()[0], signal.SIGKILL)
            live = ds.stats().stages[0]
            got += [dp[0] for dp in it]
            assert sorted(got) == kept(n)
            return live, ds.stats().stages[0], ds.errors_skipped

    ray_live, ray_st, ray_skipped = figures(
        RayMapData(Count(n), skip_fives, 2, strict=True, batch_size=32, on_error="skip"), True
    )
    mp_live, mp_st, _ = figures(
        MultiProcessMapData(Count(n), 2, skip_fives, strict=True, on_error="skip"), False
    )
    assert ray_st.name == "RayMapData" and mp_st.name == "MultiProcessMapData"
    # Every figure the local map reports, the Ray stage reports too.
    for field in ("workers", "workers_busy", "busy_s", "in_flight", "occupancy", "restarts"):
        assert getattr(mp_st, field) is not None and getattr(ray_st, field) is not None, field
    assert ray_st.datapoints == mp_st.datapoints == len(kept(n))
    assert ray_st.workers == 2 and len(ray_st.busy_s) == 2
    # slow_double sleeps 0.5 ms * (i % 7) on the kept datapoints: ~1.2 s of work in all, all
    # of it reported (a killed actor's unreported time is lost, the work is redone)
    assert sum(ray_st.busy_s) > 0.5 and 0 < ray_st.workers_busy <= 1
    assert ray_st.restarts == 1 and mp_st.restarts == 0
    assert ray_st.skipped == ray_skipped == mp_st.skipped == n // 5
    assert ray_live.in_flight is not None and 0 < ray_live.occupancy <= 1
    assert ray_st.in_flight == 0


def test_bad_arguments_fail_at_construction():
    with pytest.raises(DataFlowArgumentError, match="num_actors"):
        RayMapData(Count(10), double, 0)
    with pytest.raises(DataFlowArgumentError, match="batch_size"):
        RayMapData(Count(10), double, 1, batch_size=0)
    with pytest.raises(DataFlowArgumentError, match="actor_options may not set"):
        RayMapData(Count(10), double, 1, actor_options={"max_restarts": 5})
    with pytest.raises(DataFlowArgumentError, match="map_func"):
        RayMapData(Count(10), None, 1)


def test_close_leaves_no_actor_and_no_thread():
    threads = our_threads()
    ds = RayMapData(Count(500), double, 2, strict=True, actor_options=HALF_CPU)
    runner = RayRunner(Count(40), 2, actor_options=HALF_CPU)
    assert len(list(ds)) == 500
    assert len(list(runner)) == 40
    ids = ids_of(ds) | ids_of(runner)
    assert len(ids) == 4 and ids <= alive_actor_ids()
    pids = ds.worker_pids() + runner.worker_pids()
    ds.close()
    runner.close()
    wait_dead(ids)
    wait_until(lambda: not any(pid_alive(p) for p in pids), 30, "the actors' processes to exit")
    assert our_threads() == threads


def test_garbage_collection_kills_the_actors():
    ds = RayMapData(Count(100), double, 1, strict=True)
    list(ds)
    ids = ids_of(ds)
    del ds
    import gc

    gc.collect()
    assert ids
    wait_dead(ids)


def test_resume_ordered_with_more_actors_is_exact():
    def build(n):
        return RayMapData(
            Count(300),
            slow_double,
            n,
            strict=True,
            ordered=True,
            batch_size=8,
            actor_options=HALF_CPU,
        )

    with build(2) as ds:
        full = [dp[0] for _ in range(2) for dp in ds]
    for k in (0, 150, 300, 301):  # the start, mid-pass, the pass boundary, into the second
        ds = build(2)
        it = iter(ds)
        first = []
        while len(first) < k:
            try:
                first.append(next(it)[0])
            except StopIteration:
                it = iter(ds)
        state = json.loads(json.dumps(ds.state_dict()))
        del it
        ds.close()
        with build(3) as again:
            again.load_state_dict(state)
            rest = [dp[0] for dp in again]
            if len(first) + len(rest) < len(full):
                rest += [dp[0] for dp in again]
        assert first + rest == full, f"k={k}"


def test_resume_unordered_with_fewer_actors_is_exactly_once():
    with RayMapData(Count(400), slow_double, 2, strict=True, batch_size=8) as ds:
        it = iter(ds)
        first = [next(it)[0] for _ in range(123)]
        state = json.loads(json.dumps(ds.state_dict()))
        del it
    with RayMapData(Count(400), slow_double, 1, strict=True, batch_size=8) as again:
        again.load_state_dict(state)
        rest = [dp[0] for dp in again]
    assert Counter(first + rest) == Counter(2 * i for i in range(400))


def test_runner_shards_read_each_datapoint_once_per_pass():
    with RayRunner(DataFromList(list(range(101)), shuffle=True), 2, seed=3) as ds:
        assert len(ds) == 101
        passes = [list(ds) for _ in range(2)]
    for p in passes:
        assert sorted(p) == list(range(101))
    assert passes[0] != passes[1]  # shuffled anew each pass


def test_runner_resume_is_exact_in_multiset():
    def build():
        return RayRunner(DataFromList(list(range(60)), shuffle=False), 2)

    with build() as ds:
        it = iter(ds)
        first = [next(it) for _ in range(25)]
        state = json.loads(json.dumps(ds.state_dict()))
        del it
    with build() as again:
        again.load_state_dict(state)
        rest = list(again)
    assert sorted(first + rest) == list(range(60))


def test_runner_exception_carries_the_remote_traceback():
    from dataflow import MapData

    with RayRunner(MapData(Count(30), fail_on_13), 2) as ds:
        with pytest.raises(WorkerError, match="no thirteen") as info:
            list(ds)
    assert "fail_on_13" in info.value.traceback_text


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _accepts(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.timeout(240)
def test_joins_a_cluster_started_with_ray_start(tmp_path):
    port = _free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    ray_bin = os.path.join(os.path.dirname(sys.executable), "ray")
    head = subprocess.Popen(
        [ray_bin, "start", "--head", f"--port={port}", "--num-cpus=1", "--block",
         "--include-dashboard=false", "--node-ip-address=127.0.0.1"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        wait_until(lambda: _accepts(port) or head.poll() is not None, 120, "the Ray head")
        assert head.poll() is None, "ray start --head exited"
        script = textwrap.dedent(
            f"""
            import dataflow
            ds = dataflow.RayMapData(dataflow.DataFromList(list(range(50)), shuffle=False),
                                     lambda x: x * 3, 1, ordered=True,
                                     address="127.0.0.1:{port}")
            print(sum(ds))
            ds.close()
            """
        )
        out = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=180
        )
        assert out.returncode == 0, out.stderr[-3000:]
        assert out.stdout.split()[-1] == str(3 * sum(range(50)))
    finally:
        os.killpg(head.pid, signal.SIGTERM)  # only the head we started (never `ray stop`)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait(timeout=30)
    # Its GCS, raylet and workers stop with it (they run in the session it started in).
    wait_until(lambda: not _in_session(head.pid), 60, "the Ray head's processes to exit")


def _in_session(sid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid and fields[0] != "Z":
                found.append(int(entry))
    return found


def test_top_level_names_import_no_ray():
    code = "import sys, dataflow; dataflow.RayMapData; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr


def test_a_tiny_map_sends_batches_not_one_call_a_datapoint():
    # One Ray call a datapoint would cap a tiny map at ~1.6k datapoints/s: count the calls.
    with RayMapData(Count(20_000), double, 2, strict=True) as ds:
        ds.reset_state()
        calls = []
        send = ds._pool.send
        ds._pool.send = lambda w, task: (calls.append(len(task[-1])), send(w, task))[1]
        assert sum(1 for _ in ds) == 20_000
    assert sum(calls) == 20_000 and len(calls) <= 20_000 // 100
    assert dataflow.RayMapData is RayMapData

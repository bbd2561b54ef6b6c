"""Ray actors as a worker pool: the engine's pool interface (``send``, ``recv``, ``restart``,
``close``) over Ray, so that the maps and runners above it keep their logic unchanged.

Each actor runs a :class:`~dataflow._engine.workers.Job` in a thread and hands its messages over
when the driver calls ``take``; the driver keeps one ``take`` open per actor. An actor that dies
turns into one ``DIED`` message carrying Ray's reason. Ray is imported at first use
(``pip install 'pydataflow[ray]'``). The flows are in :mod:`dataflow.ray_backend`.
"""

from __future__ import annotations

import os
import pickle
import threading
import time
from collections import deque
from typing import Any

from .._lazy import require
from ..errors import DataFlowArgumentError, DataFlowClosedError, WorkerDied
from . import procs, seeding
from .context import WorkerInfo, set_worker_info
from .job import (
    DATA,
    DIED,
    DONE,
    ERROR,
    Job,
    WorkerIO,
    _error_payload,
    make_worker_error,
    run_job,
)
from .stage import default_workers

__all__ = ["RayPool", "connect", "disconnect", "serialize", "DEFAULT_BATCH", "ray_module"]

_POLL_S = 0.25  # the longest the driver waits on Ray without looking at its own state again
_TAKE_S = 1.0  # how long an actor holds a take() call open when it has nothing to hand over
_START_S = 60.0  # actors that are not up after this long: the cluster lacks resources
# A take() that has waited this long asks the job to hand over what it holds (see
# _ActorIO.consumer_waiting); before, results travel a task's worth at a time.
_STARVED_S = 0.05
# A tiny map_func costs ~0.5 ms of Ray per call: 256 datapoints a call make that ~2 us each
# (measured: 1.6k calls/s over 2 actors; 330k items/s at 256 items a call).
DEFAULT_BATCH = 256


def ray_module() -> Any:
    return require("ray", "ray", who="dataflow's Ray backend")


# -- the connection ----------------------------------------------------------------------------------

_conn_lock = threading.Lock()
_conn = {"ours": False, "users": 0}


def connect(address: str | None, who: str) -> None:
    """Make sure this process is connected to a Ray; count one more user of the connection."""
    ray = ray_module()
    with _conn_lock:
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True}
            if address is None and not os.environ.get("RAY_ADDRESS"):
                kwargs.update(address="local", num_cpus=default_workers())
            elif address is not None:
                kwargs["address"] = address
            try:
                ray.init(**kwargs)
            except Exception as e:
                where = address or os.environ.get("RAY_ADDRESS") or "a local Ray"
                raise RuntimeError(f"{who}: could not start or join {where}: {e}") from e
            _conn["ours"] = True
        _conn["users"] += 1


def disconnect() -> None:
    ray = ray_module()
    with _conn_lock:
        _conn["users"] = max(0, _conn["users"] - 1)
        if _conn["users"] == 0 and _conn["ours"]:
            _conn["ours"] = False
            if ray.is_initialized():
                ray.shutdown()


def serialize(obj: Any, name: str, who: str) -> bytes:
    """``obj`` as Ray's cloudpickle writes it, or an error naming the object."""
    cloudpickle = ray_module().cloudpickle
    try:
        return cloudpickle.dumps(obj, protocol=5)
    except Exception as e:  # noqa: BLE001 - serializers raise many types
        what = getattr(obj, "__qualname__", None) or type(obj).__name__
        raise DataFlowArgumentError(
            f"{who}: {_culprit(obj, name, cloudpickle)} (in {what}) cannot be serialized for the "
            f"Ray actors: {type(e).__name__}: {e}. Ray sends it to each actor with cloudpickle; "
            "keep locks, open files, sockets and live pipelines out of it (create them in the "
            "actor, e.g. on first use)"
        ) from e


def _culprit(obj: Any, name: str, cloudpickle: Any, depth: int = 0) -> str:
    """The innermost part of ``obj`` that does not serialize: a closure variable, an attribute."""

    def fails(x: Any) -> bool:
        try:
            cloudpickle.dumps(x, protocol=5)
        except Exception:  # noqa: BLE001
            return True
        return False

    if depth > 4:
        return name
    parts: list[tuple[str, Any]] = []
    code = getattr(obj, "__code__", None)
    if code is not None and getattr(obj, "__closure__", None):
        for var, cell in zip(code.co_freevars, obj.__closure__):
            try:
                parts.append((f"{name}<closure {var}>", cell.cell_contents))
            except ValueError:  # an empty cell
                continue
    elif hasattr(obj, "__dict__") and not isinstance(obj, type):
        parts.extend((f"{name}.{k}", v) for k, v in vars(obj).items())
    for path, part in parts:
        if fails(part):
            return _culprit(part, path, cloudpickle, depth + 1)
    return name


# -- the actor side ----------------------------------------------------------------------------------


class _ActorIO(WorkerIO):
    """A job's channel inside an actor: results queue up until the driver's next ``take``."""

    def __init__(self, host: _ActorHost, info: WorkerInfo) -> None:
        self.info = info
        self._host = host

    def put(self, item: Any) -> None:
        host = self._host
        with host.cv:
            while host.held >= host.item_cap:
                host.cv.wait()
            host.items.append(item)
            host.held += 1
            host.cv.notify_all()

    def flush(self) -> None:
        pass  # a take() hands over everything queued

    def send(self, kind: int, payload: Any) -> None:
        host = self._host
        with host.cv:
            host.seal()
            host.msgs.append((kind, payload))
            host.cv.notify_all()

    def get_task(self) -> Any:
        host = self._host
        with host.cv:
            while not host.tasks:
                host.cv.wait()
            return host.tasks.popleft()

    def consumer_waiting(self) -> bool:
        # Each take() is a Ray call (~0.5 ms of driver and raylet time): results travel a task's
        # worth (or 1 MiB of arrays) at a time, one by one only for a driver starved a while.
        # (Handing over whenever a take() waited made W4 on Ray one call per 2 images: 455
        # img/s against 723 this way, benchmarks/ray_compare.py.)
        host = self._host
        return host.waiting and time.monotonic() - host.waiting_since > _STARVED_S


class _ActorHost:
    """The body of one Ray actor: runs a :class:`Job` in a thread, hands messages over on take().

    Methods run in the actor's thread pool (``max_concurrency`` > 1), so a ``take`` waiting for
    output does not hold back a ``submit`` of new tasks.
    """

    def __init__(
        self, job: bytes, index: int, num_workers: int, seed: int | None, position: str, cap: int
    ) -> None:
        self.cv = threading.Condition()
        self.msgs: deque = deque()
        self.items: list[Any] = []
        self.tasks: deque = deque()
        self.held = 0
        self.item_cap = max(1, cap)
        self.waiting = False
        self.waiting_since = 0.0
        # The actor's process is ours alone: the same fixed malloc thresholds as our worker
        # processes (procs.steady_malloc: without them an image map faults its heap in again
        # for nearly every image).
        procs.steady_malloc()
        info = WorkerInfo(index, num_workers, seed, "ray")
        set_worker_info(info)
        seeding.seed_globals(position)
        io = _ActorIO(self, info)
        self._thread = threading.Thread(
            target=self._main, args=(job, io), name=f"dataflow-ray-{index}", daemon=True
        )
        self._thread.start()

    def _main(self, job: bytes, io: _ActorIO) -> None:
        try:
            loaded: Job = pickle.loads(job)
        except BaseException as e:  # noqa: BLE001 - reported like any worker failure
            io.send(ERROR, _error_payload(e, in_process=True))
            return
        run_job(loaded, io)

    def seal(self) -> None:
        """Close the batch of datapoints being collected (call with ``cv`` held)."""
        if self.items:
            self.msgs.append((DATA, self.items))
            self.items = []

    def pid(self) -> int:
        return os.getpid()

    def submit(self, tasks: list[Any]) -> None:
        with self.cv:
            self.tasks.extend(tasks)
            self.cv.notify_all()

    def take(self, timeout: float) -> list[Any]:
        """Everything queued for the driver (waits up to ``timeout`` seconds for something)."""
        with self.cv:
            if not self.msgs and not self.items:
                self.waiting = True
                self.waiting_since = time.monotonic()
                self.cv.wait_for(lambda: self.msgs or self.items, timeout)
                self.waiting = False
            self.seal()
            out, self.msgs = list(self.msgs), deque()
            self.held = 0
            self.cv.notify_all()
            return out


_actor_class: Any = None


def _remote_host() -> Any:
    global _actor_class
    if _actor_class is None:
        _actor_class = ray_module().remote(_ActorHost)
    return _actor_class


# -- the driver side ---------------------------------------------------------------------------------


class RayPool:
    """Ray actors behind the engine's pool interface (``send``, ``recv``, ``restart``, ``close``).

    Each actor runs the job in a thread; the driver keeps one ``take`` call open per actor and
    delivers what comes back in order. A call that fails because its actor died becomes one
    ``DIED`` message, with Ray's reason as the payload, after everything the actor had handed over.
    """

    kind = "ray"

    def __init__(
        self,
        *,
        name: str,
        job: bytes,
        num_workers: int,
        seed: int | None,
        position: str,
        item_cap: int = 1 << 40,
        actor_options: dict[str, Any] | None = None,
        max_restarts: int = 3,
    ) -> None:
        self.name = name
        self.num_workers = num_workers
        self._job = job
        self._seed = seed
        self._position = position
        self._item_cap = item_cap
        self._options = dict(actor_options or {})
        self._max_restarts = max_restarts
        self.owner_pid = os.getpid()
        self._closed = False
        n = num_workers
        self._actors: list[Any] = [None] * n
        self._pids: list[int | None] = [None] * n
        self._ids: list[str] = [""] * n
        self._takes: list[Any] = [None] * n
        self._inbox: list[deque] = [deque() for _ in range(n)]
        self._finished = [False] * n
        self._restarts = [0] * n
        self._reasons: list[str] = [""] * n
        self._rr = 0

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        try:
            for w in range(self.num_workers):
                self._spawn(w)
            self._wait_up(range(self.num_workers))
        except BaseException:
            self.close()
            raise

    def _spawn(self, w: int) -> None:
        options = {"num_cpus": 1, **self._options}
        options.update(max_concurrency=4, max_restarts=0, max_task_retries=0)
        actor = (
            _remote_host()
            .options(**options)
            .remote(self._job, w, self.num_workers, self._seed, self._position, self._item_cap)
        )
        self._actors[w] = actor
        self._ids[w] = actor._actor_id.hex()[:12]
        self._pids[w] = None
        self._inbox[w].clear()
        self._finished[w] = False
        self._takes[w] = actor.take.remote(_TAKE_S)

    def _wait_up(self, workers: Any) -> None:
        ray = ray_module()
        workers = list(workers)
        refs = [self._actors[w].pid.remote() for w in workers]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=_START_S)
        if len(ready) < len(refs):
            raise WorkerDied(
                f"{self.name}: {len(refs) - len(ready)} of {len(refs)} Ray actors did not start "
                f"within {_START_S:.0f} s; the cluster may lack the resources asked for each "
                f"({self._options or {'num_cpus': 1}}): see `ray status`",
                worker=self.name,
            )
        for w, ref in zip(workers, refs):
            try:
                self._pids[w] = ray.get(ref)
            except Exception as e:  # noqa: BLE001 - an actor that failed to start
                raise WorkerDied(
                    f"{self.describe(w)} failed to start: {_reason(e)}", worker=self.describe(w)
                ) from e

    def restart(self, w: int) -> None:
        if self._restarts[w] >= self._max_restarts:
            err = self.died_error(w, self._reasons[w])
            raise WorkerDied(
                f"{err} -- it was replaced {self._restarts[w]} time(s) already "
                f"(max_restarts={self._max_restarts})",
                worker=err.worker,
            )
        self._restarts[w] += 1
        self._kill(w)
        self._spawn(w)
        self._wait_up([w])

    def _kill(self, w: int) -> None:
        actor, self._actors[w] = self._actors[w], None
        self._takes[w] = None
        if actor is not None:
            try:
                ray_module().kill(actor, no_restart=True)
            except Exception:  # noqa: BLE001 - already dead, or Ray already shut down
                pass

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if os.getpid() != self.owner_pid:
            return
        ray = ray_module()
        if ray.is_initialized():
            for w in range(self.num_workers):
                self._kill(w)
        for box in self._inbox:
            box.clear()

    @property
    def closed(self) -> bool:
        return self._closed

    def pids(self) -> list[int | None]:
        return list(self._pids)

    def actors(self) -> list[Any]:
        """The current actor handles (None for a slot being replaced)."""
        return list(self._actors)

    def describe(self, w: int) -> str:
        return f"{self.name} Ray actor {w} (actor id {self._ids[w]}, pid {self._pids[w]})"

    def died_error(self, w: int, reason: Any) -> WorkerDied:
        return WorkerDied(
            f"{self.describe(w)} died: {reason or 'no reason given by Ray'}",
            worker=self.describe(w),
        )

    # -- talking to the actors ---------------------------------------------------------------
    def send(self, w: int, payload: Any) -> None:
        actor = self._actors[w]
        if actor is not None:
            actor.submit.remote([payload])  # a dead actor's loss shows in its take()

    def recv(self, eligible: list[int] | None = None) -> tuple[int, int, Any]:
        """The next message ``(worker, kind, payload)`` from a worker in ``eligible``.

        Raises :class:`WorkerError` for an exception in the job; returns ``(w, DIED, reason)``
        once for an actor that died.
        """
        ray = ray_module()
        n = self.num_workers
        order = list(range(n)) if eligible is None else list(eligible)
        while True:
            if self._closed:
                raise DataFlowClosedError(f"{self.name} was closed while being iterated")
            m = len(order)
            for k in range(m):
                w = order[(self._rr + k) % m]
                if self._inbox[w]:
                    self._rr = (self._rr + k + 1) % m
                    return self._deliver(w, self._inbox[w].popleft())
            pending = {self._takes[w]: w for w in order if self._takes[w] is not None}
            if not pending:
                raise RuntimeError(f"{self.name}: recv() with no live actor to wait for")
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=_POLL_S)
            for ref in ready:
                self._received(pending[ref], ref)

    def _received(self, w: int, ref: Any) -> None:
        ray = ray_module()
        self._takes[w] = None
        try:
            msgs = ray.get(ref)
        except ray.exceptions.RayActorError as e:  # died, or its node was lost
            self._reasons[w] = _reason(e)
            self._inbox[w].append((DIED, self._reasons[w]))
            return
        except ray.exceptions.ActorUnavailableError as e:  # pragma: no cover - restarting
            self._reasons[w] = _reason(e)
            self._inbox[w].append((DIED, self._reasons[w]))
            return
        self._inbox[w].extend(msgs)
        if not any(kind in (DONE, ERROR) for kind, _ in msgs):
            self._takes[w] = self._actors[w].take.remote(_TAKE_S)

    def _deliver(self, w: int, msg: tuple[int, Any]) -> tuple[int, int, Any]:
        kind, payload = msg
        if kind == ERROR:
            self._finished[w] = True
            raise make_worker_error(payload, self.describe(w))
        if kind == DONE:
            self._finished[w] = True
        return w, kind, payload


def _reason(exc: BaseException) -> str:
    """Ray's explanation of an actor's death, on one line."""
    text = " ".join(str(exc).split())
    return text[:500] + ("..." if len(text) > 500 else "")

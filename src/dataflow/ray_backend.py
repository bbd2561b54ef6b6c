"""Run the map stage, or sharded copies of a whole flow, on Ray actors.

:class:`RayMapData` is :class:`~dataflow.MultiProcessMapData` with the workers on a Ray cluster:
the upstream runs in the driver (your process), ``map_func`` runs in ``num_actors`` Ray actors.
:class:`RayRunner` is :class:`~dataflow.MultiProcessRunner` on actors: each actor runs its own copy
of the flow (with ``shard=True``, over its own disjoint share of the source), so reading and
decoding happen on the cluster and the driver only receives results.

Both are the library's own maps and runners, with one more kind of worker pool (:class:`RayPool`)
under them: order, ``strict``, exactly-once, resume (``state_dict``/``load_state_dict``) and error
reporting are those of the local classes, word for word; see :mod:`dataflow.parallel_map` and
:mod:`dataflow.parallel`. What differs:

- Connecting: ``address=None`` uses the Ray this process already initialized, else joins the
  cluster named by the ``RAY_ADDRESS`` environment variable, else starts a local Ray (as many CPUs
  as this process may use, no dashboard). ``address="auto"``, ``"host:port"`` or
  ``"ray://host:10001"`` joins a running cluster. A Ray the flow started or connected to itself is
  shut down (disconnected) when the last flow using it closes.
- Transport: datapoints and results travel through Ray's object store (Ray's serializer,
  cloudpickle, numpy arrays out of band). Large numpy arrays in results arrive without a copy as
  **read-only** views of the object store (``arr.flags.writeable`` is False): copy one before
  writing into it.
- What crosses to the actors (``map_func``, the flow of a runner) is serialized with Ray's
  cloudpickle: lambdas and closures work; an object that cannot be serialized (a lock, an open
  file, a socket) fails at construction with an error naming it. On a cluster, the modules they
  come from (and dataflow itself) must be importable on every node.
- Faults: an exception in ``map_func`` (or in a runner's copy) is raised in the driver as
  :class:`~dataflow.errors.WorkerError` with the remote traceback text. An actor that dies (its
  process killed, its node lost) is replaced, at most ``max_restarts`` times per actor, and
  every datapoint it held is sent again; duplicates are dropped by sequence number, so a strict
  pass stays exactly once and an ordered one in order. Past the budget (or for a runner, whose
  copies hold state that cannot be replayed): :class:`~dataflow.errors.WorkerDied` naming the
  actor and Ray's reason. Ray's own retries are off (``max_restarts=0``, ``max_task_retries=0``
  for every actor): they would re-run calls at least once and silently reset actor state.
- Lifecycle: actors start at ``reset_state()`` (called for you before the first pass) and are
  killed on ``close()``, garbage collection, interpreter exit, and after an error (the next pass
  starts fresh ones). Waits on actors are bounded, so a lost actor is noticed, never waited on
  forever.

Ray is an optional dependency (``pip install 'pydataflow[ray]'``), imported when a Ray flow is
built.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any

from ._engine.raypool import DEFAULT_BATCH, RayPool, connect, disconnect, ray_module, serialize
from ._engine.stage import check_count, default_workers
from .base import DataFlow
from .errors import DataFlowArgumentError
from .parallel import MultiProcessRunner, _RunnerJob
from .parallel_map import _ParallelMap

__all__ = ["RayMapData", "RayRunner"]


def _check_restarts(value: object, who: str) -> int:
    return check_count(value, who, "max_restarts", minimum=0)


def _check_options(value: object, who: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise DataFlowArgumentError(
            f"{who}: actor_options must be a dict of Ray actor options (e.g. "
            f"{{'num_cpus': 2}}), got {type(value).__name__}"
        )
    reserved = {"max_restarts", "max_task_retries", "max_concurrency"} & set(value)
    if reserved:
        raise DataFlowArgumentError(
            f"{who}: actor_options may not set {sorted(reserved)}: the flow manages restarts "
            "itself (use its max_restarts argument)"
        )
    return dict(value)


class _RayOwner:
    """What RayMapData and RayRunner share: the connection and the pool of actors."""

    _who: str
    _connected = False

    def _init_ray(self, address: object, actor_options: object, max_restarts: object) -> None:
        if address is not None and not isinstance(address, str):
            raise DataFlowArgumentError(
                f"{self._who}: address must be None, 'auto', 'host:port' or 'ray://host:port', "
                f"got {type(address).__name__}"
            )
        self._address = address
        self._actor_options = _check_options(actor_options, self._who)
        self._max_restarts = _check_restarts(max_restarts, self._who)
        ray_module()  # a missing Ray fails here, at construction

    def _ray_pool(self, job: Any, num_workers: int, seed: int | None, cap: int) -> RayPool:
        if not self._connected:
            connect(self._address, self._who)
            self._connected = True
            self._register_cleanup(disconnect)  # type: ignore[attr-defined]
        return RayPool(
            name=self._who,
            job=pickle.dumps(job, protocol=5),
            num_workers=num_workers,
            seed=seed,
            position=self._position(),  # type: ignore[attr-defined]
            item_cap=cap,
            actor_options=self._actor_options,
            max_restarts=self._max_restarts,
        )

    def actor_handles(self) -> list[Any]:
        """The Ray actor handles currently working for this flow (empty before start)."""
        pool = getattr(self, "_pool", None)
        if pool is None or pool.closed:
            return []
        return pool.actors()


class RayMapData(_RayOwner, _ParallelMap):
    """``MapData`` with ``map_func`` running in ``num_actors`` Ray actors.

    The upstream runs in the driver; its datapoints go to the actors ``batch_size`` a call,
    results come back as they finish (``ordered=True``: in input order). ``strict=True``: each
    pass is exactly one upstream pass, every datapoint once; ``strict=False``: the upstream repeats
    and a pass yields ``len(ds)`` datapoints (see :mod:`dataflow.parallel_map`). ``len()`` is
    ``len(ds)``. Resume saves the upstream position and what was delivered, nothing about actors:
    a state loads into a RayMapData with another ``num_actors`` (or into a MultiProcessMapData
    of the same mode). Example::

        ds = RayMapData(DataFromList(paths, shuffle=True), load_and_augment, num_actors=32,
                        strict=True, address="auto")
    """

    def __init__(
        self,
        ds: DataFlow,
        map_func: Callable[[Any], Any] | None,
        num_actors: int | None = None,
        *,
        batch_size: int = DEFAULT_BATCH,
        strict: bool = True,
        ordered: bool = False,
        buffer_size: int | None = None,
        address: str | None = None,
        actor_options: dict[str, Any] | None = None,
        max_restarts: int = 3,
        seed: int | None = None,
        on_error: str = "raise",
        max_errors: int | None = None,
    ) -> None:
        """
        Args:
            ds: the upstream flow (iterated in the driver).
            map_func: datapoint -> datapoint (``None`` drops it, with ``strict=False`` only).
            num_actors: actors to start (default: the CPUs this process may use).
            batch_size: datapoints sent to an actor in one call. Each call costs ~0.5 ms of Ray
                overhead: keep it large for cheap functions; for slow ones (a large image each)
                a few dozen keeps the actors evenly loaded.
            strict, ordered: as in :class:`~dataflow.MultiProcessMapData`.
            buffer_size: datapoints in flight at most (default: two calls' worth per actor).
            address: the Ray to use (see the module doc).
            actor_options: Ray options for each actor (``num_cpus``, ``resources``,
                ``runtime_env``...; default one CPU each).
            max_restarts: replacements of each actor after it dies.
            seed: seed for the actors' global generators (as for MultiProcessMapData).
            on_error, max_errors: as in :class:`~dataflow.MultiProcessMapData`: ``"skip"``
                drops a datapoint on which ``map_func`` raises (in the actor) and counts it in
                ``errors_skipped``, even with ``strict``; past ``max_errors`` failures the pass
                raises DataFlowError with the count and the last remote traceback. A datapoint on
                which actors died three times is skipped too (with ``"raise"``: WorkerDied).
        """
        who = "RayMapData"
        self._who = who
        if num_actors is None:
            num_actors = default_workers()
        n = check_count(num_actors, who, "num_actors")
        bs = check_count(batch_size, who, "batch_size")
        if buffer_size is None:
            buffer_size = 2 * bs * n
        self._init_map(
            who,
            ds,
            n,
            map_func,
            buffer_size,
            strict,
            ordered,
            seed,
            None,
            False,
            "ray",
            on_error,
            max_errors,
        )
        self._restart = True  # the pool enforces max_restarts
        self._track = True  # what each actor holds is sent again when it dies
        self._init_ray(address, actor_options, max_restarts)
        self.num_actors = n
        self.batch_size = bs
        self._func_bytes = serialize(map_func, "map_func", who)

    def _payload(self, obj: Any, name: str) -> Any:
        return self._func_bytes if name == "map_func" else serialize(obj, name, self._who)

    def _make_pool(self) -> Any:
        self._prepare()
        return self._ray_pool(self._job, self._num_workers, self._stage_seed(), 1 << 40)


class RayRunner(_RayOwner, MultiProcessRunner):
    """Run copies of ``ds`` in ``num_actors`` Ray actors and yield what they produce.

    ``shard=True`` (the default here): one pass of the runner is one pass of the source, split
    between the actors, every datapoint exactly once (the source(s) at the root of each copy yield
    every ``n``-th datapoint; see :mod:`dataflow.parallel` for what that requires of the source).
    ``shard=False``: each actor runs its own full copy, forever; a pass yields ``len(ds)``
    datapoints of their merged streams (same distribution, not the same set). ``len()`` is
    ``len(ds)``. An actor that dies raises :class:`~dataflow.errors.WorkerDied` (its copy's
    position cannot be replayed elsewhere); resume with ``shard=True`` needs the same
    ``num_actors``, as the local runners do.
    """

    def __init__(
        self,
        ds: DataFlow,
        num_actors: int,
        *,
        shard: bool = True,
        address: str | None = None,
        actor_options: dict[str, Any] | None = None,
        max_restarts: int = 3,
        num_prefetch: int | None = None,
        seed: int | None = None,
    ) -> None:
        """
        Args:
            ds: the flow each actor runs a copy of.
            num_actors: actors to start.
            shard: split one pass of the source between the actors (see above).
            address, actor_options: as in :class:`RayMapData`.
            max_restarts: accepted for symmetry with RayMapData; a runner's actor that dies
                ends the pass with WorkerDied.
            num_prefetch: datapoints an actor may hold for the driver (default 64 per actor).
            seed: seed for the copies' random streams (as for MultiProcessRunner).
        """
        n = check_count(num_actors, "RayRunner", "num_actors")
        if num_prefetch is None:
            num_prefetch = 64 * n
        super().__init__(ds, num_prefetch, n, seed=seed, shard=shard, start_method="spawn")
        self._who = "RayRunner"
        self._kind = "ray"
        self._start_method = None
        self._init_ray(address, actor_options, max_restarts)
        self.num_actors = n
        serialize(ds, "ds", self._who)  # fail now, not at the first pass

    def _prepare(self) -> None:
        if self._pool is not None and not self._pool.closed:
            return
        # Serialized again at each start: the copy carries the flow as it stands now.
        ds = serialize(self.ds, "ds", self._who)
        shard_seed = self._shard_seed() if self._shard else None
        self._job = _RunnerJob(
            ds, self._shard, shard_seed, self._seed is not None, self._job_resume()
        )

    def _make_pool(self) -> Any:
        self._prepare()
        return self._ray_pool(self._job, self.num_proc, self._workers_seed(), self._item_cap)

"""W2, tiny datapoints across processes: ``[i, 0.5]`` made in 2 workers, delivered to the consumer.

Measures what a library's transport between processes costs per datapoint: the workers do almost
nothing, so the figure is the price of moving a tiny datapoint from a worker to the consumer.
Metric: µs per datapoint (wall clock, since producers run concurrently with the consumer).

Two workloads share this module (namespaces with the fields of a workload module):

- ``W2-ONE``: datapoints delivered one by one; one pass is 2**14 datapoints ``[i, 0.5]``.
- ``W2-BATCHED`` (W2b): batched 256 in the workers (``[int array (256,), float array (256,)]``);
  one pass is 2**16 datapoints (256 batches).

The user function is :func:`make_dp` (index -> ``[i, 0.5]``), identical for every library, run in
the workers. A correct pass holds every index once: its count and ``(sum of i, sum of 0.5s)`` are
checked. Modes where each worker replays the whole source (runners without sharding) are flagged
i.i.d.: they deliver the right number of datapoints but not one exact pass.

Configs (2 workers everywhere):

- ours: ``default`` ``MultiProcessRunnerZMQ(source, num_proc=2)`` (each worker replays the source:
  i.i.d.); ``shard`` the same with ``shard=True`` over a source that reads
  :func:`dataflow.get_worker_info` (``shards_itself = True``): exact passes.
- tensorpack: ``default`` ``MultiProcessRunnerZMQ(source, num_proc=2)``; ``runner``
  ``MultiProcessRunner(source, num_prefetch=100, num_proc=2)`` (multiprocessing queue). Both i.i.d.
- torch: ``default`` an ``IterableDataset`` sharded with ``get_worker_info`` (as torch's docs show)
  in ``DataLoader(num_workers=2)`` (``batch_size=None`` one by one, 256 batched); ``persistent``
  the same with ``persistent_workers=True, prefetch_factor=8``.
- grain: ``default`` ``MapDataset.range(n).map(make_dp)[.batch(256)].repeat()
  .to_iter_dataset().mp_prefetch(MultiprocessingOptions(num_workers=2))`` iterated as one stream,
  a pass being the next ``n`` datapoints (grain starts its spawned workers once per iterator, and
  merges them round-robin, so each window of a pass's length is one exact pass); ``buffer16`` the
  same with ``per_worker_buffer_size=16``.
- spdl: ``default`` ``PipelineBuilder().add_source(range(n), continuous=True).pipe(make_dp,
  concurrency=2, executor=ProcessPoolExecutor(2))`` (batched: ``.aggregate(256).pipe(collate)`` in
  the main process), one ``get_iterator()`` per pass; ``region`` the stages in a
  ``.to(ProcessPoolExecutorConfig(max_workers=2), buffer_size=256) ... .to(MAIN_PROCESS)`` region
  (batched: aggregation and collation in the workers).

Ceiling: two forked processes writing their share of each pass into a pipe each, as packed binary
records (``struct``: int64 + float64), 128 records a message (``default``) or one
(``per_message``); the consumer reads the two pipes in turn (buffered) and yields ``[i, x]`` lists
one by one (batched: the workers send each batch as two raw numpy buffers, the consumer rebuilds
them with ``np.frombuffer``). No pickling, no framework: the least work that delivers the same
datapoints across processes. The harness's own work per yield (timing, checksum) is included in
every library's wall-clock figure, the ceiling's too.

This module also holds the pieces W3 and W5 share (a worker-produce spec with one builder per
library, and forked-worker plumbing for the ceilings).
"""

from __future__ import annotations

import itertools
import os
import signal
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np

from workloads._common import Built, as_numpy

NUM_WORKERS = 2
N_ONE = 2**14
N_BATCHED = 2**16
BATCH = 256


# -- the user function ---------------------------------------------------------------------------
def make_dp(i: int) -> list:
    """The user's function, identical for every library: an index becomes a tiny datapoint."""
    return [i, 0.5]


def collate(items: list) -> list[np.ndarray]:
    """Stack a list of datapoints into one array per component (for spdl's aggregate)."""
    return [np.asarray(component) for component in zip(*items)]


# -- the generic worker-produce pipelines (shared with W3) -----------------------------------------
@dataclass(frozen=True)
class Spec:
    """Datapoints ``make(i)`` for ``i in range(n)`` produced in the workers, one pass per epoch.

    ``batch``: batch that many in the workers (None: one by one). ``hwm``: cap on the messages
    each worker may have in transit where a library's default would hold too much memory (W3's
    largest arrays), applied to every library's queue knob alike; None keeps the defaults.
    """

    make: Callable[[int], Any]
    n: int
    batch: int | None = None
    hwm: int | None = None
    tiny: bool = True  # small items: spdl regions then move many a transfer

    @property
    def per_pass(self) -> int:
        return self.n // self.batch if self.batch else self.n


def _split(n: int, k: int, m: int) -> range:
    return range(k, n, m)


def build_ours_runner(spec: Spec, shard: bool) -> Built:
    from dataflow import BatchData, DataFlow, MultiProcessRunnerZMQ, get_worker_info

    class Produce(DataFlow):
        """The whole source in each worker (the simplest use)."""

        def __init__(self, n: int, make: Callable[[int], Any]) -> None:
            self.n, self.make = n, make

        def __len__(self) -> int:
            return self.n

        def __iter__(self) -> Iterator:
            return map(self.make, range(self.n))

    class ProduceShard(Produce):
        """Each worker produces its share of the source (exact passes with ``shard=True``)."""

        shards_itself = True

        def __iter__(self) -> Iterator:
            info = get_worker_info()
            k, m = (info.id, info.num_workers) if info is not None else (0, 1)
            return map(self.make, _split(self.n, k, m))

    ds: Any = (ProduceShard if shard else Produce)(spec.n, spec.make)
    if spec.batch:
        ds = BatchData(ds, spec.batch)
    kw = {} if spec.hwm is None else {"hwm": spec.hwm}
    ds = MultiProcessRunnerZMQ(ds, num_proc=NUM_WORKERS, shard=shard, **kw)
    ds.reset_state()
    return Built(ds.__iter__, close=ds.close, iid=not shard)


def _tensorpack_close(ds: Any) -> Callable[[], None]:
    """Stop a tensorpack runner's workers now (tensorpack itself only does it at exit)."""

    def close() -> None:
        procs = list(getattr(ds, "_procs", [])) + list(getattr(ds, "procs", []))
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join(5)
        ctx = getattr(ds, "context", None)
        if ctx is not None:
            ctx.destroy(0)

    return close


def build_tensorpack_runner(spec: Spec, zmq: bool) -> Built:
    from tensorpack.dataflow import BatchData, DataFlow, MultiProcessRunner, MultiProcessRunnerZMQ

    class Produce(DataFlow):
        def __init__(self, n: int, make: Callable[[int], Any]) -> None:
            self.n, self.make = n, make

        def __len__(self) -> int:
            return self.n

        def __iter__(self) -> Iterator:
            return map(self.make, range(self.n))

    ds: Any = Produce(spec.n, spec.make)
    if spec.batch:
        ds = BatchData(ds, spec.batch)
    if zmq:
        kw = {} if spec.hwm is None else {"hwm": spec.hwm}
        ds = MultiProcessRunnerZMQ(ds, num_proc=NUM_WORKERS, **kw)
    else:
        ds = MultiProcessRunner(ds, num_prefetch=spec.hwm or 100, num_proc=NUM_WORKERS)
    ds.reset_state()
    return Built(ds.__iter__, close=_tensorpack_close(ds), iid=True)


def _torch_close(loader: Any) -> Callable[[], None]:
    def close() -> None:
        it = getattr(loader, "_iterator", None)
        if it is not None:
            it._shutdown_workers()

    return close


def build_torch_iterable(spec: Spec, persistent: bool) -> Built:
    from torch.utils.data import DataLoader, IterableDataset, get_worker_info

    class Produce(IterableDataset):
        def __init__(self, n: int, make: Callable[[int], Any]) -> None:
            self.n, self.make = n, make

        def __iter__(self) -> Iterator:
            info = get_worker_info()
            k, m = (info.id, info.num_workers) if info is not None else (0, 1)
            return map(self.make, _split(self.n, k, m))

    kw: dict[str, Any] = {}
    if persistent:
        kw = {"persistent_workers": True, "prefetch_factor": spec.hwm or 8}
    elif spec.hwm is not None:
        kw = {"prefetch_factor": min(spec.hwm, 2)}
    loader = DataLoader(
        Produce(spec.n, spec.make), batch_size=spec.batch, num_workers=NUM_WORKERS, **kw
    )
    return Built(loader.__iter__, close=_torch_close(loader))


def build_grain_stream(spec: Spec, buffer: int) -> Built:
    import grain

    ds = grain.MapDataset.range(spec.n).map(spec.make)
    if spec.batch:
        ds = ds.batch(spec.batch)
    opts = grain.MultiprocessingOptions(num_workers=NUM_WORKERS, per_worker_buffer_size=buffer)
    it_ds = ds.repeat().to_iter_dataset().mp_prefetch(opts)
    it = iter(it_ds)
    per_pass = spec.per_pass
    return Built(lambda: itertools.islice(it, per_pass), close=it.close)


def build_spdl(spec: Spec, region: bool, stack: Callable[[list], Any] | None = None) -> Built:
    """spdl's pipeline; ``stack`` turns an aggregated list into a batch (default :func:`collate`)."""
    from concurrent.futures import ProcessPoolExecutor

    from spdl.pipeline import PipelineBuilder

    make = spec.make
    stack = stack or collate
    b = PipelineBuilder().add_source(range(spec.n), continuous=True)
    executor = None
    if region:
        from spdl.pipeline.defs import MAIN_PROCESS, ProcessPoolExecutorConfig

        size_in = 256 if spec.tiny else 8
        size_out = (2 if spec.batch else 256) if spec.tiny else 1
        b = b.to(ProcessPoolExecutorConfig(max_workers=NUM_WORKERS), buffer_size=size_in)
        b = b.pipe(make, concurrency=1)
        if spec.batch:
            b = b.aggregate(spec.batch).pipe(stack)
        b = b.to(MAIN_PROCESS, buffer_size=size_out)
    else:
        executor = ProcessPoolExecutor(max_workers=NUM_WORKERS)
        b = b.pipe(make, concurrency=NUM_WORKERS, executor=executor)
        if spec.batch:
            b = b.aggregate(spec.batch).pipe(stack)
    pipeline = b.add_sink(buffer_size=3).build(num_threads=NUM_WORKERS)
    pipeline.start()

    def close() -> None:
        pipeline.stop()
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)

    return Built(pipeline.get_iterator, close=close)


def peer_builders(spec: Spec) -> dict[str, dict[str, Callable[[Any], Built]]]:
    """Every library's configs for a worker-produce workload (all but the ceiling)."""
    return {
        "ours": {
            "default": lambda _: build_ours_runner(spec, shard=False),
            "shard": lambda _: build_ours_runner(spec, shard=True),
        },
        "tensorpack": {
            "default": lambda _: build_tensorpack_runner(spec, zmq=True),
            "runner": lambda _: build_tensorpack_runner(spec, zmq=False),
        },
        "torch": {
            "default": lambda _: build_torch_iterable(spec, persistent=False),
            "persistent": lambda _: build_torch_iterable(spec, persistent=True),
        },
        "grain": {
            "default": lambda _: build_grain_stream(spec, buffer=1),
            "buffer16": lambda _: build_grain_stream(spec, buffer=min(16, spec.hwm or 16)),
        },
        "spdl": {
            "default": lambda _: build_spdl(spec, region=False),
            "region": lambda _: build_spdl(spec, region=True),
        },
    }


def _import_ours() -> None:
    import dataflow  # noqa: F401


def _import_tensorpack() -> None:
    import tensorpack.dataflow  # noqa: F401


def _import_torch() -> None:
    import torch.utils.data  # noqa: F401


def _import_grain() -> None:
    import grain  # noqa: F401


def _import_spdl() -> None:
    import spdl.pipeline  # noqa: F401


IMPORTS: dict[str, Callable[[], None]] = {
    "ceiling": lambda: None,
    "ours": _import_ours,
    "tensorpack": _import_tensorpack,
    "torch": _import_torch,
    "grain": _import_grain,
    "spdl": _import_spdl,
}


# -- forked workers for the ceilings (shared with W3 and W5) --------------------------------------
class Forked:
    """``count`` forked children running ``target(k)``; killed and reaped by :meth:`close`.

    A child exits (``os._exit``) when its target returns or raises (a consumer that closes its
    pipes makes a writing child fail with ``BrokenPipeError``): it never returns into the
    parent's code and never runs its exit handlers.
    """

    def __init__(self, count: int, target: Callable[[int], None], keep: Callable[[int], set]):
        self.pids: list[int] = []
        for k in range(count):
            pid = os.fork()
            if pid == 0:  # child
                code = 0
                try:
                    signal.signal(signal.SIGINT, signal.SIG_IGN)
                    for fd in range(3, 1024):  # only this worker's pipe ends stay open
                        if fd not in keep(k):
                            try:
                                os.close(fd)
                            except OSError:
                                pass
                    target(k)
                except BrokenPipeError:
                    pass
                except BaseException:
                    code = 1
                finally:
                    os._exit(code)
            self.pids.append(pid)

    def close(self) -> None:
        for pid in self.pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in self.pids:
            os.waitpid(pid, 0)
        self.pids = []


def read_exact(f: Any, n: int) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise EOFError("a ceiling worker stopped (its pipe ended early)")
    return data


# message header: record count, end-of-pass flag
HEADER = struct.Struct("<ii")
RECORD = struct.Struct("<qd")


class PipeCeiling:
    """Two forked workers, each sending framed messages through its own pipe.

    ``produce(k, write)`` runs in worker ``k`` forever, calling ``write(bytes)`` per message;
    ``parse(reader)`` runs in the consumer and returns ``(items, end_of_pass)`` for one message.
    One pass reads both pipes in turn until each has sent its end-of-pass message.
    """

    def __init__(
        self,
        produce: Callable[[int, Callable[[bytes], None]], None],
        parse: Callable[[Any], tuple[list, bool]],
    ) -> None:
        pipes = [os.pipe() for _ in range(NUM_WORKERS)]

        def target(k: int) -> None:
            with os.fdopen(pipes[k][1], "wb", buffering=1 << 16) as w:

                def write(msg: bytes) -> None:
                    w.write(msg)
                    w.flush()

                produce(k, write)

        self.workers = Forked(NUM_WORKERS, target, lambda k: {pipes[k][1]})
        for _, w in pipes:
            os.close(w)
        self.readers = [os.fdopen(r, "rb", buffering=1 << 16) for r, _ in pipes]
        self.parse = parse

    def epoch(self) -> Iterator:
        open_ = list(range(NUM_WORKERS))
        parse, readers = self.parse, self.readers
        while open_:
            for k in list(open_):
                items, end = parse(readers[k])
                yield from items
                if end:
                    open_.remove(k)

    def close(self) -> None:
        for r in self.readers:
            r.close()
        self.workers.close()

    def built(self) -> Built:
        return Built(self.epoch, close=self.close)


def _ceiling_one(per_message: int) -> Built:
    n = N_ONE
    pack_header, unpack_header = HEADER.pack, HEADER.unpack
    rec_size, hsize = RECORD.size, HEADER.size

    def produce(k: int, write: Callable[[bytes], None]) -> None:
        pack = RECORD.pack
        while True:
            it = iter(map(make_dp, range(k, n, NUM_WORKERS)))
            while True:
                chunk = list(itertools.islice(it, per_message))
                if not chunk:
                    break
                write(pack_header(len(chunk), 0) + b"".join(pack(i, x) for i, x in chunk))
            write(pack_header(0, 1))

    iter_unpack = RECORD.iter_unpack

    def parse(r: Any) -> tuple[list, bool]:
        count, end = unpack_header(read_exact(r, hsize))
        if not count:
            return [], bool(end)
        return [[i, x] for i, x in iter_unpack(read_exact(r, count * rec_size))], bool(end)

    return PipeCeiling(produce, parse).built()


def _ceiling_batched() -> Built:
    n, batch = N_BATCHED, BATCH
    pack_header, unpack_header, hsize = HEADER.pack, HEADER.unpack, HEADER.size

    def produce(k: int, write: Callable[[bytes], None]) -> None:
        while True:
            it = iter(map(make_dp, range(k, n, NUM_WORKERS)))
            while True:
                chunk = list(itertools.islice(it, batch))
                if not chunk:
                    break
                xs, ys = collate(chunk)
                xs = xs.astype(np.int64, copy=False)
                write(pack_header(len(chunk), 0) + xs.tobytes() + ys.tobytes())
            write(pack_header(0, 1))

    def parse(r: Any) -> tuple[list, bool]:
        count, end = unpack_header(read_exact(r, hsize))
        if not count:
            return [], bool(end)
        data = read_exact(r, count * 16)
        xs = np.frombuffer(data, np.int64, count)
        ys = np.frombuffer(data, np.float64, count, offset=count * 8)
        return [[xs, ys]], bool(end)

    return PipeCeiling(produce, parse).built()


# -- correctness -----------------------------------------------------------------------------------
def _expected(n: int) -> Callable[[], tuple[int, tuple]]:
    return lambda: (n, (n * (n - 1) // 2, 0.5 * n))


def one_stats(dp: Any) -> tuple[int, tuple]:
    return 1, (int(dp[0]), float(dp[1]))


def batch_stats(batch: Any) -> tuple[int, tuple]:
    x = as_numpy(batch[0]).astype(np.int64, copy=False)
    y = as_numpy(batch[1])
    return len(x), (int(x.sum()), float(y.sum()))


ONE_SPEC = Spec(make_dp, N_ONE)
BATCHED_SPEC = Spec(make_dp, N_BATCHED, batch=BATCH)

ONE = SimpleNamespace(
    NAME="W2-ONE",
    TITLE="tiny [i, 0.5] made in 2 worker processes, delivered one by one",
    METRIC="us/dp",
    TIMING="wall",
    make_source=lambda: None,
    expected_pass=_expected(N_ONE),
    batch_stats=one_stats,
    IMPORTS=IMPORTS,
    BUILDERS={
        "ceiling": {
            "default": lambda _: _ceiling_one(128),
            "per_message": lambda _: _ceiling_one(1),
        },
        **peer_builders(ONE_SPEC),
    },
)

BATCHED = SimpleNamespace(
    NAME="W2-BATCHED",
    TITLE="tiny [i, 0.5] made and batched 256 in 2 worker processes (W2b)",
    METRIC="us/dp",
    TIMING="wall",
    make_source=lambda: None,
    expected_pass=_expected(N_BATCHED),
    batch_stats=batch_stats,
    IMPORTS=IMPORTS,
    BUILDERS={"ceiling": {"default": lambda _: _ceiling_batched()}, **peer_builders(BATCHED_SPEC)},
)

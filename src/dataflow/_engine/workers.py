"""Worker pools: the one engine behind every runner and parallel map.

A pool runs ``num_workers`` copies of a :class:`~.job.Job` in worker processes (fork, forkserver
or spawn) or threads, and gives the consumer a narrow interface: :meth:`recv` the next message from
any (or some) worker, :meth:`send` a task to one worker, :meth:`restart` a dead worker, and
:meth:`close`. What a worker runs and how it talks back is in :mod:`.job`, the main loop of a
worker process in :mod:`.worker_process`; this module is the consumer's side: starting and
supervising the workers.

Supervision lives in :meth:`recv`: the consumer sleeps in one ``poll()`` on the data doorbell and
every worker's process sentinel, so a worker's death wakes it at once; the messages the worker
published before dying are delivered first, then a ``DIED`` message. A consumer that keeps
finding its rings empty for short whiles sleeps lazily (:class:`_WaitPolicy`): a few messages per
wake-up instead of one. An exception in a worker
arrives as an ``ERROR`` message and is raised as :class:`~dataflow.errors.WorkerError`.

Worker processes die with their consumer (see :mod:`.worker_process`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from typing import Any

import numpy.random  # noqa: F401 - imported once here rather than in every forked worker

from ..errors import DataFlowClosedError, WorkerDied
from . import procs
from .context import WorkerInfo, set_worker_info
from .job import DATA, DIED, DONE, ERROR, Job, WorkerIO, WorkerStopped, make_worker_error, run_job
from .message import encode
from .shm import SharedSegment
from .transport import Ring
from .wakeup import _SLEEP_S, FdHandle, Pipe, drain, fence, make_poller, ring_bell
from .worker_process import FLUSH_SIGNAL, _owned_fds, _process_main, _ProcSpec

__all__ = ["ProcessPool", "ThreadPool"]

logger = logging.getLogger(__name__)

DEFAULT_RING_BYTES = 16 << 20
DEFAULT_TASK_RING_BYTES = 8 << 20
_BUSY_CHECK_S = 0.5  # while data keeps flowing, look at the sentinels this often
_HOLD_S = 0.02  # a starving consumer asks a worker holding datapoints to flush after this long
_LAZY_AFTER = 8  # consecutive short eager sleeps before the consumer sleeps lazily
_LAZY_IDLE_S = 0.0025  # ... "short": at most this long
_LAZY_FACTOR = 4  # a lazy sleep lasts this many short sleeps (about as many messages per wake-up)
_LAZY_MAX_S = 0.010  # ... and never longer than this
_LAZY_RUN = 16  # lazy sleeps in a row before an eager one measures the pace again


class _WaitPolicy:
    """How a pool's consumer sleeps when none of its rings has a message.

    Eagerly by default: any message wakes it (a byte down the doorbell pipe). But a consumer that
    keeps waiting a short while for each message -- workers that are the bottleneck, messages
    that come fast -- pays a wake-up per message (the writer's system call, the switch, a cold
    cache), taken from the CPU time the workers need. After :data:`_LAZY_AFTER` consecutive eager
    sleeps of at most :data:`_LAZY_IDLE_S`, it sleeps lazily instead: for :data:`_LAZY_FACTOR`
    times its recent idle time (at most :data:`_LAZY_MAX_S`), woken early only by news (an error
    or the end of a stream, a death, a worker without tasks or ring space), and reads the several
    messages that arrived meanwhile. A lazy sleep that finds nothing, or the next eager sleep
    (one in :data:`_LAZY_RUN`) that is not short, returns it to eager sleeping.

    Latency grows by at most a lazy sleep, only while the workers are the bottleneck anyway:
    throughput is theirs, and they keep their tasks and room to write (they ring when short).
    """

    __slots__ = ("short", "idle", "lazy_run")

    def __init__(self) -> None:
        self.short = 0  # consecutive short eager sleeps (kept while sleeping lazily)
        self.idle = 0.0  # average length of the recent short sleeps
        self.lazy_run = 0

    def lazy_timeout(self) -> float | None:
        """Seconds for the next sleep to be lazy, or None for an eager one."""
        if self.short >= _LAZY_AFTER and self.lazy_run < _LAZY_RUN:
            self.lazy_run += 1
            return min(_LAZY_FACTOR * self.idle, _LAZY_MAX_S)
        self.lazy_run = 0
        return None

    def after_eager(self, slept: float, woken: bool) -> None:
        """An eager sleep of ``slept`` seconds ended (``woken``: by an event, not the timeout)."""
        if woken and slept <= _LAZY_IDLE_S:
            self.idle = 0.8 * self.idle + 0.2 * slept if self.short else slept
            self.short += 1
        else:
            self.short = 0

    def after_lazy(self, found: bool) -> None:
        """A lazy sleep ended; ``found``: a message is there to read."""
        if not found:
            self.short = 0


class _Pool:
    """What both pools do with a message a worker sent, once it is taken off its channel."""

    _finished: list[bool]

    def describe(self, w: int) -> str:
        raise NotImplementedError

    def _deliver(self, w: int, msg: tuple[int, Any]) -> tuple[int, int, Any]:
        """``(w, kind, payload)`` for recv; an ``ERROR`` raises as WorkerError; ``ERROR`` and
        ``DONE`` mark the worker finished."""
        kind, payload = msg
        if kind == ERROR:
            self._finished[w] = True
            raise make_worker_error(payload, self.describe(w))
        if kind == DONE:
            self._finished[w] = True
        return w, kind, payload


class ProcessPool(_Pool):
    """Worker processes, each with a shared-memory channel to the consumer (see module doc)."""

    kind = "process"

    def __init__(
        self,
        *,
        name: str,
        job: Job | bytes,
        num_workers: int,
        method: str,
        seed: int | None,
        position: str,
        item_cap: int = 1 << 40,
        ring_bytes: int = DEFAULT_RING_BYTES,
        task_ring_bytes: int = 0,
        zero_copy: bool = True,
    ) -> None:
        self.name = name
        self._zero_copy = zero_copy
        self.num_workers = num_workers
        self._job = job
        self._method = method
        self._ctx = procs.get_context(method)
        self._seed = seed
        self._position = position
        self._item_cap = max(1, item_cap)
        self._out_bytes = Ring.bytes_needed(ring_bytes)
        self._task_bytes = Ring.bytes_needed(task_ring_bytes) if task_ring_bytes else 0
        self.owner_pid = os.getpid()
        self._closed = False
        n = num_workers
        self._procs: list[Any] = [None] * n
        self._pids: list[int | None] = [None] * n
        self._segs: list[SharedSegment | None] = [None] * n
        self._out: list[Ring | None] = [None] * n
        self._in: list[Ring | None] = [None] * n
        self._wake: list[Pipe | None] = [None] * n
        self._outbox: list[deque] = [deque() for _ in range(n)]
        self._finished = [False] * n  # sent DONE or ERROR: its exit is expected
        self._dead: list[int | None] = [None] * n  # exit code once its sentinel fired
        self._gone = [True] * n  # dead and fully reported (or never started)
        self._sentinel_of: dict[int, int] = {}
        self._doorbell = Pipe()
        _owned_fds.update((self._doorbell.r, self._doorbell.w))
        self._poller: Any = None
        self._rr = 0
        self._last_check = time.monotonic()
        self._deaths = 0  # workers dead but not yet reported
        self._wait = _WaitPolicy()

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        try:
            for w in range(self.num_workers):
                self._start_worker(w)
        except BaseException:
            self.close()
            raise
        self._rebuild_poller()

    def _start_worker(self, w: int) -> None:
        size = self._out_bytes + self._task_bytes
        seg = SharedSegment(size)
        wake = Pipe()
        self._segs[w] = seg
        self._wake[w] = wake
        if seg.fd >= 0:
            _owned_fds.add(seg.fd)
        _owned_fds.update((wake.r, wake.w))
        remap = seg.remap if (self._zero_copy and seg.can_remap) else None
        self._out[w] = Ring(seg.buf[: self._out_bytes], self._item_cap, remap=remap, offset=0)
        self._in[w] = Ring(seg.buf[self._out_bytes : size]) if self._task_bytes else None
        spec = _ProcSpec(
            index=w,
            num_workers=self.num_workers,
            seed=self._seed,
            position=self._position,
            name=self.name,
            parent_pid=os.getpid(),
            method=self._method,
            job=self._job,
            segment=seg.handle(),
            segment_bytes=size,
            out_bytes=self._out_bytes,
            task_bytes=self._task_bytes,
            item_cap=self._item_cap,
            doorbell=FdHandle(self._doorbell.w),
            wake=FdHandle(wake.r),
            keep_fds=(seg.fd, self._doorbell.w, wake.r),
            # The kernel sends the death signal when the *thread* that started the worker ends:
            # from another thread than the main one, rely on the parent checks alone.
            death_signal=(
                self._method == "forkserver"
                or threading.current_thread() is threading.main_thread()
            ),
        )
        proc = self._ctx.Process(
            target=_process_main, args=(spec,), name=f"dataflow-{self.name}-{w}", daemon=True
        )
        with procs.sigint_blocked():
            proc.start()
        self._procs[w] = proc
        self._pids[w] = proc.pid
        _owned_fds.discard(wake.r)
        os.close(wake.r)
        wake.r = -1
        self._finished[w] = False
        self._dead[w] = None
        self._gone[w] = False

    def restart(self, w: int, job: Job | bytes | None = None) -> None:
        """Replace worker ``w`` (which died) with a fresh one; its queued tasks are dropped.

        ``job``: what the new worker (and any later one) runs instead (a runner resuming its
        shard); by default the same job as before."""
        if job is not None:
            self._job = job
        self._release_worker(w)
        self._outbox[w].clear()
        self._start_worker(w)
        self._rebuild_poller()

    def _release_worker(self, w: int) -> None:
        proc = self._procs[w]
        if proc is not None:
            procs.stop_processes([proc], grace=0.2)
        self._procs[w] = None
        for ring in (self._out[w], self._in[w]):
            if ring is not None:
                ring.release()
        self._out[w] = self._in[w] = None
        seg = self._segs[w]
        if seg is not None:
            _owned_fds.discard(seg.fd)
            seg.close()
        self._segs[w] = None
        wake = self._wake[w]
        if wake is not None:
            _owned_fds.discard(wake.w)
            wake.close()
        self._wake[w] = None
        if self._dead[w] is not None and not self._gone[w]:
            self._deaths -= 1
        self._gone[w] = True

    def close(self) -> None:
        """Stop every worker (terminate, then kill after a grace period) and free everything."""
        if self._closed:
            return
        self._closed = True
        if os.getpid() != self.owner_pid:
            return  # a forked copy: the processes and memory belong to the original
        procs.stop_processes(self._procs)
        for w in range(self.num_workers):
            self._procs[w] = None
            self._release_worker(w)
        _owned_fds.difference_update((self._doorbell.r, self._doorbell.w))
        self._doorbell.close()
        self._poller = None

    @property
    def closed(self) -> bool:
        return self._closed

    def pids(self) -> list[int | None]:
        return list(self._pids)

    def describe(self, w: int) -> str:
        return f"{self.name} worker {w} (pid {self._pids[w]})"

    def died_error(self, w: int, exitcode: int | None) -> WorkerDied:
        hint = ""
        if exitcode == -9:
            hint = " (SIGKILL: killed by another process or by the kernel's out-of-memory killer)"
        return WorkerDied(
            f"{self.describe(w)} died unexpectedly with {procs.signal_name(exitcode)}{hint}",
            worker=self.describe(w),
            exitcode=exitcode,
        )

    # -- consumer side -----------------------------------------------------------------------
    def _rebuild_poller(self) -> None:
        fds = [self._doorbell.r]
        self._sentinel_of = {}
        for w, proc in enumerate(self._procs):
            if proc is not None and self._dead[w] is None:
                self._sentinel_of[proc.sentinel] = w
                fds.append(proc.sentinel)
        self._poller = make_poller(fds)

    def _on_sentinel(self, w: int) -> None:
        proc = self._procs[w]
        code = None
        if proc is not None:
            proc.join(1.0)
            code = proc.exitcode
        self._dead[w] = code if code is not None else -1
        self._deaths += 1
        self._rebuild_poller()

    def _check_sentinels(self) -> None:
        self._last_check = time.monotonic()
        for fd, _ in self._poller.poll(0):
            w = self._sentinel_of.get(fd)
            if w is not None:
                self._on_sentinel(w)

    def send(self, w: int, payload: Any) -> None:
        """Queue a task for worker ``w``; written into its ring as room allows (never blocks)."""
        self._outbox[w].append(encode(payload))
        self._flush_outbox(w)

    def _flush_outbox(self, w: int) -> bool:
        box = self._outbox[w]
        ring = self._in[w]
        if ring is None:
            return True
        progressed = False
        while box:
            msg = box[0]
            if msg.size > ring.max_record:
                if ring._pending_frags is None:
                    ring.start_fragments(msg)
                done = ring.try_write_fragments()
                self._notify_worker(w)
                if not done:
                    return progressed
            elif not ring.try_write(msg):
                return progressed
            box.popleft()
            progressed = True
            self._notify_worker(w)
        return progressed

    def _notify_worker(self, w: int) -> None:
        fence()
        ring = self._in[w]
        if ring is not None and ring.reader_waiting():
            wake = self._wake[w]
            if wake is not None:
                ring_bell(wake.w)

    def recv(self, eligible: list[int] | None = None) -> tuple[int, int, Any]:
        """The next message ``(worker, kind, payload)`` from any worker in ``eligible``.

        Blocks until one arrives. Raises :class:`WorkerError` for an ``ERROR`` message. Returns
        ``(w, DIED, exitcode)`` once for a worker that exited without finishing, after every
        message it published was returned (for any worker, eligible or not).
        """
        n = self.num_workers
        order = range(n) if eligible is None else eligible
        while True:
            if self._closed:
                raise DataFlowClosedError(f"{self.name} was closed while being iterated")
            for w in range(n):
                if self._outbox[w]:
                    self._flush_outbox(w)
            if self._deaths:
                found = self._dead_worker_message(order)
                if found is not None:
                    return found
            # Round-robin over the rings, one message at a time.
            m = len(order)
            for k in range(m):
                w = order[(self._rr + k) % m]
                ring = self._out[w]
                if ring is None:
                    continue
                ok, msg = ring.read()
                if not ok:
                    continue
                self._rr = (self._rr + k + 1) % m
                if ring.writer_waiting() and ring.writer_can_go():
                    ring_bell(self._wake[w].w)  # type: ignore[union-attr]
                if time.monotonic() - self._last_check > _BUSY_CHECK_S:
                    self._check_sentinels()
                return self._deliver(w, msg)
            if all(self._gone[w] for w in order) and not any(self._outbox):
                raise RuntimeError(f"{self.name}: recv() with no live worker to wait for")
            self._sleep(order)

    def _ask_flush(self, holders: list[int]) -> None:
        """Workers hold datapoints while the consumer starves: ask them to send those now."""
        for w in holders:
            ring = self._out[w]
            proc = self._procs[w]
            if ring is None or proc is None or self._dead[w] is not None:
                continue
            if ring.writer_holds_items() and not ring.has_data():
                try:
                    os.kill(proc.pid, FLUSH_SIGNAL)
                except (ProcessLookupError, PermissionError):
                    pass

    def _dead_worker_message(self, order: Any) -> tuple[int, int, Any] | None:
        """A dead worker's last published message, else the news of its death (once)."""
        for w in range(self.num_workers):
            if self._dead[w] is None or self._gone[w]:
                continue
            ring = self._out[w]
            if ring is not None:
                if w not in order:
                    if ring.has_data():
                        continue  # its last messages (a DONE, say) wait for a recv that wants them
                else:
                    ok, msg = ring.read()
                    if ok:
                        return self._deliver(w, msg)
            self._gone[w] = True
            self._deaths -= 1
            if not self._finished[w]:
                return w, DIED, self._dead[w]
        return None

    def _sleep(self, order: Any) -> None:
        outs = [self._out[w] for w in order if self._out[w] is not None]
        writers = [w for w in range(self.num_workers) if self._outbox[w] and self._in[w]]
        lazy = self._wait.lazy_timeout()
        for ring in outs:
            ring.set_waiting(1 if lazy is None else 2)  # type: ignore[union-attr]
        for w in writers:
            self._in[w].set_writer_waiting(True)  # type: ignore[union-attr]
        fence()
        try:
            ready = any(ring.has_data() for ring in outs)  # type: ignore[union-attr]
            for w in range(self.num_workers):
                ring = self._out[w]
                if ring is not None:
                    ring.reclaim()
                    if ring.writer_waiting():
                        if not ready and ring.writer_stalled_by_leases():
                            # Nothing to read, and the writer waits for room that arrays the
                            # caller holds occupy: without this, both would wait forever.
                            ring.evacuate()
                        ring_bell(self._wake[w].w)  # type: ignore[union-attr]
            for w in writers:
                if self._flush_outbox(w):
                    ready = True
            if ready:
                return
            start = self._last_check = time.monotonic()
            if lazy is not None:
                events = self._poller.poll(lazy * 1000)
                self._wait.after_lazy(any(ring.has_data() for ring in outs))  # type: ignore[union-attr]
            else:
                holders = [
                    w
                    for w in order
                    if self._out[w] is not None and self._out[w].writer_holds_items()  # type: ignore[union-attr]
                ]
                events = self._poller.poll((_HOLD_S if holders else _SLEEP_S) * 1000)
                if not events and holders:
                    self._ask_flush(holders)
                self._wait.after_eager(time.monotonic() - start, bool(events))
        finally:
            for ring in outs:
                ring.set_waiting(False)  # type: ignore[union-attr]
            for w in writers:
                if self._in[w] is not None:
                    self._in[w].set_writer_waiting(False)  # type: ignore[union-attr]
        for fd, _ in events:
            if fd == self._doorbell.r:
                drain(fd)
            else:
                dead = self._sentinel_of.get(fd)
                if dead is not None and self._dead[dead] is None:
                    self._on_sentinel(dead)


# == threads ======================================================================================


class _ThreadIO(WorkerIO):
    crosses_processes = False

    def __init__(self, pool: ThreadPool, w: int) -> None:
        self.info = WorkerInfo(w, pool.num_workers, pool._seed, "thread")
        self._pool = pool
        self._w = w
        self._pending: list[Any] = []

    def put(self, item: Any) -> None:
        # No batching in transit between threads: a thread that held datapoints while its
        # upstream blocks could not be asked for them (threads take no signals).
        self._pool._push(self._w, (DATA, [item]))

    def consumer_waiting(self) -> bool:
        return self._pool._consumer_waiting

    def flush(self) -> None:
        if self._pending:
            items, self._pending = self._pending, []
            self._pool._push(self._w, (DATA, items))

    def send(self, kind: int, payload: Any) -> None:
        self.flush()
        self._pool._push(self._w, (kind, payload))

    def get_task(self) -> Any:
        pool = self._pool
        box = pool._in[self._w]
        while True:
            try:
                return box.popleft()
            except IndexError:
                pass
            self.flush()
            with pool._cv:
                while not box and not pool._stopped:
                    pool._cv.wait(_SLEEP_S)
                if pool._stopped:
                    raise WorkerStopped


def _thread_main(pool: ThreadPool, w: int, job: Job) -> None:
    set_worker_info(WorkerInfo(w, pool.num_workers, pool._seed, "thread"), thread=True)
    try:
        run_job(job, _ThreadIO(pool, w))
    except WorkerStopped:
        pass
    finally:
        set_worker_info(None, thread=True)


class ThreadPool(_Pool):
    """Worker threads with the same interface as :class:`ProcessPool` (``jobs``: one per thread).

    Threads cannot be killed: closing the pool stops each thread at its next contact with the
    pool (its next ``put`` or ``get_task``), and waits for it a bounded time.
    """

    kind = "thread"

    def __init__(
        self, *, name: str, jobs: list[Job], seed: int | None, item_cap: int = 1 << 40
    ) -> None:
        self.name = name
        self.num_workers = len(jobs)
        self._jobs = jobs
        self._seed = seed
        self._item_cap = max(1, item_cap)
        self._cv = threading.Condition(threading.Lock())
        n = self.num_workers
        self._out: list[deque] = [deque() for _ in range(n)]
        self._out_items = [0] * n
        self._in: list[deque] = [deque() for _ in range(n)]
        self._finished = [False] * n
        self._threads: list[threading.Thread] = []
        self._stopped = False
        self._closed = False
        self._consumer_waiting = False
        self._producers_waiting = 0
        self._rr = 0
        self.owner_pid = os.getpid()

    def start(self) -> None:
        for w, job in enumerate(self._jobs):
            t = threading.Thread(
                target=_thread_main, args=(self, w, job), name=f"dataflow-{self.name}-{w}"
            )
            t.daemon = True
            t.start()
            self._threads.append(t)
        self._jobs = []

    def describe(self, w: int) -> str:
        return f"{self.name} thread {w}"

    def died_error(self, w: int, exitcode: int | None) -> WorkerDied:  # pragma: no cover
        return WorkerDied(f"{self.describe(w)} ended unexpectedly", worker=self.describe(w))

    def restart(self, w: int) -> None:  # pragma: no cover - threads do not die
        raise RuntimeError("thread workers cannot be restarted")

    @property
    def closed(self) -> bool:
        return self._closed

    def _push(self, w: int, msg: tuple[int, Any]) -> None:
        cv = self._cv
        with cv:
            while self._out_items[w] >= self._item_cap and not self._stopped:
                self._producers_waiting += 1
                cv.wait(_SLEEP_S)
                self._producers_waiting -= 1
            if self._stopped:
                raise WorkerStopped
            self._out[w].append(msg)
            self._out_items[w] += 1
            if self._consumer_waiting:
                cv.notify_all()

    def send(self, w: int, payload: Any) -> None:
        self._in[w].append(payload)
        with self._cv:
            self._cv.notify_all()

    def recv(self, eligible: list[int] | None = None) -> tuple[int, int, Any]:
        order = range(self.num_workers) if eligible is None else eligible
        cv = self._cv
        with cv:
            while True:
                if self._stopped:
                    raise DataFlowClosedError(f"{self.name} was closed while being iterated")
                m = len(order)
                for k in range(m):
                    w = order[(self._rr + k) % m]
                    box = self._out[w]
                    if box:
                        kind, payload = box.popleft()
                        self._rr = (self._rr + k + 1) % m
                        self._out_items[w] -= 1
                        if self._producers_waiting and self._out_items[w] <= self._item_cap // 2:
                            cv.notify_all()
                        return self._deliver(w, (kind, payload))
                if all(self._finished[w] for w in order):
                    raise RuntimeError(f"{self.name}: recv() with no live worker to wait for")
                self._consumer_waiting = True
                try:
                    cv.wait(_SLEEP_S)
                finally:
                    self._consumer_waiting = False

    def close(self, timeout: float = 2.0) -> None:
        if self._closed:
            return
        self._closed = True
        if os.getpid() != self.owner_pid:
            return  # a forked copy: its threads do not exist here
        with self._cv:
            self._stopped = True
            self._cv.notify_all()
        deadline = time.monotonic() + timeout
        me = threading.current_thread()
        for t in self._threads:
            if t is not me:
                t.join(max(0.0, deadline - time.monotonic()))
                if t.is_alive():
                    logger.warning(
                        "%s: thread %s is still busy in user code after close(); it will stop at "
                        "its next datapoint",
                        self.name,
                        t.name,
                    )
        self._threads = []
        for box in self._out:
            box.clear()
        for box in self._in:
            box.clear()


def pid_alive(pid: int) -> bool:  # pragma: no cover - used by tests and diagnostics
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False

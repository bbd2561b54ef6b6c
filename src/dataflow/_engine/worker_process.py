"""A worker process: what it is given (:class:`_ProcSpec`), its end of the channel
(:class:`_ProcessIO`: writes to its out-ring, reads tasks from its in-ring) and its main loop.

Worker processes die with their consumer: ``PR_SET_PDEATHSIG`` (Linux), a parent check right after
it is set (the parent may have died before), and a parent-liveness check whenever a worker sleeps.
(The kernel sends the death signal when the *thread* that started the worker ends, so a pool
started from a thread other than the main one relies on the liveness checks alone.)
They ignore SIGINT: a Ctrl-C is the consumer's to handle, and closing the pool stops the workers.
A worker holding datapoints while the consumer starves is asked for them with
:data:`FLUSH_SIGNAL`.
"""

from __future__ import annotations

import os
import pickle
import signal
import traceback
from dataclasses import dataclass
from typing import Any

from . import procs, seeding
from .context import WorkerInfo, set_worker_info
from .job import DATA, ERROR, WorkerIO, _error_payload, _next_batch_max, run_job
from .message import encode
from .shm import SharedSegment
from .transport import Ring
from .wakeup import _SLEEP_S, FdHandle, drain, fence, make_poller, ring_bell

# Sent to a worker that holds datapoints while the consumer starves (see flush_requested).
FLUSH_SIGNAL = getattr(signal, "SIGRTMIN", signal.SIGUSR2) + (
    2 if hasattr(signal, "SIGRTMIN") else 0
)

# File descriptors the pools of this process own. A forked worker closes those it does not need,
# so that it does not keep other pools' pipes and memory alive.
_owned_fds: set[int] = set()


@dataclass
class _ProcSpec:
    """Everything a worker process needs (pickled under spawn/forkserver)."""

    index: int
    num_workers: int
    seed: int | None
    position: str
    name: str
    parent_pid: int
    method: str
    job: Any  # a Job (fork) or its pickle (spawn/forkserver)
    segment: Any
    segment_bytes: int
    out_bytes: int
    task_bytes: int
    item_cap: int
    doorbell: FdHandle
    wake: FdHandle
    keep_fds: tuple[int, ...] = ()
    death_signal: bool = True


class _ProcessIO(WorkerIO):
    """A worker process's end: writes to its out-ring, reads tasks from its in-ring."""

    def __init__(self, spec: _ProcSpec, segment: SharedSegment) -> None:
        self.info = WorkerInfo(spec.index, spec.num_workers, spec.seed, "process")
        buf = segment.buf
        self._out = Ring(buf[: spec.out_bytes], spec.item_cap)
        self._in = Ring(buf[spec.out_bytes : spec.segment_bytes]) if spec.task_bytes else None
        self._out_hdr = self._out.hdr
        self._doorbell = spec.doorbell.fd
        self._wake = spec.wake.fd
        self._parent_pid = spec.parent_pid
        self._check_ppid = spec.method != "forkserver"
        import multiprocessing

        parent = multiprocessing.parent_process()
        self._parent_sentinel = parent.sentinel if parent is not None else None
        fds = [self._wake] + ([self._parent_sentinel] if self._parent_sentinel is not None else [])
        self._poller = make_poller(fds)
        self._pending: list[Any] = []
        self._batch_max = 8
        self._busy = False  # inside flush/send: a flush request must wait
        self._asked = False  # the consumer asked for a flush while busy

    # -- sending -----------------------------------------------------------------------------
    # ``_busy`` marks the code that a flush request (a signal handler, run between two bytecodes
    # of this thread) must not interrupt; the request is then served when that code is done.

    def put(self, item: Any) -> None:
        self._busy = True
        try:
            pending = self._pending
            pending.append(item)
            n = len(pending)
            if n == 1:
                self._out_hdr[26] = 1  # _P_HOLDS: the consumer may ask for these
            if n >= self._batch_max or self._out_hdr[16]:  # 16: the consumer waits
                self._flush()
        finally:
            self._busy = False
        if self._asked:
            self.flush()

    def consumer_waiting(self) -> bool:
        return bool(self._out_hdr[16])

    def flush(self) -> None:
        self._busy = True
        try:
            self._asked = False
            self._flush()
        finally:
            self._busy = False

    def _flush(self) -> None:
        if self._pending:
            items, self._pending = self._pending, []
            self._out.set_holding(False)
            size = self._write((DATA, items))
            self._batch_max = _next_batch_max(size, len(items))

    def send(self, kind: int, payload: Any) -> None:
        self._busy = True
        try:
            self._asked = False
            self._flush()
            self._write((kind, payload), urgent=True)
        finally:
            self._busy = False

    def flush_requested(self, *_: Any) -> None:
        """Signal handler: the consumer starves while this worker holds datapoints, probably
        because the worker's upstream blocks after producing them."""
        if self._busy:
            self._asked = True
        else:
            self.flush()

    def _write(self, obj: Any, urgent: bool = False) -> int:
        msg = encode(obj)
        ring = self._out
        if msg.size > ring.max_record:
            ring.start_fragments(msg)
            while not ring.try_write_fragments():
                self._notify()
                self._wait_for(ring.next_fragment_fits)
        else:
            while not ring.try_write(msg):
                self._wait_for(lambda: ring._room(msg.size, msg.n_items) >= 0)
        self._notify(urgent)
        return msg.size

    def _notify(self, urgent: bool = False) -> None:
        """Wake the consumer if it sleeps for this message: any message if it waits eagerly (1),
        only ``urgent`` ones (not data) if it waits lazily (2)."""
        fence()
        waiting = self._out_hdr[16]
        if waiting == 1 or (waiting and urgent):
            ring_bell(self._doorbell)

    def _wait_for(self, ready) -> None:
        """Sleep until ``ready()`` (space in the out-ring) or a bounded timeout."""
        ring = self._out
        ring.set_writer_waiting(True)
        fence()
        try:
            if not ready():
                if self._out_hdr[16] == 2:
                    ring_bell(self._doorbell)  # a lazy sleeper: come and read, the ring is full
                self._sleep()
        finally:
            ring.set_writer_waiting(False)

    # -- tasks -------------------------------------------------------------------------------
    def get_task(self) -> Any:
        ring = self._in
        assert ring is not None, "this pool has no task channel"
        while True:
            ok, task = ring.read()
            if ok:
                fence()
                if ring.writer_waiting():
                    ring_bell(self._doorbell)
                return task
            self.flush()  # never sleep on results the consumer may be waiting for
            ring.set_waiting(True)
            fence()
            try:
                if not ring.has_data():
                    if self._out_hdr[16] == 2:
                        ring_bell(self._doorbell)  # a lazy sleeper: this worker needs tasks
                    self._sleep()
            finally:
                ring.set_waiting(False)

    # -- sleeping ----------------------------------------------------------------------------
    def _sleep(self) -> None:
        events = self._poller.poll(_SLEEP_S * 1000)
        for fd, _ in events:
            if fd == self._wake:
                drain(self._wake)
            elif fd == self._parent_sentinel:
                _parent_gone()
        if self._check_ppid and os.getppid() != self._parent_pid:
            _parent_gone()


def _parent_gone() -> None:
    procs.flush_std_streams()
    os._exit(0)


def _process_main(spec: _ProcSpec) -> None:
    """Entry point of a worker process."""
    procs.worker_signals()
    if spec.death_signal:
        procs.set_death_signal()
    procs.steady_malloc()
    if spec.method != "forkserver" and os.getppid() != spec.parent_pid:
        os._exit(0)  # the parent died before the death signal was armed
    import multiprocessing

    # Allow a worker to start workers of its own (nested parallel flows).
    multiprocessing.current_process()._config.pop("daemon", None)  # type: ignore[attr-defined]
    if spec.method == "fork":
        for fd in list(_owned_fds):
            if fd not in spec.keep_fds:
                try:
                    os.close(fd)
                except OSError:
                    pass
        _owned_fds.clear()
    code = 0
    try:
        segment = SharedSegment.attach(spec.segment, spec.segment_bytes)
        io = _ProcessIO(spec, segment)
        signal.signal(FLUSH_SIGNAL, io.flush_requested)
        signal.siginterrupt(FLUSH_SIGNAL, False)  # restart interrupted system calls
        set_worker_info(io.info)
        seeding.seed_globals(spec.position)
        try:
            job = pickle.loads(spec.job) if isinstance(spec.job, bytes) else spec.job
        except BaseException as e:  # noqa: BLE001 - reported like any worker failure
            io.send(ERROR, _error_payload(e, in_process=True))
        else:
            run_job(job, io)
    except BaseException:  # noqa: BLE001 - nothing left to report to; say it on stderr
        traceback.print_exc()
        code = 1
    finally:
        procs.flush_std_streams()
        os._exit(code)

"""Feed datapoints from one process or machine to another over ZeroMQ.

:func:`send_dataflow_zmq` runs a flow and pushes its datapoints to a ZMQ socket;
:class:`RemoteDataZMQ` is a flow that pulls them, from one or two endpoints. Both are drop-ins for
tensorpack's functions of the same names (``tensorpack.dataflow.remote``), with one difference that
matters: messages are encoded with the safe codec of :mod:`dataflow.codec`, never pickle, so a
receiver never runs code that arrives on its socket. A message that is not a well-formed datapoint
(garbage, a pickle, another program's traffic) is counted in ``RemoteDataZMQ.dropped`` and dropped
with a log line; the receiver goes on. A sender of a frame over ``max_message_size`` is
disconnected by ZeroMQ before the frame is read, so no sender can exhaust the receiver's memory.

Delivery is at-most-once: ZeroMQ drops what is queued in a sender that dies or in a receiver that
closes, and a restarted sender starts its flow again. For exactly-once, number the datapoints on
the sending side (e.g. ``[pass, index, ...]``) and drop or re-request on the receiving side what
is missing or repeated; or put an LMDB file in between (``LMDBSerializer.save`` on one side,
``LMDBData`` on the other), which is exact and resumable.

Needs pyzmq (``pip install 'pydataflow[remote]'``). Examples bind to 127.0.0.1: to receive from
other machines, bind to a specific interface you trust (the transport is not authenticated or
encrypted)::

    # on the receiving side (the training process)
    ds = RemoteDataZMQ("tcp://127.0.0.1:8877")
    # on the sending side, another process
    send_dataflow_zmq(my_df, "tcp://127.0.0.1:8877")

A message is two frames: a 5-byte tag naming the protocol and its version, then the codec's
encoding of the datapoint (arrays travel out of band, and the receiver decodes them in place,
without a copy).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import tqdm

from . import codec
from ._lazy import require
from .base import DataFlow, check_dataflow
from .errors import (
    DataFlowArgumentError,
    DataFlowClosedError,
    DataFlowError,
    FormatError,
    ReceiveTimeout,
)

__all__ = ["send_dataflow_zmq", "RemoteDataZMQ"]

logger = logging.getLogger(__name__)

#: The first frame of every message: protocol name and version.
MESSAGE_TAG = b"DFZ\x00\x01"
#: Default limit of a message's size (bytes); larger ones are dropped by the receiver.
DEFAULT_MAX_MESSAGE_SIZE = 1 << 30
_COPY_BELOW = 64 * 1024  # ZMQ copies small frames faster than it tracks them


def _check_addr(addr: object, who: str, arg: str) -> str:
    if not isinstance(addr, str) or "://" not in addr:
        raise DataFlowArgumentError(
            f"{who}: {arg} must be a ZMQ endpoint such as 'tcp://127.0.0.1:8877' or "
            f"'ipc:///tmp/feed', got {addr!r}"
        )
    return addr


def _check_positive(value: object, who: str, arg: str) -> int:
    if (
        isinstance(value, (bool, np.bool_))
        or not isinstance(value, (int, np.integer))
        or value <= 0
    ):
        raise DataFlowArgumentError(f"{who}: {arg} must be a positive int, got {value!r}")
    return int(value)


def send_dataflow_zmq(
    df: DataFlow, addr: str, hwm: int = 50, format: str | None = None, bind: bool = False
) -> None:
    """Run ``df`` forever and push each datapoint to the ZMQ endpoint ``addr`` (a PUSH socket).

    This function never returns: it loops over ``df`` pass after pass (showing a progress bar per
    pass) until the process is stopped. ``df`` is reset here, in the sending process.

    Args:
        df: the flow to send; its datapoints must be encodable by :mod:`dataflow.codec`
            (else :class:`~dataflow.errors.DatapointError` names the offending value).
        addr: the endpoint, e.g. ``"tcp://127.0.0.1:8877"``.
        hwm: ZMQ's high-water mark: how many messages may wait in the socket's queue.
        format: ``None`` (the default, for :class:`RemoteDataZMQ`), or ``'zmq_ops'``
            (``'zmq_op'``) for tensorpack's zmq_ops library and ZMQInput (needs ``zmq_ops``).
        bind: bind to ``addr`` instead of connecting to it.

    Raises:
        DataFlowError: a pass of ``df`` yielded nothing (it would spin forever).
    """
    who = "send_dataflow_zmq"
    zmq = require("zmq", "remote", who=who)
    df = check_dataflow(df, who, "df")
    addr = _check_addr(addr, who, "addr")
    hwm = _check_positive(hwm, who, "hwm")
    if format not in (None, "zmq_op", "zmq_ops"):
        raise DataFlowArgumentError(
            f"{who}: format must be None, 'zmq_op' or 'zmq_ops', got {format!r}"
        )
    dump_arrays = None
    if format is not None:
        dump_arrays = require("zmq_ops", None, who=f"{who}(format={format!r})").dump_arrays

    ctx = zmq.Context()
    socket = ctx.socket(zmq.PUSH)
    socket.set_hwm(hwm)
    try:
        if bind:
            socket.bind(addr)
        else:
            socket.connect(addr)
        endpoint = socket.getsockopt_string(zmq.LAST_ENDPOINT) if bind else addr
        df.reset_state()
        logger.info(
            "Serving data to %s with %s format ...",
            endpoint,
            "dataflow's" if format is None else "zmq_ops",
        )
        try:
            total: int | None = len(df)
        except (NotImplementedError, TypeError):
            total = None
        send = socket.send
        more = zmq.SNDMORE
        while True:
            sent = 0
            with tqdm.tqdm(
                total=total, desc=f"send to {endpoint}", unit="dp", smoothing=0.8, leave=True
            ) as bar:
                for dp in df:
                    if dump_arrays is not None:
                        send(dump_arrays(dp), copy=False)
                    else:
                        payload = codec.dumps(dp)
                        send(MESSAGE_TAG, more)
                        send(payload, copy=len(payload) < _COPY_BELOW)
                    sent += 1
                    bar.update(1)
            if not sent:
                raise DataFlowError(
                    f"{who}: {type(df).__name__} yielded no datapoints in a pass; refusing to "
                    "loop over it forever"
                )
    finally:
        logger.info("Exiting send_dataflow_zmq ...")
        socket.setsockopt(zmq.LINGER, 0)
        socket.close()
        ctx.destroy(0)


class _Receiver:
    """The receiving sockets, a wake-up channel, and the rule that only one thread touches them.

    libzmq sockets are not thread-safe: closing one while another thread waits in it aborts the
    process. So the reader waits in a poller that also watches an inproc socket, and ``close()``
    (from any thread, or the garbage collector) first signals it, then waits for the reader to
    leave the sockets before closing them. The reader holds ``busy`` only while it polls and takes
    a ready message (never while the consumer holds a datapoint), so ``close()`` waits for at most
    one wake-up.
    """

    def __init__(self, zmq: Any, ctx: Any, sockets: list[Any]) -> None:
        self._zmq = zmq
        self.ctx = ctx
        self.sockets = sockets
        wake_addr = f"inproc://dataflow-remote-wake-{id(self):x}"
        self._wake_rx = ctx.socket(zmq.PAIR)
        self._wake_rx.bind(wake_addr)
        self._wake_tx = ctx.socket(zmq.PAIR)
        self._wake_tx.connect(wake_addr)
        self._poller = zmq.Poller()
        for s in sockets:
            self._poller.register(s, zmq.POLLIN)
        self._poller.register(self._wake_rx, zmq.POLLIN)
        self._busy = threading.Lock()
        self._close_once = threading.Lock()
        self.closing = False

    def receive(self, timeout_ms: int | None) -> list[tuple[int, list[Any]]] | None:
        """The messages ready now, as (socket index, frames), after waiting up to ``timeout_ms``
        (None: forever) for one; None if the wait timed out.

        Raises:
            DataFlowClosedError: ``close()`` was called, before or during the wait.
        """
        with self._busy:
            if self.closing:
                raise DataFlowClosedError("RemoteDataZMQ was closed while a reader waited")
            ready = dict(self._poller.poll(timeout_ms))
            if self.closing or self._wake_rx in ready:
                raise DataFlowClosedError("RemoteDataZMQ was closed while a reader waited")
            if not ready:
                return None
            noblock = self._zmq.NOBLOCK
            return [
                (i, s.recv_multipart(noblock, copy=False))
                for i, s in enumerate(self.sockets)
                if s in ready
            ]

    def close(self) -> None:
        with self._close_once:
            if self.closing:
                return
            self.closing = True
            self._wake_tx.send(b"", self._zmq.NOBLOCK)
            with self._busy:  # the reader has left the sockets (or was never in them)
                for s in (*self.sockets, self._wake_rx, self._wake_tx):
                    s.close(linger=0)
                self.ctx.term()


class RemoteDataZMQ(DataFlow):
    """Yield the datapoints that :func:`send_dataflow_zmq` senders push, from a PULL socket on
    ``addr1`` (and a second one on ``addr2`` if given, e.g. TCP and IPC at once).

    Infinite: each pass yields forever, in arrival order (per sender, in its order); ``len`` is
    unknown. Several senders may feed one receiver. The sockets are created in ``reset_state``, so
    :attr:`endpoints` tells the actual addresses after it (useful with a wildcard port such as
    ``"tcp://127.0.0.1:*"``). Not reentrant: one pass at a time reads the sockets.

    Safety: messages are decoded with the safe codec only; a message that is not a datapoint
    from a dataflow sender (wrong framing, garbage, a pickle, a value that is not a list, tuple or
    dict) is dropped, counted in :attr:`dropped`, and logged (the first ten one by one, then every
    thousandth). A frame over ``max_message_size`` makes ZeroMQ disconnect its sender (which
    reconnects); the frame is never held in memory, and it is not counted in :attr:`dropped`.

    Faults: delivery is at-most-once (see the module's docstring for exactly-once). A sender that
    dies and is started again is picked up without touching the receiver (with ``bind=True`` it
    connects again; with ``bind=False`` ZeroMQ reconnects to it). ``close()`` may come from another
    thread while a reader waits: the reader gets :class:`~dataflow.errors.DataFlowClosedError`
    within milliseconds. ``timeout`` bounds the wait for the next message.

    Attributes:
        cnt1, cnt2 (int): datapoints received from ``addr1`` and ``addr2``.
        dropped (int): messages dropped as malformed or oversized.
        endpoints (list[str]): the bound or connected endpoints, after ``reset_state``.
    """

    reentrant = False
    _df_not_resumable = (
        "it receives from a socket, which cannot go back or forward (the transport is "
        "at-most-once); save the position of the senders' pipelines instead"
    )

    def __init__(
        self,
        addr1: str,
        addr2: str | None = None,
        hwm: int = 50,
        bind: bool = True,
        *,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        timeout: float | None = None,
    ) -> None:
        """
        Args:
            addr1, addr2: the ZMQ endpoints to read from (``addr2`` optional).
            hwm: ZMQ's high-water mark: how many messages may wait in each socket's queue.
            bind: bind to the endpoints (the senders connect), or connect to them.
            max_message_size: the largest message accepted, in bytes. ZeroMQ itself enforces it
                (``ZMQ_MAXMSGSIZE``): a peer that sends a larger frame is disconnected as soon as
                its header arrives, so a sender cannot make the receiver hold more than this.
            timeout: seconds a pass may wait for the next message before it raises
                :class:`~dataflow.errors.ReceiveTimeout` naming the endpoints (None: wait
                forever, as tensorpack does).
        """
        who = "RemoteDataZMQ"
        self._addr1 = _check_addr(addr1, who, "addr1")
        self._addr2 = None if addr2 is None else _check_addr(addr2, who, "addr2")
        self._hwm = _check_positive(hwm, who, "hwm")
        self._bind = bool(bind)
        self._max_size = _check_positive(max_message_size, who, "max_message_size")
        if timeout is not None and (
            isinstance(timeout, bool)
            or not isinstance(timeout, (int, float, np.integer, np.floating))
            or not timeout > 0
        ):
            raise DataFlowArgumentError(
                f"{who}: timeout must be None or a positive number of seconds, got {timeout!r}"
            )
        self._timeout = None if timeout is None else float(timeout)
        self.cnt1 = 0
        self.cnt2 = 0
        self.dropped = 0
        self.endpoints: list[str] = []
        self._sockets: list[Any] = []
        self._receiver: _Receiver | None = None

    def bind_or_connect(self, socket: Any, addr: str) -> None:
        """Bind ``socket`` to ``addr`` or connect it, as the ``bind`` argument says."""
        if self._bind:
            socket.bind(addr)
        else:
            socket.connect(addr)

    def reset_state(self) -> None:
        zmq = require("zmq", "remote", who="RemoteDataZMQ")
        self.cnt1 = 0
        self.cnt2 = 0
        self.dropped = 0
        ctx = zmq.Context()
        sockets = []
        try:
            for addr in (self._addr1, self._addr2):
                if addr is None:
                    continue
                socket = ctx.socket(zmq.PULL)
                sockets.append(socket)
                socket.set_hwm(self._hwm)
                socket.setsockopt(zmq.MAXMSGSIZE, self._max_size)
                self.bind_or_connect(socket, addr)
            receiver = _Receiver(zmq, ctx, sockets)
        except BaseException:
            for s in sockets:
                s.close(linger=0)
            ctx.term()
            raise
        self._sockets = sockets
        self._receiver = receiver
        addrs = [a for a in (self._addr1, self._addr2) if a is not None]
        self.endpoints = [
            s.getsockopt_string(zmq.LAST_ENDPOINT) if self._bind else a
            for s, a in zip(sockets, addrs)
        ]
        self._register_cleanup(receiver.close)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_sockets"] = []  # sockets cannot cross a process boundary; reset_state makes them
        state["_receiver"] = None
        return state

    def _drop(self, reason: str, source: int) -> None:
        self.dropped += 1
        if self.dropped <= 10 or self.dropped % 1000 == 0:
            logger.warning(
                "RemoteDataZMQ: dropped a message from %s: %s (%d dropped so far)",
                self.endpoints[source] if source < len(self.endpoints) else "?",
                reason,
                self.dropped,
            )

    def _decode(self, frames: list[Any], source: int) -> Any:
        """The datapoint in ``frames``, or None after dropping a malformed message."""
        if len(frames) != 2:
            self._drop(f"{len(frames)} frames, expected 2", source)
            return None
        if frames[0].bytes != MESSAGE_TAG:
            self._drop("not a dataflow message (unknown first frame)", source)
            return None
        size = len(frames[1])
        if size > self._max_size:
            self._drop(f"{size} bytes, over max_message_size={self._max_size}", source)
            return None
        try:
            dp = codec.loads(frames[1].buffer)  # arrays view the frame: no copy, writable
        except FormatError as e:
            self._drop(str(e), source)
            return None
        if not isinstance(dp, (list, tuple, dict)):
            self._drop(f"a {type(dp).__name__}, not a datapoint (list, tuple or dict)", source)
            return None
        return dp

    def __iter__(self) -> Iterator[Any]:
        receiver = self._receiver
        if receiver is None:
            raise DataFlowError("RemoteDataZMQ: no sockets (reset_state failed or was skipped)")
        decode = self._decode
        timeout_ms = None if self._timeout is None else max(1, round(self._timeout * 1000))
        while True:
            messages = receiver.receive(timeout_ms)
            if messages is None:
                raise ReceiveTimeout(
                    f"RemoteDataZMQ: no datapoint arrived on {' or '.join(self.endpoints)} "
                    f"within timeout={self._timeout:g} s (is a sender running and connected?)"
                )
            for source, frames in messages:
                dp = decode(frames, source)
                if dp is None:
                    continue
                if source == 0:
                    self.cnt1 += 1
                else:
                    self.cnt2 += 1
                yield dp

"""The contract between a pool and what its workers run, on either side of the channel.

A worker runs a :class:`Job`; the job talks back through a :class:`WorkerIO` (``put`` datapoints,
batched in transit, ``send`` control messages, ``get_task`` for maps). Messages from a worker are
``(kind, payload)`` with the kinds below. :func:`run_job` reports how a job ended (``DONE`` or
``ERROR``); :func:`make_worker_error` turns an ``ERROR`` payload back into the
:class:`~dataflow.errors.WorkerError` the consumer raises, with the worker's traceback.
"""

from __future__ import annotations

import pickle
import traceback
from typing import Any

from ..errors import DataFlowTerminated, WorkerError
from .context import WorkerInfo

__all__ = ["DATA", "ERROR", "END_PASS", "DONE", "DIED", "Job", "WorkerIO"]

# Message kinds, worker -> consumer. DIED is made up by the consumer when a sentinel fires.
DATA, ERROR, END_PASS, DONE, DIED = range(5)

MAX_TRANSIT_ITEMS = 128  # datapoints a worker packs into one message at most
_TRANSIT_TARGET_BYTES = 256 << 10  # ... and about this many bytes


class WorkerStopped(BaseException):
    """Raised inside a thread worker when its pool closes; unwinds the job quietly."""


class Job:
    """What a worker runs. ``run(io)`` produces with ``io.put``/``io.send`` and reads tasks with
    ``io.get_task``. Returning ends the worker's stream (``DONE``); raising
    :class:`DataFlowTerminated` too; any other exception is reported as ``ERROR``."""

    def run(self, io: WorkerIO) -> None:
        raise NotImplementedError


class WorkerIO:
    """The worker's end of its channel (see the concrete classes)."""

    info: WorkerInfo
    #: Whether the worker runs in another process than the consumer (an exception then travels
    #: pickled, else as the object itself).
    crosses_processes = True

    def put(self, item: Any) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        raise NotImplementedError

    def send(self, kind: int, payload: Any) -> None:
        raise NotImplementedError

    def get_task(self) -> Any:
        raise NotImplementedError

    def consumer_waiting(self) -> bool:
        """Is the consumer starving right now (so that pending output should go out)?"""
        raise NotImplementedError


def _type_name(exc: BaseException) -> str:
    t = type(exc)
    module = t.__module__
    return t.__qualname__ if module in ("builtins", "__main__") else f"{module}.{t.__qualname__}"


def _error_payload(exc: BaseException, in_process: bool) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "type": _type_name(exc),
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
    }
    if in_process:
        try:
            payload["exc"] = pickle.dumps(exc, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:  # noqa: BLE001 - the text is what matters; the object is a bonus
            pass
    else:
        payload["exc_obj"] = exc
    return payload


def run_job(job: Job, io: WorkerIO) -> None:
    """Run ``job`` and report how it ended (DONE or ERROR) on ``io``."""
    try:
        job.run(io)
        io.send(DONE, "finished")
    except DataFlowTerminated:
        io.send(DONE, "terminated")
    except WorkerStopped:
        raise
    except BaseException as e:  # noqa: BLE001 - every failure is reported to the consumer
        io.send(ERROR, _error_payload(e, in_process=io.crosses_processes))


def make_worker_error(payload: dict[str, Any], worker: str) -> WorkerError:
    tb = payload.get("traceback", "")
    err = WorkerError(
        f"{worker} raised {payload['type']}: {payload['message']}\n\n"
        f"Traceback in the worker:\n{tb}",
        worker=worker,
        exc_type_name=payload["type"],
        traceback_text=tb,
    )
    cause = payload.get("exc_obj")
    if cause is None and "exc" in payload:
        try:
            cause = pickle.loads(payload["exc"])
        except Exception:  # noqa: BLE001 - an exception that cannot be rebuilt here
            cause = None
    err.__cause__ = cause
    return err


def _next_batch_max(msg_size: int, n_items: int) -> int:
    """How many datapoints to pack into the next message, from the size of the last one."""
    per_item = max(1, msg_size // max(1, n_items))
    return max(1, min(MAX_TRANSIT_ITEMS, _TRANSIT_TARGET_BYTES // per_item))

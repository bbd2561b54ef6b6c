"""A background thread that runs an iterator ``depth`` items ahead (device transfers of the adapters)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

_END = object()


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def prefetch(items: Iterator, transform: Callable[[Any], Any], depth: int, name: str) -> Iterator:
    """Yield ``transform(item)`` for each item, computed in a thread up to ``depth`` items ahead.

    An exception in the thread (from ``items`` or ``transform``) is raised here, with its original
    traceback. Closing the generator (or garbage collecting it) stops the thread, which closes
    ``items`` in the thread that iterated it, and joins it before returning.
    """
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(value: Any) -> bool:
        while not stop.is_set():
            try:
                slots.put(value, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for item in items:
                if not put(transform(item)):
                    return
            put(_END)
        except BaseException as e:  # handed to the consumer, which raises it
            put(_Failure(e))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    try:
        while True:
            value = slots.get()
            if value is _END:
                return
            if isinstance(value, _Failure):
                raise value.error
            yield value
    finally:
        stop.set()
        thread.join()

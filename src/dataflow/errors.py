"""The exception hierarchy of the library: one module, one root.

Everything the library raises on purpose derives from :class:`DataFlowError`, so a user can catch
the library's errors in one ``except`` clause. A few classes also derive from a builtin where code
written for tensorpack or for Python's protocols expects it:

- :class:`LengthUnknownError` is a ``NotImplementedError`` (tensorpack's convention for "size unknown")
  *and* a ``TypeError``, because ``list()``, ``tuple()`` and ``sorted()`` ask an iterable for its
  length and only tolerate a ``TypeError``.
- :class:`BatchError` and :class:`DataFlowArgumentError` are ``ValueError`` s.
- :class:`DataFlowTerminated` is a ``BaseException`` exactly as in tensorpack: a source raises it to
  say "no more data, ever", and it must not be swallowed by a broad ``except Exception``.
"""

from __future__ import annotations

__all__ = [
    "DataFlowError",
    "DataFlowArgumentError",
    "DataFlowClosedError",
    "ReentrancyError",
    "LengthUnknownError",
    "BatchError",
    "DatapointError",
    "WorkerError",
    "WorkerDied",
    "FormatError",
    "DownloadError",
    "StateError",
    "ReceiveTimeout",
    "DataFlowTerminated",
]


class DataFlowError(Exception):
    """Root of every error the library raises on purpose."""


class DataFlowArgumentError(DataFlowError, ValueError):
    """A constructor or function got an argument it cannot work with (the message names it)."""


class DataFlowClosedError(DataFlowError, RuntimeError):
    """A flow was iterated (or reset) after ``close()``."""


class ReentrancyError(DataFlowError, RuntimeError):
    """A second live iterator was requested from a flow that supports only one at a time."""


class LengthUnknownError(DataFlowError, NotImplementedError, TypeError):
    """The flow cannot tell how many datapoints one pass yields (unknown or infinite).

    It is a ``NotImplementedError`` as tensorpack's ``size()`` raised, and also a ``TypeError`` so
    that ``list(ds)``, ``tuple(ds)`` and ``sorted(ds)`` still work on such a flow.
    """


class DatapointError(DataFlowError, TypeError):
    """A datapoint does not have the structure a component expects (the message names which)."""


class BatchError(DataFlowError, ValueError):
    """Datapoints cannot be stacked into a batch (ragged shapes, mixed types, wrong length)."""


class WorkerError(DataFlowError):
    """An exception raised in a worker (thread or process), re-raised in the consumer.

    Attributes:
        worker: a description of the worker that failed (e.g. ``"process worker 1 (pid 1234)"``).
        exc_type_name: the qualified name of the original exception type.
        traceback_text: the formatted traceback from the worker.
    """

    def __init__(
        self, message: str, worker: str = "", exc_type_name: str = "", traceback_text: str = ""
    ) -> None:
        super().__init__(message)
        self.worker = worker
        self.exc_type_name = exc_type_name
        self.traceback_text = traceback_text

    def __reduce__(self):  # keep the attributes when the error itself crosses a process boundary
        return (
            type(self),
            (
                self.args[0] if self.args else "",
                self.worker,
                self.exc_type_name,
                self.traceback_text,
            ),
        )


class WorkerDied(DataFlowError):
    """A worker process ended without being asked to (killed, crashed, ``os._exit``).

    Attributes:
        worker: which worker died.
        exitcode: its exit code; negative values are ``-signal`` as in ``multiprocessing``.
    """

    def __init__(self, message: str, worker: str = "", exitcode: int | None = None) -> None:
        super().__init__(message)
        self.worker = worker
        self.exitcode = exitcode

    def __reduce__(self):
        return (type(self), (self.args[0] if self.args else "", self.worker, self.exitcode))


class FormatError(DataFlowError, ValueError):
    """A file or message is not in the format a reader expects (the message names the file)."""


class DownloadError(DataFlowError, OSError):
    """A dataset file could not be downloaded, or what was downloaded is not the published file.

    It is also an ``OSError``, as ``urllib``'s network errors are.

    Attributes:
        path: the file it concerns (its final path, not the ``.part`` file).
        url: the address it was fetched from, where one was involved.
    """

    def __init__(self, message: str, path: str | None = None, url: str | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.url = url


class ReceiveTimeout(DataFlowError, TimeoutError):
    """No datapoint arrived within a receiver's ``timeout`` (the message names the addresses)."""


class DataFlowTerminated(BaseException):
    """Raised by a source to say it will never produce data again (tensorpack compatible).

    Consumers such as runners treat it as the end of the stream rather than an error.
    """


class StateError(DataFlowError, ValueError):
    """A pipeline state (``state_dict()``) cannot be saved or loaded here.

    Raised by ``load_state_dict`` for a state of another pipeline (the message names the first
    stage that differs and how), of a newer format version, or one a flow cannot resume from (a
    one-shot generator already consumed); and by ``state_dict`` on a flow that cannot be resumed
    (a queue, a socket).
    """

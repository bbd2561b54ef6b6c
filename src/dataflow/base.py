"""DataFlow, ProxyDataFlow, RNGDataFlow: the contract every flow keeps.

A DataFlow is an iterable of datapoints (a list/tuple of components, or a dict). Subclasses write
either the new names (``__iter__``/``__len__``) or tensorpack's old ones (``get_data``/``size``); both
work in both directions. The base class enforces the lifecycle without any per-datapoint cost, by
wrapping those methods once when a subclass is defined:

- ``reset_state()`` runs once per instance per process. Iterating a flow that was not reset in this
  process resets it first (tensorpack required the call; we make forgetting it harmless).
- ``__len__`` of a flow that does not know its length raises :class:`LengthUnknownError`, a
  ``NotImplementedError`` that ``list()``/``tuple()``/``sorted()`` tolerate.
- ``close()`` releases what the flow and its upstream own; flows are context managers, and resources
  registered with :meth:`DataFlow._register_cleanup` are also released on garbage collection and at
  interpreter exit. Iterating a closed flow raises :class:`DataFlowClosedError`.
- A flow whose class sets ``reentrant = False`` refuses a second *live* iterator with
  :class:`ReentrancyError`. An iterator that was exhausted, closed or garbage collected is not live,
  so abandoning an iterator never blocks the next one.
- ``state_dict()``/``load_state_dict()`` save and restore the position of the whole pipeline, mid
  pass included (see :mod:`dataflow._state` for the mechanism and docs/resume.md for the promises).
"""

from __future__ import annotations

import functools
import itertools
import os
import sys
import weakref
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any, ClassVar

import numpy as np

from . import _state, _stats
from ._engine import seeding
from .errors import (
    DataFlowArgumentError,
    DataFlowClosedError,
    DataFlowTerminated,
    LengthUnknownError,
    ReentrancyError,
)

__all__ = [
    "DataFlow",
    "ProxyDataFlow",
    "RNGDataFlow",
    "DataFlowTerminated",
    "DataFlowReentrantGuard",
]

_serials = itertools.count()


def _is_running(it: object) -> bool:
    return bool(getattr(it, "gi_running", False))


def _is_finished(it: object) -> bool:
    # A generator whose frame is gone has been exhausted or closed.
    return hasattr(it, "gi_frame") and it.gi_frame is None  # type: ignore[attr-defined]


def _runs_in_this_thread(it: object) -> bool:
    """Whether the running generator ``it`` is on the calling thread's stack (a nested call)."""
    target = getattr(it, "gi_frame", None)
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        if frame is target:
            return True
        frame = frame.f_back
    return False


def _begin_pass(flow: DataFlow) -> int | None:
    """Checks and bookkeeping before a pass starts. Returns None for a nested call, else how many
    datapoints the pass must skip (a replay flow resuming mid-pass; 0 otherwise).

    A call is nested when it comes from the flow's own current iterator (a subclass whose
    ``__iter__`` calls ``super().__iter__()`` or ``self.get_data()``): it belongs to the same pass.
    """
    if flow.__dict__.get("_df_beginning"):
        return None
    if flow.__dict__.get("_df_reset") != os.getpid():
        # An iterator recorded by another process (copied by fork) is not live here.
        flow.__dict__.pop("_df_live", None)
        if flow._df_closed:
            raise DataFlowClosedError(
                f"{type(flow).__name__} was closed; it cannot be iterated again"
            )
        flow.reset_state()
    live_ref = flow.__dict__.get("_df_live")
    live = live_ref() if live_ref is not None else None
    if live is not None and _is_running(live) and _runs_in_this_thread(live):
        return None
    if flow._df_closed:
        raise DataFlowClosedError(f"{type(flow).__name__} was closed; it cannot be iterated again")
    if live is not None and not flow.reentrant and not _is_finished(live):
        raise ReentrancyError(
            f"{type(flow).__name__} is not reentrant: it is already being iterated. Exhaust or "
            "close the first iterator (or let it be garbage collected) before starting another."
        )
    pending = flow.__dict__.pop("_df_pending", None)
    if pending is None:
        # What a resumed pass left for its iterator (``_df_start``) is stale if that iterator
        # never ran: a new pass starts at its beginning.
        flow.__dict__.pop("_df_pass_state", None)
        flow.__dict__.pop("_df_start", None)
        flow._on_new_pass()
        skip = 0
    else:
        skip = _state.resume(flow, pending)
    if _state.kind(type(flow)) == "replay":
        # Where the upstream stood when this pass began: a resumed replay starts it from there.
        flow.__dict__["_df_upstream_at_start"] = [
            _state.between_passes(node) for node in flow._df_upstream_nodes()
        ]
        flow.__dict__["_df_count"] = skip
    return skip


def _wrap_iter(fn: Callable[[Any], Iterator]) -> Callable[[Any], Iterator]:
    @functools.wraps(fn)
    def iterate(self):
        if self.__dict__.pop("_df_skip_pass", False):
            return iter(())  # resumed: the rest of a pass that had ended (_state.ended_here)
        skip = _begin_pass(self)
        if skip is None:
            return fn(self)
        self._df_beginning = True
        try:
            it = fn(self)
            if _state.kind(type(self)) == "replay":
                if skip:
                    skip = _state.consume(it, skip)
                it = _state.counted(self, it, skip)
        finally:
            self._df_beginning = False
        try:
            self._df_live = weakref.ref(it)
        except TypeError:  # an iterator type without weakref support: nothing to track
            self._df_live = None
        if _stats.ON:  # per-stage counting (dataflow._stats); the live iterator stays the flow's
            it = _stats.observe(self, it)
        if self.__dict__.pop("_df_retry_empty", False):
            # The live iterator stays the flow's own (its state is read off it); the wrapper
            # holds it, so it lives as long as the consumer's iterator does.
            return _state.retry_if_empty(self, it)
        return it

    iterate._df_wrapped = True  # type: ignore[attr-defined]
    return iterate


def _wrap_len(fn: Callable[[Any], int]) -> Callable[[Any], int]:
    @functools.wraps(fn)
    def length(self):
        try:
            n = fn(self)
        except LengthUnknownError:
            raise
        except NotImplementedError as e:
            raise LengthUnknownError(
                f"{type(self).__name__} does not know its length" + (f": {e}" if str(e) else "")
            ) from e
        return n

    length._df_wrapped = True  # type: ignore[attr-defined]
    return length


def _wrap_reset(fn: Callable[[Any], None]) -> Callable[[Any], None]:
    @functools.wraps(fn)
    def reset_state(self):
        pid = os.getpid()
        state = self.__dict__.get("_df_reset")
        if state == pid:
            return None  # already reset in this process
        if state == -pid:
            return fn(self)  # a subclass's reset_state calling super().reset_state()
        if self._df_closed:
            raise DataFlowClosedError(f"{type(self).__name__} was closed; it cannot be reset")
        if self.__dict__.get("_df_position") is None:
            _assign_positions(self)
        self._df_reset = -pid
        try:
            fn(self)
        except BaseException:
            self._df_reset = None
            raise
        self._df_reset = pid
        return None

    reset_state._df_wrapped = True  # type: ignore[attr-defined]
    return reset_state


def _run_in_owner(owner_pid: int, fn: Callable[..., Any], *args: Any) -> None:
    # A forked child inherits the parent's finalizers; the resource is the parent's to release.
    if os.getpid() == owner_pid:
        fn(*args)


_WRAPPERS: dict[str, Callable[[Callable[..., Any]], Callable[..., Any]]] = {
    "__iter__": _wrap_iter,
    "get_data": _wrap_iter,
    "__len__": _wrap_len,
    "size": _wrap_len,
    "reset_state": _wrap_reset,
}


def upstream_flows(flow: object) -> list[tuple[str, DataFlow]]:
    """The flows a flow holds in its attributes (directly or in a list/tuple/dict), with their names."""
    found: list[tuple[str, DataFlow]] = []
    for name, value in vars(flow).items():
        if name.startswith("_df_"):
            continue
        if isinstance(value, DataFlow):
            found.append((name, value))
        elif isinstance(value, (list, tuple)):
            # Only containers of flows are walked; a list of data is not (it can be millions long).
            if value and isinstance(value[0], DataFlow):
                found.extend(
                    (f"{name}[{i}]", v) for i, v in enumerate(value) if isinstance(v, DataFlow)
                )
        elif isinstance(value, dict):
            if value and isinstance(next(iter(value.values())), DataFlow):
                found.extend(
                    (f"{name}[{k!r}]", v) for k, v in value.items() if isinstance(v, DataFlow)
                )
    return found


def _assign_positions(root: DataFlow) -> None:
    """Name every flow reachable from ``root`` by its path; the names key the seeding scheme."""
    root._df_position = str(seeding.next_root_index())
    stack = [root]
    while stack:
        flow = stack.pop()
        for name, child in upstream_flows(flow):
            if child.__dict__.get("_df_position") is None:
                child._df_position = f"{flow._df_position}.{name}"
                stack.append(child)


class DataFlow:
    """Base class of every flow. Subclass it and write ``__iter__`` (or ``get_data``).

    Optional: ``__len__`` (or ``size``) returns the number of datapoints one pass yields;
    ``reset_state`` prepares the flow in the process that runs it (open files, seed RNGs).
    ``close`` releases resources; subclasses that own some extend it and call ``super().close()``.

    Class attribute ``reentrant``: ``False`` for flows whose iteration shares state between passes
    (a buffer, a worker pool): a second live iterator then raises :class:`ReentrancyError`.
    """

    reentrant: ClassVar[bool] = True
    _df_root: ClassVar[bool] = True  # marks the base class itself (dataflow._state.kind)

    # Class-level defaults so that subclasses that never call ``super().__init__()`` (the seed's
    # examples do not) still work.
    _df_closed: bool = False
    _df_position: str | None = None
    _df_epoch: int = 0
    # Why this flow's position cannot be saved (a queue, a socket), or None: state_dict() raises.
    _df_not_resumable: ClassVar[str | None] = None

    def __new__(cls, *args: Any, **kwargs: Any):
        obj = super().__new__(cls)
        obj.__dict__["_df_serial"] = next(_serials)
        return obj

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _adopt_user_state(cls)
        for name, wrap in _WRAPPERS.items():
            # Resolved through the MRO, so that a method a class inherits from a mixin that is
            # not a DataFlow is wrapped too; DataFlow's own delegating methods stay as they are.
            fn = getattr(cls, name, None)
            if (
                callable(fn)
                and not getattr(fn, "_df_wrapped", False)
                and fn is not DataFlow.__dict__.get(name)
            ):
                setattr(cls, name, wrap(fn))

    # -- iteration, old and new names --------------------------------------------------------
    def __iter__(self) -> Iterator:
        if type(self).get_data is DataFlow.get_data:
            raise NotImplementedError(
                f"{type(self).__name__} defines neither __iter__ nor get_data"
            )
        return self.get_data()

    def get_data(self) -> Iterator:
        """tensorpack's name for ``__iter__``; every flow answers both."""
        if type(self).__iter__ is DataFlow.__iter__:
            raise NotImplementedError(
                f"{type(self).__name__} defines neither __iter__ nor get_data"
            )
        return self.__iter__()

    def __len__(self) -> int:
        if type(self).size is DataFlow.size:
            raise LengthUnknownError(f"{type(self).__name__} does not know its length")
        return self.size()

    def size(self) -> int:
        """tensorpack's name for ``__len__``; every flow answers both."""
        if type(self).__len__ is DataFlow.__len__:
            raise LengthUnknownError(f"{type(self).__name__} does not know its length")
        return self.__len__()

    # -- lifecycle ---------------------------------------------------------------------------
    def reset_state(self) -> None:
        """Prepare the flow in the process that runs it. Called once per instance per process.

        The base implementation does nothing. Iterating a flow calls it first if it has not run
        in this process yet; calling it again in the same process is a no-op.
        """

    def _on_new_pass(self) -> None:
        """Hook run at the start of every pass (after reset). Keep it cheap."""
        self._df_epoch += 1

    # -- resumable state (the mechanism: dataflow._state) -----------------------------------------
    def state_dict(self) -> dict:
        """The position of the whole pipeline below this flow, as plain (JSON-able) data.

        Call it on the outermost flow, at any time, a live iterator's pass included. A freshly
        built identical pipeline given it by :meth:`load_state_dict` goes on exactly from there.
        """
        return _state.save(self)

    def load_state_dict(self, state: dict) -> None:
        """Continue from ``state`` (from :meth:`state_dict` of an identical pipeline).

        Call it before the first iteration, before or after ``reset_state()``. The next pass
        yields what the saved pipeline would have yielded after the moment of ``state_dict()``,
        and later passes are those of the uninterrupted run. A state of another pipeline or a newer
        format raises :class:`~dataflow.errors.StateError` naming the first stage that differs.
        """
        _state.load(self, state)

    # -- per-stage statistics (the mechanism: dataflow._stats) -----------------------------------
    def stats(self) -> _stats.PipelineStats:
        """A snapshot of the per-stage statistics of the whole pipeline below this flow.

        Call it on the outermost flow, during a pass (from any thread) or after it. Counting must
        be on when the passes begin (``dataflow.stats.enable()`` or ``DATAFLOW_STATS=1``); a
        pipeline never counted raises :class:`~dataflow.stats.StatsOffError`.
        """
        return _stats.snapshot(self, upstream_flows)

    def _df_save(self) -> dict | None:
        """This flow's position in the current pass (native flows). Subclasses override."""
        raise NotImplementedError

    def _df_load(self, state: dict) -> None:
        """Seek to ``state`` (from ``_df_save``) as the resumed pass begins (native flows).

        Flows whose ``__iter__`` is a generator keep what they need in ``self._df_start`` and
        read it when the generator starts; a pass that begins without resuming clears it.
        """

    def _df_check(self, node: dict) -> str | None:
        """What makes ``node`` unusable for this flow (a different length...), or None."""
        return None

    def _df_carries_over(self) -> bool:
        """Whether the flow keeps something from one pass to the next (a buffer, a cache, a live
        upstream iterator): its ``_df_save``/``_df_load`` then run between passes too, and its
        upstream's state is saved as it stands rather than as "a new pass comes next"."""
        return False

    def _df_in_pass(self) -> bool:
        """Whether a pass is under way: its iterator is live, started and not exhausted (a pass
        begun without a first ``next()`` is saved as "before it began")."""
        live_ref = self.__dict__.get("_df_live")
        live = live_ref() if live_ref is not None else None
        return live is not None and not _is_finished(live) and not _state.not_started(self)

    def _df_upstreams(self) -> list[DataFlow]:
        """The flows this flow reads from, in the order their state nodes are saved."""
        return [flow for _, flow in upstream_flows(self)]

    def _df_upstream_nodes(self) -> list[dict]:
        nodes = [_state.node_of(flow) for flow in self._df_upstreams()]
        if self._df_in_pass() and not _state.not_started(self):
            nodes = [_state.ended_here(node) for node in nodes]
        return nodes

    def _df_save_rng(self) -> dict | None:
        return None

    def _df_load_rng(self, node: dict, in_pass: bool) -> None:
        pass

    def _register_cleanup(self, fn: Callable[..., Any], *args: Any) -> weakref.finalize:
        """Release a resource on ``close()``, on garbage collection and at interpreter exit.

        ``fn`` and ``args`` must not refer to the flow itself (or it would never be collected).
        The cleanup runs only in the process that registered it: a forked child's copy of the flow
        does not release the parent's resources.
        """
        fin = weakref.finalize(self, _run_in_owner, os.getpid(), fn, *args)
        self.__dict__.setdefault("_df_cleanups", []).append(fin)
        return fin

    def close(self) -> None:
        """Release everything this flow and its upstream own. Idempotent.

        After ``close()`` the flow cannot be iterated or reset again.
        """
        if self._df_closed:
            return
        self._df_closed = True
        live_ref = self.__dict__.pop("_df_live", None)
        live = live_ref() if live_ref is not None else None
        if live is not None and hasattr(live, "close") and not _is_running(live):
            live.close()
        for fin in reversed(self.__dict__.pop("_df_cleanups", [])):
            fin()
        for _, upstream in upstream_flows(self):
            upstream.close()

    @property
    def closed(self) -> bool:
        """Whether ``close()`` has been called."""
        return self._df_closed

    def __enter__(self):
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __reduce_ex__(self, protocol):  # pickling must not carry per-process lifecycle state
        reduced = super().__reduce_ex__(protocol)
        if isinstance(reduced, tuple) and len(reduced) >= 3 and isinstance(reduced[2], dict):
            state = {
                k: v
                for k, v in reduced[2].items()
                if k
                not in (
                    "_df_live",
                    "_df_reset",
                    "_df_cleanups",
                    "_df_beginning",
                    "_df_cursor",
                    "_df_stats",
                )
            }
            reduced = (*reduced[:2], state, *reduced[3:])
        return reduced


DataFlow.reset_state = _wrap_reset(DataFlow.reset_state)  # type: ignore[method-assign,assignment]


def _adopt_user_state(cls: type) -> None:
    """A class that writes its own ``state_dict``/``load_state_dict`` saves its own position.

    Its methods become the flow's ``_df_save``/``_df_load`` (called for its position in a pass),
    and the public names go back to the base's, which put that position in the pipeline's tree.
    """
    own = [name for name in ("state_dict", "load_state_dict") if name in cls.__dict__]
    if not own:
        return
    if len(own) == 1:
        raise TypeError(
            f"{cls.__name__} defines {own[0]} but not "
            f"{'load_state_dict' if own[0] == 'state_dict' else 'state_dict'}: a flow that saves "
            "its own position needs both"
        )
    user_save = cls.__dict__["state_dict"]
    user_load = cls.__dict__["load_state_dict"]

    def _df_save(self: DataFlow) -> dict | None:
        return user_save(self)

    def _df_load(self: DataFlow, state: dict) -> None:
        user_load(self, state)

    cls._df_save = _df_save  # type: ignore[attr-defined]
    cls._df_load = _df_load  # type: ignore[attr-defined]
    cls.state_dict = DataFlow.state_dict  # type: ignore[attr-defined]
    cls.load_state_dict = DataFlow.load_state_dict  # type: ignore[attr-defined]


class ProxyDataFlow(DataFlow):
    """A flow that wraps another one (``self.ds``) and forwards everything to it by default."""

    def __init__(self, ds: DataFlow) -> None:
        self.ds = check_dataflow(ds, type(self).__name__)

    def reset_state(self) -> None:
        self.ds.reset_state()

    def __len__(self) -> int:
        return len(self.ds)

    def __iter__(self) -> Iterator:
        return iter(self.ds)

    _df_save = _state.no_own_state  # forwards datapoints one for one: the upstream's position


class RNGDataFlow(DataFlow):
    """A flow with a seeded random generator, ``self.rng``.

    ``self.rng`` is a ``numpy.random.RandomState`` (tensorpack code calls ``rng.randint``,
    ``rng.rand``, ``rng.shuffle``; a ``numpy.random.Generator`` lacks the first two). It is derived from
    the pipeline seed (:func:`dataflow.set_seed`), the flow's place in the pipeline, the worker, and
    the epoch: each pass after the first gets a fresh stream, so pass ``k`` is reproducible on its
    own (the basis of resumable iteration). Without a seed, the streams come from fresh OS entropy.
    Assigning your own ``self.rng`` turns the per-pass reseeding off for this flow.
    """

    def _new_rng(self, epoch: int) -> np.random.RandomState:
        spec = self.__dict__.get("_df_spec_loaded")
        if spec is None:
            if self._df_position is None:
                _assign_positions(self)
            spec = seeding.stream_spec(str(self._df_position))
        self.__dict__["_df_spec"] = spec
        rng = seeding.rng_from_spec(spec, epoch)
        self.__dict__["_df_auto_rng"] = rng
        self.__dict__["_rng"] = rng
        return rng

    @property
    def rng(self) -> np.random.RandomState:
        rng = self.__dict__.get("_rng")
        if rng is None:
            rng = self._new_rng(max(self._df_epoch - 1, 0))
        return rng

    @rng.setter
    def rng(self, value: np.random.RandomState) -> None:
        self.__dict__["_rng"] = value

    def reset_state(self) -> None:
        self._df_epoch = 0
        self._new_rng(0)

    def _on_new_pass(self) -> None:
        epoch = self._df_epoch
        rng = self.__dict__.get("_rng")
        if rng is self.__dict__.get("_df_auto_rng"):
            if epoch > 0:
                self._new_rng(epoch)
        elif rng is not None:  # the user's own generator: remember where this pass started it
            self.__dict__["_df_rng_start"] = rng.get_state()
        self._df_epoch = epoch + 1

    def _df_save_rng(self) -> dict | None:
        rng = self.__dict__.get("_rng")
        if rng is None or rng is self.__dict__.get("_df_auto_rng"):
            spec = self.__dict__.get("_df_spec") or self.__dict__.get("_df_spec_loaded")
            if spec is None and self._df_position is not None:  # its stream is not drawn yet
                spec = seeding.stream_spec(str(self._df_position))
            return {"auto": True, "spec": None if spec is None else [int(v) for v in spec]}
        node: dict[str, Any] = {"auto": False, "now": _state.rng_to_plain(rng)}
        start = self.__dict__.get("_df_rng_start")
        if start is not None:
            node["start"] = _state.rng_to_plain(start)
        return node

    def _df_load_rng(self, node: dict, in_pass: bool) -> None:
        if node.get("auto", True):
            spec = node.get("spec")
            if spec is not None:
                self.__dict__["_df_spec_loaded"] = tuple(int(v) for v in spec)
            self._new_rng(max(self._df_epoch - 1, 0))  # the stream of the pass now beginning
        else:
            saved = node["start"] if in_pass and "start" in node else node["now"]
            _state.rng_from_plain(self.rng, saved)


def check_dataflow(ds: object, who: str, arg: str = "ds") -> DataFlow:
    """Validate that ``ds`` can serve as an upstream flow; raise a clear error naming ``who``."""
    if not isinstance(ds, DataFlow):
        if hasattr(ds, "__iter__") and hasattr(ds, "reset_state"):
            return ds  # type: ignore[return-value]  # a duck-typed flow
        raise DataFlowArgumentError(
            f"{who}: argument {arg!r} must be a DataFlow, got {type(ds).__name__}"
            + (
                " (wrap plain iterables with DataFromList or DataFromIterable)"
                if hasattr(ds, "__iter__")
                else ""
            )
        )
    return ds


class DataFlowReentrantGuard:
    """tensorpack's guard, kept for code that uses it: a context manager that raises
    :class:`ReentrancyError` if entered while already held (by any thread). Prefer
    ``reentrant = False`` on the class, which cannot deadlock on an abandoned iterator."""

    def __init__(self) -> None:
        import threading

        self._lock = threading.Lock()

    def __enter__(self) -> None:
        if not self._lock.acquire(False):
            raise ReentrancyError("This DataFlow is not reentrant!")

    def __exit__(self, *exc_info: object) -> None:
        self._lock.release()

"""Resumable iteration: the state tree every flow saves into, and the machinery flows share.

``flow.state_dict()`` returns ``{"format": "dataflow.state", "version": 1, "pipeline": NODE}``, where
a NODE describes one flow and, recursively, the flows it reads from::

    {"class": "BatchData",        # the flow's class name: checked on load
     "epoch": 3,                  # passes begun
     "in_pass": True,             # whether a pass was under way
     "state": {...},              # the flow's position in that pass (only when in_pass)
     "rng": {...},                # RNGDataFlow: which stream, and where it stood
     "upstream": [NODE, ...]}     # the flows it reads from, in attribute order

Everything in it is plain data (``json.dumps`` works). ``load_state_dict`` checks the whole tree
against the new pipeline, then hands each flow its node; a flow applies it when its next pass
begins (so loading before or after ``reset_state()`` is the same), continuing the saved pass when
``in_pass`` is set and starting the pass after it otherwise.

A flow saves its position in one of two ways, chosen per class (:func:`kind`):

- ``native``: the class (or a base class the iterating class derives from) implements the hooks
  ``_df_save() -> dict | None`` and ``_df_load(state)``: it seeks. Stateless stages (MapData,
  BatchData: they hold nothing between two datapoints) save nothing and let the upstream seek.
- ``replay``: any other class (a user's ``__iter__``). The base class counts the datapoints the pass
  yielded and keeps the upstream's state from the start of the pass; on resume the upstream goes
  back to that start, the flow's ``__iter__`` runs again and the counted datapoints are skipped:
  exact for a deterministic flow, O(k), logged once per class at INFO on ``dataflow.state``.

A user class that defines ``state_dict``/``load_state_dict`` itself is native: the base class calls
them for the flow's own position (``state_dict`` during a pass, ``load_state_dict`` before the pass
it resumes) and puts the result in the tree.
"""

from __future__ import annotations

import base64
import inspect
import itertools
import logging
import operator
from collections.abc import Iterator
from typing import Any

import numpy as np

from .errors import StateError

# The flows are typed ``Any`` here: base.py imports this module, not the other way round.
DataFlow = Any

__all__ = ["FORMAT", "VERSION", "save", "load", "node_of", "rng_to_plain", "rng_from_plain"]

FORMAT = "dataflow.state"
VERSION = 1

log = logging.getLogger("dataflow.state")
_replay_logged: set[str] = set()


# -- class kinds -------------------------------------------------------------------------------------


def _owner(cls: type, names: tuple[str, ...]) -> type | None:
    for klass in cls.__mro__:
        if "_df_root" in klass.__dict__:
            continue  # DataFlow's own delegating methods and defaults
        if any(name in klass.__dict__ for name in names):
            return klass
    return None


def kind(cls: type) -> str:
    """``"native"`` when the class's own iteration honours its ``_df_save``/``_df_load``."""
    cached = cls.__dict__.get("_df_kind")
    if cached is not None:
        return cached
    iterates = _owner(cls, ("__iter__", "get_data"))
    saves = _owner(cls, ("_df_save",))
    # A class that iterates in its own way (a user's subclass of DataFromList with its own
    # __iter__) does not know the hooks of the class it derives from: it is replayed. The hooks
    # count when they come first in the MRO: from the iterating class itself, a subclass of it,
    # or a mixin listed before it. A library class names its ``_df_save`` in its own body, so
    # that no flow is taken as stateless by inheritance.
    mro = cls.__mro__
    native = saves is not None and (iterates is None or mro.index(saves) <= mro.index(iterates))
    result = "native" if native else "replay"
    cls._df_kind = result  # type: ignore[attr-defined]
    return result


def no_own_state(flow: DataFlow) -> dict | None:
    """``_df_save`` of a stage that holds nothing between two datapoints."""
    return None


# -- RNG states as plain data ----------------------------------------------------------------------


def rng_to_plain(rng: np.random.RandomState | tuple) -> dict[str, Any]:
    """A RandomState's full state (or a ``get_state()`` tuple) as JSON-able data."""
    state = rng if isinstance(rng, tuple) else rng.get_state(legacy=True)
    name, key, pos, has_gauss, gauss = state  # type: ignore[misc]
    return {
        "bit_generator": str(name),
        "key": np.asarray(key).tolist(),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "gauss": float(gauss),
    }


def rng_from_plain(rng: np.random.RandomState, plain: dict[str, Any]) -> None:
    """Set ``rng`` to a state saved by :func:`rng_to_plain`."""
    rng.set_state(
        (
            plain["bit_generator"],
            np.asarray(plain["key"], dtype=np.uint32),
            int(plain["pos"]),
            int(plain["has_gauss"]),
            float(plain["gauss"]),
        )
    )


# -- saving --------------------------------------------------------------------------------------------


def node_of(flow: DataFlow) -> dict[str, Any]:
    """The state node of ``flow`` and everything upstream of it."""
    pending = flow.__dict__.get("_df_pending")
    if pending is not None:
        return pending  # loaded, not applied yet: the flow still stands where the node says
    reason = flow._df_not_resumable
    if reason:
        raise StateError(f"{type(flow).__name__} cannot save its position: {reason}")
    native = kind(type(flow)) == "native"
    in_pass = bool(flow._df_in_pass())
    epoch = int(flow._df_epoch)
    resumed = flow.__dict__.get("_df_pass_state")
    if not_started(flow):
        if (resumed is not None) if native else flow.__dict__.get("_df_count", 0):
            in_pass = True  # a resumed pass not started yet: where it was asked to start
        else:
            in_pass, epoch = False, max(epoch - 1, 0)  # begun, nothing taken: as before it
    node: dict[str, Any] = {"class": type(flow).__name__, "epoch": epoch, "in_pass": in_pass}
    rng = flow._df_save_rng()
    if rng is not None:
        node["rng"] = rng
    if native and flow._df_carries_over():
        node["carry"] = True  # its state's "pass" part is the pass's, the rest carries over
    state = None
    if not native:
        if in_pass:
            state = {"replayed": int(flow.__dict__.get("_df_count", 0))}
    elif in_pass and not_started(flow):
        state = resumed
    elif in_pass or flow._df_carries_over():
        state = flow._df_save()  # between passes: what it keeps from one to the next
    if state is not None:
        node["state"] = state
    if in_pass:
        if native:
            upstream = flow._df_upstream_nodes()
        else:
            upstream = flow.__dict__.get("_df_upstream_at_start") or []
    else:
        upstream = flow._df_upstream_nodes()
        if not flow._df_carries_over():
            # Its next pass begins new passes of its upstream, whatever an abandoned pass left.
            upstream = [between_passes(child) for child in upstream]
    if upstream:
        node["upstream"] = upstream
    return node


def between_passes(node: dict[str, Any]) -> dict[str, Any]:
    """``node`` as it will stand when its flow begins a new pass (its last one ended)."""
    out = {k: v for k, v in node.items() if k not in ("state", "upstream", "ended")}
    out["in_pass"] = False
    if node.get("carry"):  # it keeps its state and its upstream's across passes, less the pass's
        state = {k: v for k, v in (node.get("state") or {}).items() if k != "pass"}
        if state:
            out["state"] = state
        if node.get("upstream"):
            out["upstream"] = node["upstream"]
    elif node.get("upstream"):
        out["upstream"] = [between_passes(child) for child in node["upstream"]]
    return out


def ended_here(node: dict[str, Any]) -> dict[str, Any]:
    """The node of an upstream whose pass ended inside the current pass of the flow reading it.

    The resumed reader calls ``iter()`` on it again: that call must give the (empty) rest of the
    ended pass, not begin the next one; its next ``iter()`` after that begins the next pass.
    """
    if node["in_pass"] or not node["epoch"]:
        return node
    return {**node, "ended": True}


def not_started(flow: DataFlow) -> bool:
    live_ref = flow.__dict__.get("_df_live")
    live = live_ref() if live_ref is not None else None
    return inspect.isgenerator(live) and inspect.getgeneratorstate(live) == inspect.GEN_CREATED


def save(flow: DataFlow) -> dict[str, Any]:
    return {"format": FORMAT, "version": VERSION, "pipeline": node_of(flow)}


# -- loading ------------------------------------------------------------------------------------------


def _describe(path: list[str]) -> str:
    return " -> ".join(path)


def _check_node(flow: DataFlow, node: Any, path: list[str]) -> None:
    here = [*path, type(flow).__name__]
    where = _describe(here)
    if not isinstance(node, dict) or "class" not in node:
        raise StateError(
            f"load_state_dict: the state of {where} is not a flow's node: {node!r:.80}"
        )
    if node["class"] != type(flow).__name__:
        raise StateError(
            f"load_state_dict: the state is of another pipeline: at {_describe(path) or 'the top'}"
            f" the pipeline has {type(flow).__name__}, the state has {node['class']}"
        )
    for key in ("epoch", "in_pass"):
        if key not in node:
            raise StateError(f"load_state_dict: the state of {where} lacks {key!r}")
    problem = flow._df_check(node)
    if problem:
        raise StateError(f"load_state_dict: {where}: {problem}")
    saved = node.get("upstream") or []
    ups = flow._df_upstreams()
    if len(saved) != len(ups):
        raise StateError(
            f"load_state_dict: the state is of another pipeline: {where} reads from "
            f"{len(ups)} flow(s) ({', '.join(type(u).__name__ for u in ups) or 'none'}), the state "
            f"has {len(saved)} ({', '.join(str(n.get('class')) for n in saved) or 'none'})"
        )
    for upstream, child in zip(ups, saved):
        _check_node(upstream, child, here)


def assign(flow: DataFlow, node: dict[str, Any]) -> None:
    """Hand ``flow`` and its upstream their (checked) nodes: each applies its own at its next pass.

    Also used by flows that re-read their upstream from a point they saved (CacheData,
    LocallyShuffleData).
    """
    flow.__dict__["_df_pending"] = node
    if node.get("ended"):
        flow.__dict__["_df_skip_pass"] = True
    else:
        flow.__dict__.pop("_df_skip_pass", None)  # a node assigned again replaces the first
    for upstream, child in zip(flow._df_upstreams(), node.get("upstream") or []):
        assign(upstream, child)


def load(flow: DataFlow, state: Any) -> None:
    """Check ``state`` against the pipeline of ``flow`` and hand every flow its node."""
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise StateError(
            f"{type(flow).__name__}.load_state_dict: not a dataflow state (expected a dict with "
            f"format={FORMAT!r}, as state_dict() returns), got {type(state).__name__}"
        )
    version = state.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise StateError(
            f"{type(flow).__name__}.load_state_dict: the state has format version {version!r}, "
            f"this dataflow reads versions up to {VERSION}: it was saved by a newer dataflow"
        )
    node: Any = state.get("pipeline")
    _check_node(flow, node, [])
    assign(flow, node)
    # Saved after the last datapoint of a pass, the resumed pass has nothing left: the next one
    # is the pass that follows (never an empty pass).
    flow.__dict__["_df_retry_empty"] = bool(node["in_pass"])


def resume(flow: DataFlow, node: dict[str, Any]) -> int:
    """Apply ``node`` as ``flow``'s pass begins. Returns how many datapoints to skip (replay)."""
    in_pass = bool(node["in_pass"])
    epoch = int(node["epoch"])
    flow._df_epoch = epoch - 1 if in_pass and epoch > 0 else epoch
    flow._on_new_pass()
    rng = node.get("rng")
    if rng is not None:
        flow._df_load_rng(rng, in_pass)
    native = kind(type(flow)) == "native"
    if not in_pass:
        if native and node.get("state") is not None:  # what it carries from pass to pass
            flow._df_load(node["state"])
        return 0
    if native:
        state = node.get("state")
        flow.__dict__["_df_pass_state"] = state
        if state is not None:
            flow._df_load(state)
        return 0
    name = type(flow).__qualname__
    if name not in _replay_logged:
        _replay_logged.add(name)
        log.info(
            "%s has no state support: resuming it replays its pass and skips what it had "
            "yielded (O(k)); give it state_dict/load_state_dict to seek instead",
            name,
        )
    return int((node.get("state") or {}).get("replayed", 0))


# -- helpers for the iteration of replay flows and resumed roots --------------------------------------


def counted(flow: DataFlow, it: Iterator, start: int) -> Iterator:
    """Yield from ``it``, counting in ``flow._df_count`` (a replay flow's position)."""
    d = flow.__dict__
    d["_df_count"] = n = start
    for dp in it:
        n += 1
        d["_df_count"] = n
        yield dp


def consume(it: Iterator, n: int) -> int:
    """Advance ``it`` by ``n`` items (fewer if it ends); return how many were skipped."""
    return sum(1 for _ in itertools.islice(it, n))


def retry_if_empty(flow: DataFlow, it: Iterator) -> Iterator:
    """A resumed pass that turns out empty (saved after its last datapoint) is the next pass."""
    for dp in it:
        yield dp
        yield from it
        return
    flow.__dict__["_df_live"] = None  # not nested in this generator: a new pass begins
    yield from iter(flow)


def pack(obj: Any, who: str) -> str:
    """A datapoint as a JSON-able string (the library's codec, base64), for flows that hold one."""
    from . import codec

    try:
        data = codec.dumps(obj)
    except Exception as e:
        raise StateError(
            f"{who} holds a datapoint that must go into the state, and the codec cannot encode "
            f"it ({type(e).__name__}: {e}); use numpy arrays and Python scalars, lists and dicts"
        ) from e
    return base64.b64encode(data).decode("ascii")


def unpack(text: str) -> Any:
    from . import codec

    return codec.loads(base64.b64decode(text), copy=True)


def remaining(cursor: Any) -> int:
    """Items left in a C-level iterator that knows its length (list, range, tuple iterators)."""
    return operator.length_hint(cursor)


def gen_local(gen: Any, name: str) -> Any:
    """A local variable of a suspended generator (None before its first ``next()``)."""
    if not inspect.isgenerator(gen) or inspect.getgeneratorstate(gen) != inspect.GEN_SUSPENDED:
        return None
    return gen.gi_frame.f_locals.get(name)  # type: ignore[union-attr]


def pass_positions(flow: DataFlow, n: int) -> range:
    """The positions a pass of ``n`` records visits, from where a resumed pass starts
    (``flow._df_start``, consumed here): all of them, or, for a source a ShardByRank reads
    (``flow._df_stride = (rank, world_size)``), only this rank's ``rank, rank + world_size, ...``
    below ``n // world_size * world_size``: the other ranks' records are never touched."""
    start = flow.__dict__.pop("_df_start", 0)
    stride = flow.__dict__.get("_df_stride")
    if stride is None:
        return range(start, n)
    rank, world = stride
    return range(start + (rank - start) % world, n // world * world, world)


def strides(flow: DataFlow) -> bool:
    """Whether ``flow`` visits only a ShardByRank's positions when told to: the class that
    iterates it says so (``_df_strides = True`` in its own body; a subclass with its own
    ``__iter__`` does not inherit the promise)."""
    owner = _owner(type(flow), ("__iter__", "get_data"))
    return (
        owner is not None
        and bool(owner.__dict__.get("_df_strides"))
        and bool(getattr(flow, "_df_strides", False))
    )


class PositionalPass:
    """The state hooks of a source whose pass is ``for pos in range(start, n)`` over an order
    drawn at the pass's start (a shuffled index array, a list of files): the position is ``pos``,
    read off the suspended generator, and a resumed pass starts at ``self._df_start``.

    A class using it lists it before its base and names the save hook in its own body
    (``_df_save = _state.PositionalPass._df_save``), as the kind rule asks.
    """

    def _df_save(self: Any) -> dict:
        live_ref = self.__dict__.get("_df_live")
        pos = gen_local(live_ref() if live_ref is not None else None, "pos")
        return {"pos": int(pos) + 1, "len": len(self)}

    def _df_load(self: Any, state: dict) -> None:
        self._df_start = int(state["pos"])

    def _df_check(self: Any, node: dict) -> str | None:
        return check_len(self, node)


def check_len(flow: DataFlow, node: dict[str, Any], saved_key: str = "len") -> str | None:
    """A ``_df_check`` for flows whose saved position only makes sense with the same length."""
    saved = (node.get("state") or {}).get(saved_key)
    if saved is None:
        return None
    try:
        now = len(flow)  # type: ignore[arg-type]
    except (TypeError, NotImplementedError):
        return None
    if now != saved:
        return f"the state was saved with {saved} datapoints a pass, the flow now has {now}"
    return None

"""Source flows: turn data you already have (a list, a dict of columns, a generator, a queue) into a
DataFlow, or make fake data of given shapes.

Every class here is a drop-in for the one of the same name in ``tensorpack.dataflow.raw``. The
shuffling sources derive from :class:`~dataflow.base.RNGDataFlow`: their order comes from
``self.rng``, so :func:`dataflow.set_seed` makes it reproducible, and each pass (epoch) draws a new
order that is itself reproducible.

``len()`` of each source, in one line:

=====================  =============================================================================
DataFromList           ``len(lst)``
DataFromDict           the common length of the columns
DataFromGenerator      ``size`` if given, else ``len(gen)`` for a sized re-iterable, else unknown
DataFromIterable       ``len(iterable)`` if it has one, else unknown
DataFromQueue          unknown (the queue is read forever)
FakeData               ``size``
=====================  =============================================================================

"Unknown" means ``len()`` raises :class:`~dataflow.errors.LengthUnknownError`, a
``NotImplementedError`` (``list(ds)`` still works on a finite flow).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from . import _state
from ._checks import check_flag as _check_flag
from .base import DataFlow, RNGDataFlow
from .errors import DataFlowArgumentError, DataFlowError, LengthUnknownError

__all__ = [
    "FakeData",
    "DataFromQueue",
    "DataFromList",
    "DataFromDict",
    "DataFromGenerator",
    "DataFromIterable",
]


# -- argument checks ------------------------------------------------------------------------------


def _check_count(value: object, who: str, arg: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise DataFlowArgumentError(
            f"{who}: {arg} must be a non-negative int, got {type(value).__name__} {value!r}"
        )
    if value < 0:
        raise DataFlowArgumentError(f"{who}: {arg} must be a non-negative int, got {value}")
    return int(value)


def _check_sequence(
    value: object, who: str, arg: str, what: str = "a list of datapoints"
) -> Sequence:
    """Accept a random-access container: ``len()`` and integer indexing (list, ndarray...)."""
    if isinstance(value, (str, bytes, bytearray)):
        raise DataFlowArgumentError(f"{who}: {arg} must be {what}, got {type(value).__name__}")
    if isinstance(value, Mapping):
        raise DataFlowArgumentError(
            f"{who}: {arg} must be {what}, got {type(value).__name__}"
            + (" (use DataFromDict for a dict of columns)" if who == "DataFromList" else "")
        )
    if not (hasattr(value, "__len__") and hasattr(value, "__getitem__")):
        hint = (
            " (use DataFromGenerator or DataFromIterable for an iterator)"
            if hasattr(value, "__iter__")
            else ""
        )
        raise DataFlowArgumentError(
            f"{who}: {arg} must be a sequence supporting len() and indexing, "
            f"got {type(value).__name__}{hint}"
        )
    return value  # type: ignore[return-value]


class _OneShotSource:
    """Iterates an iterator across passes and refuses a pass once it is used up.

    A pass that is abandoned half way leaves the iterator where it stopped, and the next pass
    continues from there (what tensorpack does). A pass that reaches the end marks it used up: a
    later pass raises instead of silently yielding nothing.
    """

    def __init__(self, iterator: Iterator, who: str) -> None:
        self.iterator = iterator
        self.who = who
        self.used_up = False
        self.started = False

    def resume_problem(self, node: dict) -> str | None:
        """Why a resume from ``node`` is impossible with this iterator (``_df_check``)."""
        saved_pass_ended = node["epoch"] > 0 and not node["in_pass"]
        replayed = (node.get("state") or {}).get("replayed", 0)
        if saved_pass_ended:
            return (
                f"it wraps a one-shot iterator ({type(self.iterator).__name__}) whose pass had "
                "ended when the state was saved; a one-shot iterator has no next pass. Pass a "
                "callable that returns a new iterator (e.g. the generator function itself)"
            )
        if replayed and (self.started or self.used_up or self._finished()):
            return (
                f"it wraps a one-shot iterator ({type(self.iterator).__name__}) that was already "
                "consumed, so it cannot go forward to where the state was saved. Build the "
                "pipeline with a fresh iterator, or pass a callable that returns a new iterator "
                "(e.g. the generator function itself, not its result)"
            )
        return None

    def _finished(self) -> bool:
        return getattr(self.iterator, "gi_frame", True) is None  # a finished generator

    def check(self) -> None:
        if self.used_up or self._finished():
            raise DataFlowError(
                f"{self.who} wraps a one-shot iterator ({type(self.iterator).__name__}) that is "
                "already used up (by an earlier pass, or before it was wrapped). Pass a callable "
                "that returns a new iterator (e.g. the generator function itself, not its result) "
                "to iterate more than once."
            )

    def iterate(self) -> Iterator:
        # A for loop, not ``yield from``: closing this pass must not close the user's iterator,
        # so that an abandoned pass can be continued by the next one.
        self.started = True
        for dp in self.iterator:  # noqa: UP028
            yield dp
        self.used_up = True


def _index_cursor(order: Sequence[int] | range, start: int) -> Iterator[int]:
    """An iterator over ``order`` from ``start`` whose ``length_hint`` says how many are left."""
    cursor = iter(order)
    if start:
        cursor.__setstate__(start)  # type: ignore[attr-defined]  # list and range iterators
    return cursor


class _IndexedSource(RNGDataFlow):
    """Resume of a random-access source: the position is an index into the pass's order.

    The pass iterates C-level index iterators (no Python code per datapoint); the position is read
    off the first one's ``length_hint`` when the state is saved, and a resumed pass draws the same
    order (the RNG stands where it stood at the pass's start) and sets its iterators forward.
    """

    _df_cursor: tuple[Iterator[int], int] | None = None

    _df_positions: range | None = None  # a ShardByRank's pass: the positions it visits

    def _pass_order(self, n: int) -> tuple[Sequence[int] | range, int]:
        """This pass's order of indices and where in it to start."""
        if self.__dict__.get("_df_stride") is not None:
            # Only this rank's positions; the whole permutation is drawn, as on every rank.
            pos = self._df_positions = _state.pass_positions(self, n)
            if not self.shuffle:  # type: ignore[attr-defined]
                return range(n)[pos.start : pos.stop : pos.step], 0
            order = self.rng.permutation(n)  # type: ignore[attr-defined]
            return order[pos.start : pos.stop : pos.step].tolist(), 0
        self._df_positions = None
        start = self.__dict__.pop("_df_start", 0)
        if not self.shuffle:  # type: ignore[attr-defined]
            return range(n), start
        # A resumed pass draws the whole permutation (the RNG must end where the original's did)
        # but turns only its tail into Python ints: the position counts from the end (_position).
        return self.rng.permutation(n)[start:].tolist(), 0  # type: ignore[attr-defined]

    def _cursor_total(self, n: int) -> int:
        """What ``_position`` counts the cursor's remaining items from."""
        positions = self._df_positions
        return n if positions is None else len(positions)

    def _position(self) -> tuple[int, int] | None:
        if self._df_cursor is None:
            return None
        cursor, total = self._df_cursor
        done = total - _state.remaining(cursor)
        positions = self._df_positions
        if positions is None:
            return done, total
        return positions.start + done * positions.step, len(self)

    def _df_in_pass(self) -> bool:
        # At its end a pass is still "in pass": a flow above it may be between two of its reads.
        # A flow above that starts a new pass saves this one as between passes (_state).
        return self._df_cursor is not None

    def _df_save(self) -> dict:
        position = self._position()
        pos, n = position if position is not None else (0, len(self))
        return {"pos": pos, "len": n}

    def _df_load(self, state: dict) -> None:
        self._df_start = int(state["pos"])

    def _df_check(self, node: dict) -> str | None:
        return _state.check_len(self, node)


# -- sources ---------------------------------------------------------------------------------------


class DataFromList(_IndexedSource):
    """Yield the elements of a list, one datapoint each.

    Each element of ``lst`` is yielded as it is (no copy, no check), so it should be a datapoint:
    a list of components or a dict. Every pass yields every element exactly once; with
    ``shuffle=True`` in a new random order each pass, drawn from ``self.rng`` (reproducible under
    :func:`dataflow.set_seed`), otherwise in list order.

    ``len()`` is ``len(lst)``. The list is referenced, not copied: changing it between passes
    changes what the next pass yields; changing it during a pass is undefined.

    This is the fastest source: a pass is a C-level iteration over the list with no per-datapoint
    work in Python.
    """

    def __init__(self, lst: Sequence, shuffle: bool = True) -> None:
        """
        Args:
            lst: the datapoints; any sequence with ``len()`` and integer indexing (list, tuple,
                numpy array, ...).
            shuffle: yield them in a new random order every pass.
        """
        self.lst = _check_sequence(lst, "DataFromList", "lst")
        self.shuffle = _check_flag(shuffle, "DataFromList", "shuffle")

    def __len__(self) -> int:
        return len(self.lst)

    def __iter__(self) -> Iterator:
        lst = self.lst
        n = len(lst)
        order, start = self._pass_order(n)
        if not self.shuffle and type(lst) in (list, tuple) and self._df_positions is None:
            cursor = _index_cursor(lst, start)  # the list's own iterator: the fastest pass
            self._df_cursor = (cursor, n)
            return cursor
        cursor = _index_cursor(order, start)
        self._df_cursor = (cursor, self._cursor_total(n))
        # ``map`` over a C-level __getitem__ with Python ints: no Python frame per datapoint.
        return map(lst.__getitem__, cursor)

    _df_save = _IndexedSource._df_save
    _df_strides = True  # ShardByRank: _pass_order visits only its positions


class DataFromDict(_IndexedSource):
    """Yield one dict datapoint per row of a dict of equal-length columns.

    ``DataFromDict({"image": images, "label": labels})`` yields
    ``{"image": images[i], "label": labels[i]}`` for every index ``i``: exactly once per pass, in
    index order, or in a new random order each pass with ``shuffle=True`` (from ``self.rng``). The
    keys of every datapoint are those of ``data_dict``, in its order. Columns are referenced, not
    copied.

    ``len()`` is the common length of the columns. (tensorpack has no such class; it is the dict
    counterpart of :class:`DataFromList`.)
    """

    def __init__(self, data_dict: Mapping[Hashable, Sequence], shuffle: bool = True) -> None:
        """
        Args:
            data_dict: maps each key to a column: a sequence with ``len()`` and integer indexing
                (list, tuple, numpy array...). All columns must have the same length.
            shuffle: yield the rows in a new random order every pass.
        """
        who = "DataFromDict"
        if not isinstance(data_dict, Mapping):
            raise DataFlowArgumentError(
                f"{who}: data_dict must be a dict of columns, got {type(data_dict).__name__}"
            )
        if not data_dict:
            raise DataFlowArgumentError(f"{who}: data_dict has no keys")
        for key, column in data_dict.items():
            _check_sequence(column, who, f"data_dict[{key!r}]", "a column (list, tuple, array)")
        self.data_dict = data_dict
        self.shuffle = _check_flag(shuffle, who, "shuffle")
        self._common_length()

    def _common_length(self) -> int:
        lengths = {key: len(column) for key, column in self.data_dict.items()}
        if len(set(lengths.values())) > 1:
            raise DataFlowArgumentError(
                f"DataFromDict: the columns of data_dict have different lengths: {lengths}"
            )
        return next(iter(lengths.values()))

    def __len__(self) -> int:
        return self._common_length()

    def __iter__(self) -> Iterator[dict]:
        n = self._common_length()
        keys = list(self.data_dict)
        columns = [self.data_dict[k] for k in keys]
        order, start = self._pass_order(n)
        cursors = [_index_cursor(order, start) for _ in columns]
        self._df_cursor = (cursors[0], self._cursor_total(n))  # zip advances the first first
        rows: Iterable[tuple] = zip(*(map(col.__getitem__, c) for col, c in zip(columns, cursors)))
        return (dict(zip(keys, row)) for row in rows)

    _df_save = _IndexedSource._df_save
    _df_strides = True  # ShardByRank: _pass_order visits only its positions


class DataFromGenerator(DataFlow):
    """Yield what a generator yields.

    ``gen`` is either a callable that returns an iterable (typically a generator function: it is
    called again at the start of every pass, so each pass is a fresh run), or an iterable.

    - A re-iterable (a list, a range, ...) is iterated anew every pass.
    - A one-shot iterator (a generator object, ``iter(x)``, an open file) can be used up only once.
      A pass that is abandoned early leaves it where it stopped and the next pass continues from
      there; a pass that ran to its end leaves it used up, and starting another pass raises
      :class:`~dataflow.errors.DataFlowError` (rather than silently yielding nothing). Such a flow
      allows one live iterator at a time (:class:`~dataflow.errors.ReentrancyError` otherwise).

    ``len()``: ``size`` if given (taken on trust, not checked against the data), else ``len(gen)``
    when ``gen`` is a sized re-iterable, else unknown
    (:class:`~dataflow.errors.LengthUnknownError`, a ``NotImplementedError``). A generator
    function, in particular an infinite one, has no length.
    """

    def __init__(self, gen: Callable[[], Iterable] | Iterable, size: int | None = None) -> None:
        """
        Args:
            gen: a callable returning an iterable of datapoints (called once per pass), or an
                iterable of datapoints.
            size: the number of datapoints one pass yields, if you know it (tensorpack accepted
                this argument in older versions; it is kept for them).
        """
        who = "DataFromGenerator"
        if not callable(gen) and not hasattr(gen, "__iter__"):
            raise DataFlowArgumentError(
                f"{who}: gen must be a callable returning an iterable, or an iterable; "
                f"got {type(gen).__name__}"
            )
        self._gen = gen
        self._size = None if size is None else _check_count(size, who, "size")
        self._one_shot = (
            _OneShotSource(gen, who) if not callable(gen) and isinstance(gen, Iterator) else None
        )
        if self._one_shot is not None:
            self.reentrant = False  # type: ignore[misc]  # two passes would share one iterator

    def _df_check(self, node: dict) -> str | None:
        return None if self._one_shot is None else self._one_shot.resume_problem(node)

    def __len__(self) -> int:
        if self._size is not None:
            return self._size
        if not callable(self._gen) and self._one_shot is None and hasattr(self._gen, "__len__"):
            return len(self._gen)  # type: ignore[arg-type]
        raise LengthUnknownError(
            "DataFromGenerator does not know its length (a generator has none); "
            "pass size= if you know it"
        )

    def __iter__(self) -> Iterator:
        if self._one_shot is not None:
            self._one_shot.check()
            return self._one_shot.iterate()
        source = self._gen() if callable(self._gen) else self._gen
        if not hasattr(source, "__iter__"):
            raise DataFlowArgumentError(
                f"DataFromGenerator: gen() must return an iterable, it returned "
                f"{type(source).__name__}"
            )
        return iter(source)


class DataFromIterable(DataFlow):
    """Yield the elements of an iterable, one datapoint each.

    A re-iterable (list, tuple, range, a dataset object with ``__iter__``) is iterated anew every
    pass. A one-shot iterator behaves as in :class:`DataFromGenerator`: an abandoned pass is
    continued by the next, and a pass after it was used up raises
    :class:`~dataflow.errors.DataFlowError`.

    ``len()`` is ``len(iterable)``, asked at the time of the call, if the iterable has a length;
    otherwise unknown (:class:`~dataflow.errors.LengthUnknownError`).
    """

    def __init__(self, iterable: Iterable) -> None:
        """
        Args:
            iterable: the datapoints.
        """
        who = "DataFromIterable"
        if not hasattr(iterable, "__iter__"):
            raise DataFlowArgumentError(
                f"{who}: iterable must be iterable, got {type(iterable).__name__}"
                + (" (did you mean DataFromGenerator?)" if callable(iterable) else "")
            )
        self._itr = iterable
        self._one_shot = _OneShotSource(iterable, who) if isinstance(iterable, Iterator) else None
        if self._one_shot is not None:
            self.reentrant = False  # type: ignore[misc]  # two passes would share one iterator

    def _df_check(self, node: dict) -> str | None:
        return None if self._one_shot is None else self._one_shot.resume_problem(node)

    def __len__(self) -> int:
        if self._one_shot is None and hasattr(self._itr, "__len__"):
            return len(self._itr)  # type: ignore[arg-type]
        raise LengthUnknownError(
            f"DataFromIterable: a {type(self._itr).__name__} does not know its length"
        )

    def __iter__(self) -> Iterator:
        if self._one_shot is not None:
            self._one_shot.check()
            return self._one_shot.iterate()
        return iter(self._itr)


_NO_SENTINEL: Any = object()


class DataFromQueue(DataFlow):
    """Yield what ``queue.get()`` returns, forever.

    Works with ``queue.Queue``, ``multiprocessing.Queue`` or any object with a blocking ``get()``.
    A pass never ends on its own (so ``len()`` is unknown); it blocks while the queue is empty.
    To end a pass, give a ``sentinel``: when ``get()`` returns an object that *is* the sentinel
    (compared with ``is``, not ``==``; it is not yielded), the pass ends, and the next pass reads
    on from the queue. Every item is yielded once: two iterators share the queue, each getting a
    part of the items.
    """

    def __init__(self, queue: Any, *, sentinel: Any = _NO_SENTINEL) -> None:
        """
        Args:
            queue: an object with a ``get()`` method returning one datapoint.
            sentinel: optional; an object whose arrival ends the pass (not part of tensorpack).
        """
        if not callable(getattr(queue, "get", None)):
            raise DataFlowArgumentError(
                f"DataFromQueue: queue must have a get() method, got {type(queue).__name__}"
            )
        self.queue = queue
        self._sentinel = sentinel

    _df_not_resumable = (
        "it reads a queue, which cannot go back or forward; save the position of what fills the "
        "queue instead"
    )

    def __len__(self) -> int:
        raise LengthUnknownError("DataFromQueue reads its queue forever; it has no length")

    def __iter__(self) -> Iterator:
        get = self.queue.get
        if self._sentinel is _NO_SENTINEL:
            while True:
                yield get()
        sentinel = self._sentinel
        while True:
            dp = get()
            if dp is sentinel:
                return
            yield dp


def _per_component(value: Any, n: int, is_single: Callable[[Any], bool], who: str, arg: str):
    if is_single(value):
        return [value] * n
    if not isinstance(value, (list, tuple)) or len(value) != n:
        raise DataFlowArgumentError(
            f"{who}: {arg} must be one value or a list of {n} values (one per shape), got {value!r}"
        )
    for i, v in enumerate(value):
        if not is_single(v):
            raise DataFlowArgumentError(f"{who}: {arg}[{i}] is not valid: {v!r}")
    return list(value)


def _is_dtype(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return False
    try:
        np.dtype(value)
    except TypeError:
        return False
    return True


def _is_domain(value: Any) -> bool:
    return (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and all(isinstance(v, numbers.Real) for v in value)
    )


class FakeData(RNGDataFlow):
    """Yield ``size`` datapoints of random arrays with the given shapes, dtypes and value ranges.

    A datapoint is a list with one array per entry of ``shapes``: component ``k`` has shape
    ``shapes[k]``, dtype ``dtype[k]`` and values drawn uniformly from ``[low, high)`` of
    ``domain[k]``, then cast (an integer dtype truncates, so ``domain=(0, 10)`` gives ``0..9``).

    With ``random=True`` every datapoint is freshly drawn from ``self.rng`` (this can cost more
    than the pipeline you want to measure). With ``random=False`` one datapoint is drawn at the
    start of each pass and yielded ``size`` times: each time a new list holding the *same* arrays
    (do not modify them in place).

    ``len()`` is ``size``.
    """

    def __init__(
        self,
        shapes: Sequence[Sequence[int]],
        size: int = 1000,
        random: bool = True,
        dtype: Any = "float32",
        domain: Sequence[float] | Sequence[Sequence[float]] = (0, 1),
    ) -> None:
        """
        Args:
            shapes: one shape (a list/tuple of ints) per component.
            size: number of datapoints per pass.
            random: draw every datapoint anew; otherwise repeat one datapoint per pass.
            dtype: a dtype for all components (``"float32"``, ``np.uint8``...) or a list of
                one dtype per component.
            domain: a ``(low, high)`` pair for all components, or a list of one pair per component.
        """
        who = "FakeData"
        if not isinstance(shapes, (list, tuple)) or not shapes:
            raise DataFlowArgumentError(
                f"{who}: shapes must be a non-empty list of shapes, got {shapes!r}"
            )
        checked_shapes = []
        for i, shape in enumerate(shapes):
            if not isinstance(shape, (list, tuple)) or not all(
                isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 0
                for d in shape
            ):
                raise DataFlowArgumentError(
                    f"{who}: shapes[{i}] must be a list/tuple of non-negative ints, got {shape!r}"
                )
            checked_shapes.append(tuple(int(d) for d in shape))
        n = len(checked_shapes)
        self.shapes = checked_shapes
        self._size = _check_count(size, who, "size")
        self.random = _check_flag(random, who, "random")
        self.dtype = [np.dtype(d) for d in _per_component(dtype, n, _is_dtype, who, "dtype")]
        self.domain = [
            (float(lo), float(hi))
            for lo, hi in _per_component(domain, n, _is_domain, who, "domain")
        ]
        for i, (lo, hi) in enumerate(self.domain):
            if not lo <= hi:
                raise DataFlowArgumentError(
                    f"{who}: domain[{i}] = ({lo}, {hi}) must have low <= high"
                )

    def __len__(self) -> int:
        return self._size

    def _draw(self) -> list[np.ndarray]:
        rng = self.rng
        out = []
        for shape, dtype, (lo, hi) in zip(self.shapes, self.dtype, self.domain):
            v = rng.random_sample(shape)
            if hi - lo != 1.0:
                v *= hi - lo
            if lo != 0.0:
                v += lo
            out.append(v.astype(dtype, copy=False))
        return out

    def __iter__(self) -> Iterator[list]:
        start = self.__dict__.pop("_df_start", 0)
        if self.random:
            for i in range(start, self._size):  # noqa: B007  # ``i`` is the saved position
                yield self._draw()
        else:
            dp = self._draw()
            for i in range(start, self._size):  # noqa: B007
                yield list(dp)

    def _df_save(self) -> dict:
        live_ref = self.__dict__.get("_df_live")
        i = _state.gen_local(live_ref() if live_ref is not None else None, "i")
        state: dict[str, Any] = {"pos": i + 1, "len": self._size}
        if self.random:
            state["rng"] = _state.rng_to_plain(self.rng)
        return state

    def _df_load(self, state: dict) -> None:
        self._df_start = int(state["pos"])
        if "rng" in state:
            _state.rng_from_plain(self.rng, state["rng"])

    def _df_check(self, node: dict) -> str | None:
        return _state.check_len(self, node)

"""Buffering stages: state that outlives one datapoint.

LocallyShuffleData shuffles within a rolling buffer, for sources too large or too sequential to
shuffle globally; CacheData keeps the first complete pass in memory and serves later passes from
it.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice
from typing import Any

import numpy as np

from .. import _state
from ..base import DataFlow, ProxyDataFlow, RNGDataFlow
from ..errors import StateError
from ._shared import _END, _check_int, _repeat_forever

__all__ = ["LocallyShuffleData", "CacheData"]


class LocallyShuffleData(ProxyDataFlow, RNGDataFlow):
    """Shuffle within a buffer: for sources too large (or too sequential) to shuffle globally.

    How it works (as tensorpack): datapoints from ``ds`` enter a buffer of ``buffer_size``, each
    ``num_reuse`` times. Once the buffer is full, every new entry pushes out the oldest one, which
    is yielded. The buffer is shuffled after every ``shuffle_interval`` datapoints taken from
    ``ds`` (default ``buffer_size // 3``). Reading starts with a full buffer, so the first
    datapoint comes after ``buffer_size`` entries.

    ``ds`` is repeated internally without end (each repetition is a new pass of ``ds``), and the
    buffer and the position in ``ds`` carry over from one pass of this flow to the next: the mix
    is continuous, as in tensorpack.

    ``len`` and the end of a pass: ``len`` is ``len(ds) * num_reuse``, and a pass ends after
    exactly that many datapoints. (tensorpack reported this ``len`` but never ended a pass: its
    iterator ran forever.) Because the buffer carries over, one pass is *not* a permutation of
    ``ds``: some datapoints may appear in it more often than ``num_reuse`` times and others not at
    all; over many passes each appears ``num_reuse`` times per pass on average. If ``len(ds)`` is
    unknown (or ``ds`` is infinite), ``len`` raises
    :class:`~dataflow.errors.LengthUnknownError` and a pass never ends. If a pass of ``ds`` yields
    nothing, the buffer is drained and the pass ends.

    Pitfalls: ``num_reuse > 1`` yields the same object several times (no copy). The buffer is shared
    state, so the flow is not reentrant. Shuffling uses ``self.rng`` (reproducible under
    :func:`dataflow.set_seed`).
    """

    reentrant = False

    def __init__(
        self,
        ds: DataFlow,
        buffer_size: int,
        num_reuse: int = 1,
        shuffle_interval: int | None = None,
    ) -> None:
        """
        Args:
            ds: the input flow.
            buffer_size: how many datapoints the buffer holds, >= 1.
            num_reuse: how many times each datapoint enters the buffer, >= 1 (duplicates may hurt
                training; they save reading).
            shuffle_interval: shuffle the buffer after this many datapoints from ``ds``; default
                ``max(1, buffer_size // 3)``.
        """
        who = "LocallyShuffleData"
        ProxyDataFlow.__init__(self, ds)
        self.buffer_size = _check_int(buffer_size, who, "buffer_size", 1)
        self.num_reuse = _check_int(num_reuse, who, "num_reuse", 1)
        if shuffle_interval is None:
            shuffle_interval = max(1, self.buffer_size // 3)
        self.shuffle_interval = _check_int(shuffle_interval, who, "shuffle_interval", 1)
        self._clear_buffer()

    def _clear_buffer(self) -> None:
        # The buffer is a ring once full: ``_head`` is the oldest entry. ``_pending`` counts the
        # entries of ``_pending_dp`` still to add (num_reuse), ``_since_shuffle`` the datapoints
        # read since the last shuffle, ``_source`` the endless iterator over ``ds``.
        # For resume: ``_reads`` numbers the datapoints read from ``_source``, ``_ids`` holds the
        # number of each buffer entry (shuffled along with it), ``_pending_id`` that of
        # ``_pending_dp``, and ``_log`` the upstream's state after some numbers of reads.
        self._buffer: list = []
        self._ids: list[int] = []
        self._head = 0
        self._pending = 0
        self._pending_dp: Any = None
        self._pending_id = 0
        self._since_shuffle = 0
        self._source: Iterator | None = None
        self._reads = 0
        self._log: list[tuple[int, dict]] = []

    def reset_state(self) -> None:
        self.ds.reset_state()
        RNGDataFlow.reset_state(self)
        self._clear_buffer()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_source"] = None  # a live generator cannot cross a process boundary
        return state

    def __len__(self) -> int:
        return len(self.ds) * self.num_reuse

    def _open_source(self) -> Iterator:
        self._log = [(self._reads, _state.between_passes(_state.node_of(self.ds)))]
        self._source = _repeat_forever(self.ds)
        return self._source

    def __iter__(self) -> Iterator:
        try:
            target: int | None = len(self)
        except NotImplementedError:
            target = None
        source = self._source if self._source is not None else self._open_source()
        buf = self._buffer
        ids = self._ids
        capacity = self.buffer_size
        reuse = self.num_reuse
        interval = self.shuffle_interval
        rng = self.rng
        twin = np.random.RandomState()  # replays each shuffle on ``ids``
        log = self._log
        ds = self.ds
        every = max(capacity, 64)  # reads between two saved upstream states
        produced = self.__dict__.pop("_df_start", 0)
        source_ended = False
        # The loop works on locals; ``finally`` writes them back when the pass ends, is closed or
        # is collected. No other pass can start before that (the flow is not reentrant), so the
        # attributes are current whenever a pass begins. _df_save reads the live locals.
        head, pending, pending_dp, pending_id, since, reads = (
            self._head,
            self._pending,
            self._pending_dp,
            self._pending_id,
            self._since_shuffle,
            self._reads,
        )
        next_log = log[-1][0] + every if log else reads + every
        try:
            while target is None or produced < target:
                if pending == 0:
                    pending_dp = next(source, _END)
                    if pending_dp is _END:
                        pending_dp = None
                        source_ended = True
                        break
                    pending = reuse
                    reads += 1
                    pending_id = reads
                    if reads >= next_log:
                        log.append((reads, _state.node_of(ds)))
                        _forget_before(log, min(ids, default=reads))
                        next_log = reads + every
                    since += 1
                    if since >= interval:
                        since = 0
                        twin.set_state(rng.get_state())
                        rng.shuffle(buf)
                        twin.shuffle(ids)
                pending -= 1
                if len(buf) < capacity:
                    buf.append(pending_dp)
                    ids.append(pending_id)
                    continue
                out = buf[head]
                buf[head] = pending_dp
                ids[head] = pending_id
                head += 1
                if head == capacity:
                    head = 0
                produced += 1
                yield out
            if not source_ended:
                return
            # A pass of ds yielded nothing, so the source ended: drain the buffer, oldest first,
            # and try ds again on the next pass.
            self._source = None
            while buf and (target is None or produced < target):
                if head >= len(buf):
                    head = 0
                out = buf.pop(head)
                ids.pop(head)
                produced += 1
                yield out
            if not buf:
                head = 0
        finally:
            self._head, self._pending, self._pending_dp, self._pending_id = (
                head,
                pending,
                pending_dp if pending else None,
                pending_id,
            )
            self._since_shuffle, self._reads = since, reads

    # Resume: the buffer is not saved (it can hold thousands of images); the state holds the
    # read number of every entry and the upstream's state at a point before the oldest of them,
    # and a resumed pipeline reads the upstream again from there to refill the buffer: the cost
    # is about as many reads as the oldest entry is old (a few times buffer_size), no map work
    # above this flow. The RNG goes on from where it stood.
    def _df_carries_over(self) -> bool:
        return True

    def _df_save(self) -> dict:
        live_ref = self.__dict__.get("_df_live")
        live = live_ref() if live_ref is not None else None
        now = _state.gen_local(live, "reads") is not None
        if now and _state.gen_local(live, "source_ended"):
            raise StateError(
                "LocallyShuffleData cannot save its position while it drains its buffer after "
                "an empty pass of its upstream"
            )

        def pick(name: str, attr: str) -> Any:
            return _state.gen_local(live, name) if now else getattr(self, attr)

        reads, pending = pick("reads", "_reads"), pick("pending", "_pending")
        pending_id = pick("pending_id", "_pending_id")
        oldest = min(self._ids, default=reads + 1)
        if pending:
            oldest = min(oldest, pending_id)
        log = list(self._log)
        _forget_before(log, oldest)
        state: dict[str, Any] = {
            "ids": list(self._ids),
            "head": pick("head", "_head"),
            "pending": pending,
            "pending_id": pending_id,
            "since": pick("since", "_since_shuffle"),
            "reads": reads,
            "source": self._source is not None,
            "log": list(log[0]) if log else None,
        }
        if now:
            state["pass"] = {
                "produced": _state.gen_local(live, "produced"),
                "rng": _state.rng_to_plain(self.rng),
            }
        return state

    def _df_load(self, state: dict) -> None:
        self._clear_buffer()
        ids, reads = [int(i) for i in state["ids"]], int(state["reads"])
        pending, pending_id = int(state["pending"]), int(state["pending_id"])
        if state["source"] and state["log"] is not None:
            start, node = state["log"]
            _state.assign(self.ds, node)
            source = _repeat_forever(self.ds, resumed=True)
            wanted = set(ids)
            if pending:
                wanted.add(pending_id)
            found: dict[int, Any] = {}
            for number in range(int(start) + 1, reads + 1):
                dp = next(source, _END)
                if dp is _END:
                    raise StateError(
                        f"LocallyShuffleData: its upstream {type(self.ds).__name__} ended after "
                        f"{number - 1 - int(start)} datapoints while refilling the buffer; the "
                        "state is of another upstream"
                    )
                if number in wanted:
                    found[number] = dp
            self._buffer = [found[i] for i in ids]
            self._pending_dp = found[pending_id] if pending else None
            self._source = source
            self._log = [(int(start), node)]
        self._ids = ids
        self._head, self._pending, self._pending_id = int(state["head"]), pending, pending_id
        self._since_shuffle, self._reads = int(state["since"]), reads
        if "pass" in state:  # mid-pass: the shuffles go on from there (a new pass: new stream)
            _state.rng_from_plain(self.rng, state["pass"]["rng"])
            self._df_start = int(state["pass"]["produced"])


def _forget_before(log: list[tuple[int, dict]], oldest: int) -> None:
    """Drop the saved upstream states that are not needed to read datapoint ``oldest`` again."""
    keep = 0
    for i, (reads, _) in enumerate(log):
        if reads < oldest:
            keep = i
    del log[:keep]


class CacheData(ProxyDataFlow, RNGDataFlow):
    """Keep the first complete pass of ``ds`` in memory and serve later passes from it.

    The first pass reads ``ds`` and yields its datapoints as they come, recording them. Only when
    that pass reaches its end does the record become the cache; a first pass that is abandoned
    (closed, garbage collected, interrupted by an error) is discarded and the next pass reads
    ``ds`` again from its start (tensorpack served the partial record as if it were complete).
    Later passes yield the cached datapoints, in a fresh random order each pass if ``shuffle``
    (the first pass is always in ``ds``'s order).

    ``len`` is ``len(ds)`` until the cache is complete, then the number of cached datapoints.
    ``ds`` must be finite. The cache holds references to the datapoints: a consumer that changes
    one in place changes the cache. Each pass keeps its own record and order, so two iterators at
    once are fine. ``close()`` drops the cache. Shuffling uses ``self.rng``.
    """

    def __init__(self, ds: DataFlow, shuffle: bool = False) -> None:
        """
        Args:
            ds: a finite input flow.
            shuffle: yield the cache in a new random order every pass after the first.
        """
        ProxyDataFlow.__init__(self, ds)
        self.shuffle = bool(shuffle)
        self._cache: list | None = None

    def reset_state(self) -> None:
        self.ds.reset_state()
        RNGDataFlow.reset_state(self)

    def __len__(self) -> int:
        cache = self._cache
        return len(cache) if cache is not None else len(self.ds)

    @property
    def buffer(self) -> list:
        """The cached datapoints (empty until the first pass has completed)."""
        return self._cache if self._cache is not None else []

    def __iter__(self) -> Iterator:
        start = self.__dict__.pop("_df_start", 0)
        cache = self._cache
        if cache is not None:
            if self.shuffle:
                cache = cache[:]  # shuffle a private copy: concurrent passes stay independent
                self.rng.shuffle(cache)
            cursor = iter(cache)
            if start:
                cursor.__setstate__(start)  # type: ignore[attr-defined]
            self._df_cursor = (cursor, len(cache))
            yield from cursor
            return
        self._df_cursor = None  # type: ignore[assignment]
        # Where the upstream's pass begins: a resumed pipeline reads the cache again from there.
        self._df_first = _state.between_passes(_state.node_of(self.ds))
        record: list = []
        append = record.append
        it = iter(self.ds)
        if start:  # resumed in the recording pass: read again what was recorded
            record.extend(islice(it, start))
        for dp in it:
            append(dp)
            yield dp
        self._cache = record

    # Resume: the state holds where the recorded pass of ``ds`` began, not the datapoints; a
    # resumed pipeline reads that pass of ``ds`` again to rebuild the cache (or the part recorded).
    def _df_carries_over(self) -> bool:
        return self._cache is not None

    def _df_save(self) -> dict | None:
        first = self.__dict__.get("_df_first")
        if first is None:
            return None
        state: dict[str, Any] = {"cached": self._cache is not None, "first": first}
        if self._df_in_pass():
            cursor = self.__dict__.get("_df_cursor")
            if cursor is not None:
                state["pass"] = {"pos": cursor[1] - _state.remaining(cursor[0])}
            else:
                live_ref = self.__dict__.get("_df_live")
                record = _state.gen_local(live_ref() if live_ref is not None else None, "record")
                state["pass"] = {"pos": len(record or ())}
        return state

    def _df_load(self, state: dict) -> None:
        self._df_first = state["first"]
        _state.assign(self.ds, state["first"])
        if state["cached"]:
            self._cache = list(self.ds)
        self._df_start = int(state.get("pass", {}).get("pos", 0))

    def close(self) -> None:
        self._cache = None
        super().close()

"""Buffering stages: state that outlives one datapoint.

LocallyShuffleData shuffles within a rolling buffer, for sources too large or too sequential to
shuffle globally; CacheData keeps the first complete pass in memory and serves later passes from
it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..base import DataFlow, ProxyDataFlow, RNGDataFlow
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
        self._buffer: list = []
        self._head = 0
        self._pending = 0
        self._pending_dp: Any = None
        self._since_shuffle = 0
        self._source: Iterator | None = None

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

    def __iter__(self) -> Iterator:
        try:
            target: int | None = len(self)
        except NotImplementedError:
            target = None
        if self._source is None:
            self._source = _repeat_forever(self.ds)
        source = self._source
        buf = self._buffer
        capacity = self.buffer_size
        reuse = self.num_reuse
        interval = self.shuffle_interval
        rng = self.rng
        produced = 0
        source_ended = False
        # The loop works on locals; ``finally`` writes them back when the pass ends, is closed or
        # is collected. No other pass can start before that (the flow is not reentrant), so the
        # attributes are current whenever a pass begins.
        head, pending, pending_dp, since = (
            self._head,
            self._pending,
            self._pending_dp,
            self._since_shuffle,
        )
        try:
            while target is None or produced < target:
                if pending == 0:
                    pending_dp = next(source, _END)
                    if pending_dp is _END:
                        pending_dp = None
                        source_ended = True
                        break
                    pending = reuse
                    since += 1
                    if since >= interval:
                        since = 0
                        rng.shuffle(buf)
                pending -= 1
                if len(buf) < capacity:
                    buf.append(pending_dp)
                    continue
                out = buf[head]
                buf[head] = pending_dp
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
                produced += 1
                yield out
            if not buf:
                head = 0
        finally:
            self._head, self._pending, self._pending_dp, self._since_shuffle = (
                head,
                pending,
                pending_dp if pending else None,
                since,
            )


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
        cache = self._cache
        if cache is not None:
            if self.shuffle:
                cache = cache[:]  # shuffle a private copy: concurrent passes stay independent
                self.rng.shuffle(cache)
            yield from cache
            return
        record: list = []
        append = record.append
        for dp in self.ds:
            append(dp)
            yield dp
        self._cache = record

    def close(self) -> None:
        self._cache = None
        super().close()

"""Resume of a parallel map (``dataflow.parallel_map``): the bookkeeping behind its state.

Indices number the upstream's reads (from the start of a strict pass, or of the whole stream of a
non-strict map). The state holds the read number of the first datapoint not delivered (the
frontier), the ones after it already delivered (unordered), and the upstream's state at a read
number at or before the frontier, kept about every ``_LOG_EVERY`` reads. A resumed pass puts the
upstream there, reads up to the frontier without mapping, and sends the rest that is not
delivered: what was in flight at save time is sent again. Nothing depends on the number of
workers, so a state saved with 2 workers resumes with 3 or 1.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import _state
from ..errors import StateError

__all__ = ["MapResume"]

# The upstream's state is kept after about every this many reads, so a resumed pass reads
# (without mapping) at most this many datapoints before the first it sends.
_LOG_EVERY = 64


class MapResume:
    """The resume half of ``_ParallelMap`` (a mixin: the map's consumer state is its own)."""

    ds: Any
    _who: str
    _strict: bool
    _ordered: bool
    _batch_size: int
    _fused: bool
    _it: Any
    _it_yielded: int
    _reads: int
    _log: list[tuple[int, dict]]
    _next_log: int
    _pass_start: int
    _next_idx: int
    _next_out: int
    _frontier: int
    _delivered: set[int]
    _skip: set[int]
    _stream_over: bool
    _cur_len: int
    _cur_groups: list[Any]
    _carry_groups: list[Any]
    _leftovers: list[Any]
    _left_groups: list[Any]
    _left_next: int
    _pass_yielded: int
    _df_start: Any
    # The map's own methods (annotations only: the mixin comes first in the map's MRO).
    _pull: Callable[[int], list[Any]]
    _df_in_pass: Callable[[], bool]

    def _begin_upstream_pass(self, resume: dict | None) -> None:
        if resume is None:
            self._log = [(0, _state.between_passes(_state.node_of(self.ds)))]
            self._it = iter(self.ds)
            self._it_yielded = self._reads = 0
        else:
            start, node = resume["log"]
            _state.assign(self.ds, node)
            self._log = [(int(start), node)]
            self._it = iter(self.ds)
            frontier = int(resume["frontier"])
            got = _state.consume(self._it, frontier - int(start))
            if got != frontier - int(start):
                raise StateError(
                    f"{self._who}: the upstream {type(self.ds).__name__} ended after "
                    f"{int(start) + got} datapoints, before the saved position {frontier}"
                )
            self._it_yielded = self._reads = frontier
            self._next_idx = self._next_out = self._pass_start + frontier
            self._frontier = self._next_idx
            self._skip = {int(r) for r in resume["done"]}
        self._next_log = self._reads + _LOG_EVERY

    def _resume_stream(self, resume: dict) -> None:
        """Non-strict: put the stream back at the saved frontier (see _begin_upstream_pass)."""
        start, node = int(resume["log"][0]), resume["log"][1]
        _state.assign(self.ds, node)
        self._log = [(start, node)]
        self._it = iter(self.ds) if node["in_pass"] else None
        self._it_yielded = 1  # a resumed upstream pass with nothing left is not an empty pass
        self._reads = start
        self._next_log = start + _LOG_EVERY
        frontier = int(resume["frontier"])
        got = len(self._pull(frontier - start))
        if got != frontier - start:
            raise StateError(
                f"{self._who}: the upstream {type(self.ds).__name__} ended after {start + got} "
                f"datapoints, before the saved position {frontier}"
            )
        self._next_idx = self._next_out = self._frontier = frontier
        self._skip = {int(r) for r in resume["done"]}
        self._stream_over = bool(resume.get("over", False))

    def _log_upstream(self, between: bool) -> None:
        """Keep the upstream's state after ``_reads`` reads (``between``: its pass had ended)."""
        node = _state.node_of(self.ds)
        self._log.append((self._reads, _state.between_passes(node) if between else node))
        self._next_log = self._reads + _LOG_EVERY
        self._forget_delivered()

    def _advance_frontier(self) -> None:
        f, done = self._frontier, self._delivered
        while f in done:
            done.discard(f)
            f += 1
        self._frontier = f

    def _undelivered(self) -> tuple[int, list[int]]:
        """(the frontier, the indices at or after it delivered), as the consumer has them now."""
        taken = self._cur_len - self._left_to_yield()
        back: list[int] = []
        for group in [*self._cur_groups[taken:], *self._carry_groups]:
            back.extend(group if isinstance(group, list) else [group])
        if self._ordered:  # in order: all before the first one not yielded is delivered
            return (min(back) if back else self._next_out), []
        if self.__dict__.get("_in_leftovers"):
            back.extend(self._left_groups[self._left_next :])
        elif self._leftovers:
            back.extend(self._left_groups)
        pending = set(back)
        frontier = min([self._frontier, *pending])
        done = [i for i in range(frontier, self._frontier) if i not in pending]
        done += sorted(i for i in self._delivered if i not in pending)
        return frontier, done

    def _left_to_yield(self) -> int:
        """How many outputs of the message being yielded the consumer has not taken yet."""
        if not self._df_in_pass():
            return 0
        live_ref = self.__dict__.get("_df_live")
        it = live_ref() if live_ref is not None else None
        while getattr(it, "gi_yieldfrom", None) is not None:
            it = it.gi_yieldfrom  # type: ignore[union-attr]
        return _state.remaining(it) if type(it).__name__ == "list_iterator" else 0

    def _forget_delivered(self) -> None:
        """Drop the upstream states older than needed to go back to the frontier."""
        oldest = self._next_out if self._ordered else self._frontier
        for group in [*self._cur_groups, *self._carry_groups]:
            oldest = min(oldest, min(group) if isinstance(group, list) else group)
        reads = oldest - self._pass_start
        log = self._log
        keep = 0
        for i, (r, _) in enumerate(log):
            if r <= reads:
                keep = i
        del log[:keep]

    def _df_carries_over(self) -> bool:
        return not self._strict  # a non-strict stream goes on from one pass to the next

    def _df_save(self) -> dict | None:
        if not self._log:
            return None  # nothing read yet: the upstream's own state says it all
        frontier, done = self._undelivered()
        reads = frontier - self._pass_start
        start, node = self._log[0]
        for r, n in self._log:
            if r <= reads:
                start, node = r, n
        state: dict[str, Any] = {
            "mode": self._mode(),
            "frontier": reads,
            "done": [i - self._pass_start for i in done],
            "log": [start, node],
        }
        if not self._strict:
            state["over"] = self._stream_over
            if self._df_in_pass():
                yielded = self._pass_yielded - self._left_to_yield()
                if self._fused:  # in datapoints, as BatchData over an unbatched map counts
                    yielded *= self._batch_size
                state["pass"] = {"yielded": yielded}
        return state

    def _df_load(self, state: dict) -> None:
        self._df_start = state

    def _mode(self) -> list:
        # Batching for the BatchData on top is the map's business: the state is the same as
        # the unbatched map's under that BatchData, and either resumes the other.
        return [self._strict, self._ordered, 0 if self._fused else self._batch_size]

    def _df_check(self, node: dict) -> str | None:
        saved = (node.get("state") or {}).get("mode")
        if saved is not None and saved != self._mode():
            names = "[strict, ordered, batch_size]"
            return (
                f"the state was saved by a map with {names} = {saved}, this one has {self._mode()}"
            )
        return None

"""The concatenation law of resume, as one check every state test uses (``import resume_check``).

For a pipeline factory ``build()`` (called after ``set_seed(seed)``), a number of passes and a k:

    first k datapoints of the original run
    + everything a rebuilt pipeline yields after load_state_dict(state at k), over the passes left
    == the uninterrupted run, datapoint for datapoint

The state goes through ``json.dumps``/``json.loads`` on the way. Datapoints are compared by
:func:`canon` (arrays by dtype, shape and bytes).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

import dataflow
from dataflow.base import DataFlow

Build = Callable[[], DataFlow]


def canon(dp: Any) -> Any:
    """A hashable, comparable form of a datapoint."""
    if isinstance(dp, np.ndarray):
        return ("array", dp.dtype.str, dp.shape, dp.tobytes())
    if isinstance(dp, np.generic):
        return ("scalar", dp.dtype.str, dp.item())
    if isinstance(dp, dict):
        return ("dict", tuple((k, canon(v)) for k, v in dp.items()))
    if isinstance(dp, (list, tuple)):
        return (type(dp).__name__, tuple(canon(v) for v in dp))
    return dp


def run_passes(ds: DataFlow, passes: int) -> list[list[Any]]:
    """Every datapoint of ``passes`` passes, canonical, one list a pass."""
    return [[canon(dp) for dp in ds] for _ in range(passes)]


def take(ds: DataFlow, k: int, lengths: list[int]) -> tuple[list[Any], dict, int, Any]:
    """The first ``k`` datapoints over passes of ``ds`` and the state after them.

    Returns (datapoints, state, passes fully done, the live iterator kept open).
    """
    got: list[Any] = []
    done = 0
    it = iter(ds)
    while len(got) < k:
        try:
            got.append(canon(next(it)))
        except StopIteration:
            done += 1
            it = iter(ds)
    if lengths and done < len(lengths) and len(got) - sum(lengths[:done]) == lengths[done]:
        done += 1  # the pass's last datapoint is out: the iterator has not said StopIteration yet
    return got, ds.state_dict(), done, it


def save_after(ds: DataFlow, k: int) -> tuple[list[Any], dict]:
    """The first ``k`` datapoints of a new pass of ``ds`` (canonical) and the state after them,
    through a JSON round-trip; ``ds`` is closed."""
    it = iter(ds)
    first = [canon(next(it)) for _ in range(k)]
    state = json.loads(json.dumps(ds.state_dict()))
    del it
    ds.close()
    return first, state


def resumed_rest(build: Build, state: dict, passes_left: int, seed: int | None) -> list[Any]:
    dataflow.set_seed(None if seed is None else seed + 1000)  # the state must decide, not the seed
    ds = build()
    ds.load_state_dict(json.loads(json.dumps(state)))
    out: list[Any] = []
    for _ in range(passes_left):
        out.extend(canon(dp) for dp in ds)
    ds.close()
    return out


def ks_for(lengths: list[int]) -> list[int]:
    """k in {0, 1, middle, len-1, len, len+1} for a pass of length ``lengths[0]``."""
    n = lengths[0]
    return sorted({0, 1, n // 2, max(n - 1, 0), n, n + 1} & set(range(sum(lengths) + 1)))


def uninterrupted(build: Build, passes: int, seed: int | None) -> list[list[Any]]:
    dataflow.set_seed(seed)
    ds = build()
    run = run_passes(ds, passes)
    ds.close()
    return run


def check_resume(
    build: Build,
    ks: Iterable[int] | None = None,
    passes: int = 3,
    seed: int | None = 7,
    reload: Callable[[dict], dict] | None = None,
) -> None:
    """Assert the concatenation law for every k (``ks_for`` of the first pass by default)."""
    full = uninterrupted(build, passes, seed)
    lengths = [len(p) for p in full]
    flat = [dp for p in full for dp in p]
    for k in ks_for(lengths) if ks is None else ks:
        dataflow.set_seed(seed)
        ds = build()
        first, state, done, it = take(ds, k, lengths)
        del it
        ds.close()
        if reload is not None:
            state = reload(state)
        rest = resumed_rest(build, state, passes - done, seed)
        got = first + rest
        assert len(got) == len(flat), f"k={k}: {len(first)} + {len(rest)} != {len(flat)} datapoints"
        for i, (a, b) in enumerate(zip(got, flat)):
            assert a == b, f"k={k}: datapoint {i} differs after resume: {a!r:.120} != {b!r:.120}"


def check_resume_exactly_once(
    build: Build, ks: Iterable[int], passes: int = 2, seed: int | None = 7
) -> None:
    """For unordered flows: each pass is the same multiset as the uninterrupted one."""
    full = uninterrupted(build, passes, seed)
    lengths = [len(p) for p in full]
    for k in ks:
        dataflow.set_seed(seed)
        ds = build()
        first, state, done, it = take(ds, k, lengths)
        del it
        ds.close()
        rest = resumed_rest(build, state, passes - done, seed)
        got = first + rest
        start = 0
        for p, expected in enumerate(full):
            part = got[start : start + len(expected)]
            start += len(expected)
            assert Counter(part) == Counter(expected), f"k={k}: pass {p} is not the same multiset"
        assert start == len(got), f"k={k}: {len(got) - start} datapoints too many"

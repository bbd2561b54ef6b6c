"""Small sources shared by the tests of dataflow.common (tests/test_common_*.py).

Defined here, so those tests depend on nothing but dataflow.base.
"""

from __future__ import annotations

from dataflow.base import DataFlow


class Src(DataFlow):
    """Yields the given datapoints in order; counts the passes begun and datapoints read."""

    def __init__(self, items):
        self.items = list(items)
        self.passes = 0
        self.read = 0

    def __len__(self):
        return len(self.items)

    def __iter__(self):
        self.passes += 1
        for dp in self.items:
            self.read += 1
            yield dp


class NoLen(Src):
    """Finite, but does not know its len."""

    def __len__(self):
        raise NotImplementedError


class Infinite(DataFlow):
    """[0], [1], [2], ... without end."""

    def __iter__(self):
        i = 0
        while True:
            yield [i]
            i += 1


class OneShot(Src):
    reentrant = False


def ints(n, start=0):
    return Src([[i] for i in range(start, start + n)])


def firsts(dps):
    return [dp[0] for dp in dps]

"""to_jax: datapoints as jax.Arrays, placed by a thread ahead of the consumer (CPU)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

jax = pytest.importorskip("jax")

from dataflow import DataFlow, DataFromList, to_jax  # noqa: E402
from dataflow.errors import DataFlowArgumentError  # noqa: E402
from dataflow.integrations import jax as jax_adapter  # noqa: E402
from flows import RaisingSource  # noqa: E402

pytestmark = pytest.mark.timeout(60)


def test_arrays_arrive_as_jax_arrays_with_their_dtypes_and_shapes():
    items = [
        {"image": np.full((2, 3), i, dtype=np.uint8), "label": np.int32(i), "name": f"n{i}"}
        for i in range(3)
    ]
    got = list(to_jax(DataFromList(items, shuffle=False)))
    assert [dp["name"] for dp in got] == ["n0", "n1", "n2"]
    image = got[2]["image"]
    assert isinstance(image, jax.Array) and image.dtype == np.uint8 and image.shape == (2, 3)
    assert int(image[1, 2]) == 2
    lists = list(to_jax(DataFromList([[np.ones(4, np.float32), np.zeros((1, 2), np.int16)]])))
    assert [(type(a), a.dtype, a.shape) for a in lists[0]] == [
        (type(lists[0][0]), np.float32, (4,)),
        (type(lists[0][0]), np.int16, (1, 2)),
    ] and isinstance(lists[0][1], jax.Array)


def test_64_bit_arrays_become_32_bit_with_one_warning(monkeypatch):
    monkeypatch.setattr(jax_adapter, "_narrow_warned", False)
    ds = DataFromList([[np.arange(3, dtype=np.int64), np.ones(2)] for _ in range(3)], shuffle=False)
    with pytest.warns(RuntimeWarning, match="float64, int64 arrays become 32-bit") as record:
        got = list(to_jax(ds))
    assert len([w for w in record if "32-bit" in str(w.message)]) == 1
    assert got[0][0].dtype == np.int32 and got[0][1].dtype == np.float32


class Watched(DataFlow):
    """Counts the datapoints read, and lets the test wait until the reader has read ``n``."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.read = 0
        self.changed = threading.Condition()

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        for i in range(self.n):
            with self.changed:
                self.read += 1
                self.changed.notify_all()
            yield [np.full(2, i, dtype=np.float32)]

    def wait_for(self, count: int) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: self.read >= count, timeout=10), self.read


@pytest.mark.parametrize("depth", [1, 3])
def test_prefetch_depth_is_honoured(depth):
    src = Watched(20)
    it = to_jax(src, prefetch=depth)
    assert float(next(it)[0][0]) == 0.0
    # one handed out, ``depth`` ready in the queue, one read and waiting for a free slot
    src.wait_for(depth + 2)
    with src.changed:  # the reader stays blocked: nothing more is read while we do not consume
        assert not src.changed.wait_for(lambda: src.read > depth + 2, timeout=0.3)
    assert [float(dp[0][0]) for dp in it] == [float(i) for i in range(1, 20)]


def test_a_sharding_places_the_arrays():
    device = jax.devices("cpu")[0]
    sharding = jax.sharding.SingleDeviceSharding(device)
    (dp,) = list(to_jax(DataFromList([[np.ones(3, np.float32)]]), sharding=sharding))
    assert dp[0].sharding == sharding and dp[0].devices() == {device}


def test_a_flow_error_is_raised_in_the_consumer():
    with pytest.raises(ValueError, match="broken source"):
        list(to_jax(RaisingSource([[np.ones(1)]])))


def test_bad_prefetch_is_named():
    with pytest.raises(DataFlowArgumentError, match="prefetch"):
        to_jax(DataFromList([[1]]), prefetch=0)

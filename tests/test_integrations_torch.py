"""to_torch: a flow as a torch IterableDataset, under a real torch DataLoader (CPU)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")  # the dev extra installs the CPU wheel: see pyproject
from torch.utils.data import DataLoader  # noqa: E402

import dataflow  # noqa: E402
from dataflow import (  # noqa: E402
    BatchData,
    DataFromList,
    MapData,
    MultiProcessMapData,
    to_torch,
)
from dataflow.errors import DataFlowArgumentError, StateError  # noqa: E402
from dataflow.integrations import torch as torch_adapter  # noqa: E402
from flows import Count, RaisingSource, double  # noqa: E402

pytestmark = pytest.mark.timeout(60)


def arrays(n, size=4):
    return [[np.full(size, i, dtype=np.float32), i] for i in range(n)]


def test_tensors_share_memory_with_the_flows_arrays():
    items = arrays(3)
    loader = DataLoader(to_torch(DataFromList(items, shuffle=False)), batch_size=None)
    got = list(loader)
    assert [int(dp[1]) for dp in got] == [0, 1, 2]
    tensor = got[1][0]
    assert isinstance(tensor, torch.Tensor) and tensor.dtype == torch.float32
    tensor[0] = 42.0  # write through the tensor ...
    assert items[1][0][0] == 42.0  # ... and the flow's array sees it
    items[2][0][3] = -1.0  # and the other way round
    assert got[2][0][3].item() == -1.0


def test_dict_datapoints_stay_dicts_and_non_numeric_values_pass():
    items = [
        {"x": np.arange(3) + i, "name": f"n{i}", "tags": np.array(["a", "b"])} for i in range(2)
    ]
    got = list(DataLoader(to_torch(DataFromList(items, shuffle=False)), batch_size=None))
    assert [sorted(dp) for dp in got] == [["name", "tags", "x"]] * 2
    assert torch.equal(got[1]["x"], torch.tensor([1, 2, 3]))
    assert got[0]["name"] == "n0"
    assert list(got[0]["tags"]) == ["a", "b"]


def test_batches_of_a_pipeline_arrive_in_order_with_len():
    ds = BatchData(
        MapData(Count(10), lambda dp: [np.float64(dp[0]) * np.ones(2)]), 4, remainder=True
    )
    adapter = to_torch(ds)
    assert len(adapter) == 3
    got = [b[0] for b in DataLoader(adapter, batch_size=None)]
    assert [b.shape for b in got] == [(4, 2), (4, 2), (2, 2)]
    assert torch.cat(got)[:, 0].tolist() == [float(i) for i in range(10)]


def test_device_cpu_prefetches_in_a_thread_and_keeps_order():
    ds = DataFromList(arrays(20), shuffle=False)
    got = list(DataLoader(to_torch(ds, device="cpu", prefetch=3), batch_size=None))
    assert [int(dp[1]) for dp in got] == list(range(20))
    assert all(dp[0].device.type == "cpu" for dp in got)


def test_pin_memory_without_cuda_warns_once_and_goes_on(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch_adapter, "_pin_warned", False)
    with pytest.warns(RuntimeWarning, match="pin_memory=True needs a CUDA device"):
        first = list(to_torch(DataFromList(arrays(2), shuffle=False), pin_memory=True))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        second = list(to_torch(DataFromList(arrays(2), shuffle=False), pin_memory=True))
    assert len(first) == len(second) == 2


def test_a_flow_error_reaches_the_loop_with_its_traceback():
    loader = DataLoader(to_torch(RaisingSource([[1], [2]])), batch_size=None)
    with pytest.raises(ValueError, match="broken source") as info:
        list(loader)
    frames = [entry.name for entry in info.traceback]
    assert "__iter__" in frames, frames  # the source's own frame is in the traceback


def test_a_flow_error_with_device_prefetch_is_reraised_with_its_traceback():
    loader = DataLoader(to_torch(RaisingSource([[1]]), device="cpu"), batch_size=None)
    with pytest.raises(ValueError, match="broken source") as info:
        list(loader)
    assert "__iter__" in [entry.name for entry in info.traceback]


def test_num_workers_gives_each_torch_worker_its_own_share():
    adapter = to_torch(DataFromList([[i] for i in range(11)], shuffle=False))
    got = [int(dp[0]) for dp in DataLoader(adapter, batch_size=None, num_workers=2)]
    assert sorted(got) == list(range(11))  # once each, no duplicates


@pytest.mark.usefixtures("no_leaks")
def test_closing_the_adapter_closes_the_flow_and_its_workers():
    ds = MultiProcessMapData(DataFromList(arrays(50), shuffle=False), 2, double, strict=True)
    with to_torch(ds) as adapter:
        it = iter(DataLoader(adapter, batch_size=None))
        assert next(it)[0].tolist() == [0.0] * 4
        del it
    assert ds.closed


@pytest.mark.usefixtures("no_leaks")
def test_abandoning_a_device_prefetch_stops_its_thread():
    ds = DataFromList(arrays(100), shuffle=False)
    it = iter(DataLoader(to_torch(ds, device="cpu", prefetch=2), batch_size=None))
    assert int(next(it)[1]) == 0
    del it  # the generator's close joins the thread: no_leaks sees no thread left


def test_bad_arguments_are_named():
    with pytest.raises(DataFlowArgumentError, match="prefetch"):
        to_torch(Count(3), prefetch=0)
    with pytest.raises(DataFlowArgumentError, match="to_torch"):
        to_torch([1, 2, 3])


def test_state_dict_is_the_flows_and_refused_while_prefetching_ahead():
    ds = DataFromList(arrays(10), shuffle=False)
    adapter = to_torch(ds)
    it = iter(adapter)
    next(it), next(it)
    assert adapter.state_dict() == ds.state_dict()
    fresh = DataFromList(arrays(10), shuffle=False)
    to_torch(fresh).load_state_dict(adapter.state_dict())
    assert [dp[1] for dp in fresh] == list(range(2, 10))
    ahead = to_torch(DataFromList(arrays(10), shuffle=False), device="cpu")
    it = iter(ahead)
    next(it)
    with pytest.raises(StateError, match="prefetching"):
        ahead.state_dict()
    it.close()


def _shuffled_mapped_batches(num_proc):
    """A shuffling source -> MultiProcessMapData(strict, ordered) -> BatchData: 13 batches a pass."""
    dataflow.set_seed(7)
    ds = DataFromList([[np.full(3, i, dtype=np.int64), i] for i in range(50)], shuffle=True)
    ds = MultiProcessMapData(ds, num_proc, double_first, strict=True, ordered=True)
    return BatchData(ds, 4, remainder=True)


def double_first(dp):
    return [dp[0] * 2, dp[1]]


def _labels(loader, k=None):
    out = []
    for batch in loader:
        assert torch.equal(batch[0], 2 * batch[1][:, None].expand(-1, 3))
        out.append(batch[1].tolist())
        if k is not None and len(out) == k:
            break
    return out


@pytest.mark.parametrize("k", [0, 5, 13])  # 13: after the last batch of the pass
def test_stateful_dataloader_resumes_exactly_with_another_worker_count(k):
    stateful = pytest.importorskip("torchdata.stateful_dataloader")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torchdata's own deprecation notes
        with _shuffled_mapped_batches(2) as ds:
            whole = stateful.StatefulDataLoader(to_torch(ds), batch_size=None)
            want = _labels(whole) + _labels(whole) + _labels(whole)
        with _shuffled_mapped_batches(2) as ds:
            first = stateful.StatefulDataLoader(to_torch(ds), batch_size=None)
            got = _labels(first, k) if k else []
            state = json.loads(json.dumps(first.state_dict()))  # plain data
        with _shuffled_mapped_batches(3) as ds:
            resumed = stateful.StatefulDataLoader(to_torch(ds), batch_size=None)
            resumed.load_state_dict(state)
            rest = _labels(resumed)
            assert len(rest) == 13 - k if k < 13 else 13  # the end state resumes a whole pass
            got += rest + _labels(resumed)
    assert got == want[: len(got)] and len(got) == 26 + (13 if k == 13 else 0)


def test_stateful_dataloader_second_resume_in_the_same_pass_stays_exact():
    stateful = pytest.importorskip("torchdata.stateful_dataloader")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with _shuffled_mapped_batches(2) as ds:
            want = _labels(stateful.StatefulDataLoader(to_torch(ds), batch_size=None))
        got = []
        state = None
        for num_proc, k in [(2, 3), (1, 4), (3, None)]:
            with _shuffled_mapped_batches(num_proc) as ds:
                loader = stateful.StatefulDataLoader(to_torch(ds), batch_size=None)
                if state is not None:
                    loader.load_state_dict(state)
                got += _labels(loader, k)
                state = json.loads(json.dumps(loader.state_dict()))
    assert got == want

"""Every public name of tensorpack's DataFlow is importable from `dataflow` and from its tensorpack module.

The name lists are tensorpack 0.11's ``__all__`` of each module (facts about its API, checked by hand).
"""

from __future__ import annotations

import importlib
import inspect

import pytest

import dataflow

TENSORPACK_MODULES = {
    "base": ["DataFlow", "ProxyDataFlow", "RNGDataFlow", "DataFlowTerminated"],
    "raw": ["FakeData", "DataFromQueue", "DataFromList", "DataFromGenerator", "DataFromIterable"],
    "parallel": [
        "PrefetchData",
        "MultiProcessPrefetchData",
        "MultiProcessRunner",
        "MultiProcessRunnerZMQ",
        "MultiThreadRunner",
        "PrefetchDataZMQ",
        "MultiThreadPrefetchData",
    ],
    "parallel_map": [
        "MultiThreadMapData",
        "MultiProcessMapData",
        "MultiProcessMapDataZMQ",
        "MultiProcessMapAndBatchData",
        "MultiProcessMapAndBatchDataZMQ",
    ],
    "format": ["HDF5Data", "LMDBData", "LMDBDataDecoder", "CaffeLMDB", "SVMLightData"],
    "serialize": ["LMDBSerializer", "NumpySerializer", "TFRecordSerializer", "HDF5Serializer"],
    "remote": ["send_dataflow_zmq", "RemoteDataZMQ"],
    "image": [
        "ImageFromFile",
        "AugmentImageComponent",
        "AugmentImageCoordinates",
        "AugmentImageComponents",
    ],
    "common": [
        "TestDataSpeed",
        "PrintData",
        "BatchData",
        "BatchDataByShape",
        "FixedSizeData",
        "MapData",
        "MapDataComponent",
        "RepeatedData",
        "RepeatedDataPoint",
        "RandomChooseData",
        "RandomMixData",
        "JoinData",
        "ConcatData",
        "SelectComponent",
        "LocallyShuffleData",
        "CacheData",
    ],
}


@pytest.mark.parametrize("module", sorted(TENSORPACK_MODULES))
def test_tensorpack_names_live_in_the_same_module_and_at_the_top(module):
    mod = importlib.import_module(f"dataflow.{module}")
    for name in TENSORPACK_MODULES[module]:
        assert hasattr(mod, name), f"dataflow.{module} lacks {name}"
        assert getattr(dataflow, name) is getattr(mod, name), f"dataflow.{name} differs"
        assert name in mod.__all__ and name in dataflow.__all__


def test_top_level_all_is_importable():
    for name in dataflow.__all__:
        assert hasattr(dataflow, name), name


def test_public_classes_document_themselves():
    for name in dataflow.__all__:
        obj = getattr(dataflow, name)
        if inspect.isclass(obj) and obj.__module__.startswith("dataflow"):
            assert obj.__doc__ and obj.__doc__.strip(), f"{name} has no docstring"


@pytest.mark.parametrize(
    ("cls", "params"),
    [
        ("BatchData", ["ds", "batch_size", "remainder", "use_list"]),
        ("BatchDataByShape", ["ds", "batch_size", "idx"]),
        ("FixedSizeData", ["ds", "size", "keep_state"]),
        ("MapDataComponent", ["ds", "func", "index"]),
        ("LocallyShuffleData", ["ds", "buffer_size", "num_reuse", "shuffle_interval"]),
        ("CacheData", ["ds", "shuffle"]),
        ("TestDataSpeed", ["ds", "size", "warmup"]),
        ("FakeData", ["shapes", "size", "random", "dtype", "domain"]),
        ("DataFromList", ["lst", "shuffle"]),
        ("RepeatedData", ["ds", "num"]),
        ("SelectComponent", ["ds", "idxs"]),
    ],
)
def test_signatures_follow_tensorpack(cls, params):
    sig = inspect.signature(getattr(dataflow, cls))
    assert list(sig.parameters)[: len(params)] == params

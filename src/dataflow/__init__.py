"""dataflow: fast, exact, leak-free data pipelines for ML training.

A drop-in successor of tensorpack's DataFlow: ``from dataflow import *`` gives every public name,
and each also lives in the module tensorpack had it in (``dataflow.base``, ``dataflow.common``).
"""

from __future__ import annotations

from ._engine.context import WorkerInfo, get_worker_info
from ._engine.seeding import get_rng, get_seed, set_seed
from ._version import __version__
from .base import DataFlow, DataFlowReentrantGuard, DataFlowTerminated, ProxyDataFlow, RNGDataFlow
from .common import (
    BatchData,
    BatchDataByShape,
    CacheData,
    ConcatData,
    FixedSizeData,
    JoinData,
    LocallyShuffleData,
    MapData,
    MapDataComponent,
    PrintData,
    RandomChooseData,
    RandomMixData,
    RepeatedData,
    RepeatedDataPoint,
    SelectComponent,
    TestDataSpeed,
)
from .errors import (
    BatchError,
    DataFlowArgumentError,
    DataFlowClosedError,
    DataFlowError,
    DatapointError,
    FormatError,
    LengthUnknownError,
    ReentrancyError,
    WorkerDied,
    WorkerError,
)
from .format import CaffeLMDB, HDF5Data, LMDBData, LMDBDataDecoder, SVMLightData
from .image import (
    AugmentImageComponent,
    AugmentImageComponents,
    AugmentImageCoordinates,
    ImageFromFile,
    imdecode,
)
from .parallel import (
    MultiProcessPrefetchData,
    MultiProcessRunner,
    MultiProcessRunnerZMQ,
    MultiThreadPrefetchData,
    MultiThreadRunner,
    PrefetchData,
    PrefetchDataZMQ,
)
from .parallel_map import (
    MultiProcessMapAndBatchData,
    MultiProcessMapAndBatchDataZMQ,
    MultiProcessMapData,
    MultiProcessMapDataZMQ,
    MultiThreadMapData,
)
from .raw import (
    DataFromDict,
    DataFromGenerator,
    DataFromIterable,
    DataFromList,
    DataFromQueue,
    FakeData,
)
from .remote import RemoteDataZMQ, send_dataflow_zmq
from .serialize import HDF5Serializer, LMDBSerializer, NumpySerializer, TFRecordSerializer

__all__ = [
    "__version__",
    # base
    "DataFlow",
    "ProxyDataFlow",
    "RNGDataFlow",
    "DataFlowTerminated",
    "DataFlowReentrantGuard",
    # common
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
    # parallel, parallel_map
    "MultiProcessRunner",
    "MultiProcessRunnerZMQ",
    "MultiThreadRunner",
    "PrefetchData",
    "MultiProcessPrefetchData",
    "PrefetchDataZMQ",
    "MultiThreadPrefetchData",
    "MultiThreadMapData",
    "MultiProcessMapData",
    "MultiProcessMapDataZMQ",
    "MultiProcessMapAndBatchData",
    "MultiProcessMapAndBatchDataZMQ",
    # format, serialize, remote
    "LMDBData",
    "LMDBDataDecoder",
    "CaffeLMDB",
    "HDF5Data",
    "SVMLightData",
    "LMDBSerializer",
    "NumpySerializer",
    "HDF5Serializer",
    "TFRecordSerializer",
    "send_dataflow_zmq",
    "RemoteDataZMQ",
    # image
    "ImageFromFile",
    "AugmentImageComponent",
    "AugmentImageComponents",
    "AugmentImageCoordinates",
    "imdecode",
    # raw
    "DataFromList",
    "DataFromDict",
    "DataFromGenerator",
    "DataFromIterable",
    "DataFromQueue",
    "FakeData",
    # seeding and worker context
    "set_seed",
    "get_seed",
    "get_rng",
    "get_worker_info",
    "WorkerInfo",
    # errors
    "DataFlowError",
    "DataFlowArgumentError",
    "DataFlowClosedError",
    "ReentrancyError",
    "LengthUnknownError",
    "DatapointError",
    "BatchError",
    "WorkerError",
    "WorkerDied",
    "FormatError",
]

_SUBPACKAGES = ("dataset", "imgaug")


def __getattr__(name: str):
    # ``dataflow.dataset`` and ``dataflow.imgaug`` load on first use (as tensorpack's did), so that
    # ``import dataflow`` stays light. They are not in ``__all__``: a star import must not fail
    # when the [image] extra (OpenCV) is missing; write ``from dataflow import imgaug``.
    if name in _SUBPACKAGES:
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'dataflow' has no attribute {name!r}")

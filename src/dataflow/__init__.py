"""dataflow: fast, exact, leak-free data pipelines for ML training.

A drop-in successor of tensorpack's DataFlow: ``from dataflow import *`` gives every public name,
and each also lives in the module tensorpack had it in (``dataflow.base``, ``dataflow.common``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._engine.context import WorkerInfo, get_worker_info
from ._engine.seeding import get_rng, get_seed, set_seed
from ._lazy import LazyModule
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
    StateError,
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
from .integrations import ShardByRank, to_jax, to_tf, to_torch
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
from .ray_backend import RayMapData, RayRunner
from .remote import RemoteDataZMQ, send_dataflow_zmq
from .serialize import (
    DiskCacheSerializer,
    HDF5Serializer,
    LMDBSerializer,
    NumpySerializer,
    TFRecordSerializer,
)

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
    # Ray (imported when one is built)
    "RayMapData",
    "RayRunner",
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
    "DiskCacheSerializer",
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
    # training frameworks (each imported when its adapter is called)
    "to_torch",
    "to_jax",
    "to_tf",
    "ShardByRank",
    # errors
    "DataFlowError",
    "DataFlowArgumentError",
    "DataFlowClosedError",
    "ReentrancyError",
    "StateError",
    "LengthUnknownError",
    "DatapointError",
    "BatchError",
    "WorkerError",
    "WorkerDied",
    "FormatError",
    # subpackages, imported at first use
    "imgaug",
    "dataset",
]

# ``imgaug`` and ``dataset`` are in ``__all__`` as they were in tensorpack's, bound to stand-ins
# that import the subpackage at first use: ``import dataflow`` and ``from dataflow import *`` do not
# import OpenCV or scipy, and work without them. ``import dataflow.imgaug`` gives the real module.
if TYPE_CHECKING:
    from . import dataset, imgaug
else:
    dataset = LazyModule(f"{__name__}.dataset")
    imgaug = LazyModule(f"{__name__}.imgaug")

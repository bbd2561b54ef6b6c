"""Single-process combinators: map, batch, repeat, mix, join, shuffle locally, cache, inspect.

Every class here is a drop-in for the one of the same name in ``tensorpack.dataflow.common``: same
signature, defaults and documented behaviour, except where tensorpack had a defect (each docstring
says what differs). All of them run in the calling process and thread; put them inside a runner or a
parallel map to use more cores.

A datapoint is a list (tuples accepted) of components, or a dict. Upstream flows are validated
when a combinator is built; a datapoint with the wrong structure raises
:class:`~dataflow.errors.DatapointError` naming the component, a batch that cannot be stacked
raises :class:`~dataflow.errors.BatchError`.

Import them from here (``from dataflow.common import BatchData``) or from ``dataflow``; each lives
in the module of its concept:

==============  ==========================================================
``batch``       BatchData, BatchDataByShape
``mapping``     MapData, MapDataComponent, SelectComponent
``repeat``      FixedSizeData, RepeatedData, RepeatedDataPoint
``mix``         RandomChooseData, RandomMixData, ConcatData, JoinData
``shuffle``     LocallyShuffleData, CacheData
``inspection``  TestDataSpeed, PrintData
==============  ==========================================================

``_shared`` holds what they share (argument checks, error builders, the ``dataflow.common``
logger every one of them logs to) and imports none of them.
"""

from __future__ import annotations

from ._shared import logger as logger
from .batch import BatchData, BatchDataByShape
from .inspection import PrintData, TestDataSpeed
from .mapping import MapData, MapDataComponent, SelectComponent
from .mix import ConcatData, JoinData, RandomChooseData, RandomMixData
from .repeat import FixedSizeData, RepeatedData, RepeatedDataPoint
from .shuffle import CacheData, LocallyShuffleData

__all__ = [
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
]

"""What the readers of dataflow.format share: argument checks that name the reader and argument."""

from __future__ import annotations

import os

import numpy as np

from ..errors import DataFlowArgumentError


def _check_path(path: object, who: str, arg: str) -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise DataFlowArgumentError(f"{who}: {arg} must be a path, got {type(path).__name__}")
    path = os.fspath(path)
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    return path


def _check_flag(value: object, who: str, arg: str) -> bool:
    if not isinstance(value, (bool, np.bool_, int)):
        raise DataFlowArgumentError(f"{who}: {arg} must be a bool, got {type(value).__name__}")
    return bool(value)

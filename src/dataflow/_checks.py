"""Argument checks that flows of every layer share; each error names the flow and the argument."""

from __future__ import annotations

import numbers
import os

import numpy as np

from .errors import DataFlowArgumentError

__all__ = ["check_flag", "check_path"]


def check_flag(value: object, who: str, arg: str) -> bool:
    """``value`` as a bool (bools, numpy bools and ints are accepted)."""
    if not isinstance(value, (bool, np.bool_, numbers.Integral)):
        raise DataFlowArgumentError(f"{who}: {arg} must be a bool, got {type(value).__name__}")
    return bool(value)


def check_path(path: object, who: str, arg: str) -> str:
    """``path`` (a str or an os.PathLike, also one whose fspath is bytes) as a str."""
    if not isinstance(path, (str, os.PathLike)):
        raise DataFlowArgumentError(f"{who}: {arg} must be a path, got {type(path).__name__}")
    path = os.fspath(path)
    return os.fsdecode(path) if isinstance(path, bytes) else path

"""Helpers the dataset readers share: argument checks, optional imports, .mat and image reading."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ..errors import DataFlowArgumentError, FormatError


def check_choice(value: object, choices: Sequence[str], who: str, arg: str) -> str:
    """``value`` if it is one of ``choices``; else a DataFlowArgumentError naming ``arg``."""
    if not isinstance(value, str) or value not in choices:
        raise DataFlowArgumentError(
            f"{who}: {arg} must be one of {', '.join(map(repr, choices))}; got {value!r}"
        )
    return value


def check_dir(path: str, who: str, arg: str = "dir") -> str:
    if not os.path.isdir(path):
        raise DataFlowArgumentError(f"{who}: {arg} {path!r} is not a directory")
    return path


def shuffle_default(shuffle: object, name: str) -> bool:
    """tensorpack's rule for ``shuffle=None``: shuffle the training split only."""
    return name == "train" if shuffle is None else bool(shuffle)


def import_scipy_io(who: str) -> Any:
    try:
        import scipy.io
    except ImportError as e:
        raise ImportError(
            f"{who} reads MATLAB .mat files with scipy, which is not installed: pip install 'pydataflow[dataset]' (or: pip install scipy)"
        ) from e
    return scipy.io


def import_cv2(who: str) -> Any:
    try:
        import cv2
    except ImportError as e:
        raise ImportError(
            f"{who} decodes images with OpenCV, which is not installed: "
            "pip install 'pydataflow[image]'"
        ) from e
    return cv2


def load_mat(path: str, keys: Iterable[str], who: str) -> dict[str, Any]:
    """Load a MATLAB (v4-v7.2) .mat file with scipy and check that it has ``keys``."""
    sio = import_scipy_io(who)
    try:
        data = sio.loadmat(path)
    except NotImplementedError as e:  # v7.3 files are HDF5
        raise FormatError(f"{who}: {path} is a MATLAB v7.3 (HDF5) file, not v5: {e}") from e
    except (ValueError, TypeError, OSError, EOFError) as e:
        raise FormatError(f"{who}: {path} is not a readable .mat file: {e}") from e
    missing = [k for k in keys if k not in data]
    if missing:
        found = sorted(k for k in data if not k.startswith("__"))
        raise FormatError(f"{who}: {path} lacks the variable(s) {missing}; it has {found}")
    return data


def imread(path: str, who: str) -> np.ndarray:
    """Decode the image file at ``path`` to a BGR uint8 array of shape (h, w, 3).

    Goes through :func:`dataflow.image.imdecode`, the library's one decode path (OpenCV, EXIF
    orientation applied as ``cv2.imread`` does).
    """
    import_cv2(who)
    from ..image import imdecode

    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise FormatError(f"{who}: image file {path} does not exist") from None
    except OSError as e:
        raise FormatError(f"{who}: cannot read image file {path}: {e}") from e
    try:
        return imdecode(data, 3)
    except FormatError as e:
        raise FormatError(f"{who}: cannot decode image file {path} ({e})") from e

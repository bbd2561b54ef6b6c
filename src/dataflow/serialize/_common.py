"""What the serializers share: argument checks, the progress bar, atomic publication of a file."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
from typing import Any

import numpy as np
import tqdm

from .. import codec
from .._checks import check_path
from ..base import DataFlow, check_dataflow
from ..errors import DataFlowArgumentError, DatapointError


def _check_path(path: object, who: str) -> str:
    return check_path(path, who, "path")


def _check_parent(path: str, who: str) -> None:
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise DataFlowArgumentError(f"{who}: the directory {parent!r} of {path!r} does not exist")


def _check_write_frequency(write_frequency: object, who: str) -> int:
    if (
        isinstance(write_frequency, (bool, np.bool_))
        or not isinstance(write_frequency, (int, np.integer))
        or write_frequency <= 0
    ):
        raise DataFlowArgumentError(
            f"{who}: write_frequency must be a positive int, got {write_frequency!r}"
        )
    return int(write_frequency)


def _prepare(df: object, who: str) -> tuple[DataFlow, int | None]:
    """Validate and reset the flow to save; return it and its length (None if unknown)."""
    flow = check_dataflow(df, who, "df")
    flow.reset_state()
    try:
        return flow, len(flow)
    except (NotImplementedError, TypeError):
        return flow, None


def _progress(total: int | None, who: str) -> tqdm.tqdm:
    return tqdm.tqdm(total=total, desc=who, unit="dp", dynamic_ncols=True, mininterval=0.5)


def _temp_path(final: str) -> str:
    """A hidden temporary name beside ``final``, naming this host and process. The temporary
    files of earlier writers to ``final`` on this host whose process is gone (a SIGKILLed save)
    are removed first; a writer on another host sharing the folder is never touched."""
    head, tail = os.path.split(os.path.abspath(final))
    prefix = f".{tail}.tmp-{_host()}"
    _sweep(head, prefix)
    return os.path.join(head, f"{prefix}-{os.getpid()}-{secrets.token_hex(4)}")


def _host() -> str:
    return "".join(c if c.isalnum() else "_" for c in socket.gethostname()) or "host"


def _sweep(folder: str, prefix: str) -> None:
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        if not name.startswith(prefix + "-"):
            continue
        parts = name[len(prefix) + 1 :].split("-")
        if len(parts) != 2 or not parts[0].isdigit():
            continue
        pid = int(parts[0])
        if pid == os.getpid() or _alive(pid):
            continue
        path = os.path.join(folder, name)
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)
        except OSError:  # gone already, or not ours to remove: left as it is
            continue


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _publish(tmp: str, final: str) -> None:
    """Move a complete temporary file to its final name, durably."""
    os.replace(tmp, final)
    try:
        fd = os.open(os.path.dirname(os.path.abspath(final)), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _encode(dp: Any, index: int, who: str) -> bytes:
    try:
        return codec.dumps(dp)
    except DatapointError as e:
        raise DatapointError(f"{who}: datapoint {index}: {e}") from e

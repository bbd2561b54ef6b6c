"""What more than one subcommand of the ``dataflow`` command uses.

One-line error reports and the user's traceback without our frames, byte sizes for humans,
argparse types for counts, and loading the pipeline factory a user names as ``MODULE:FUNCTION``
or ``path/to/file.py:FUNCTION``. Imports no subcommand module.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any

from ..errors import DataFlowArgumentError, DataFlowError


def _one_line(message: object) -> str:
    """A message on one line (library messages may list details on further lines)."""
    return " ".join(str(message).split())


def _report_error(command: str, message: object) -> int:
    """Print the one-line error of a failed command; return its exit code (1)."""
    print(f"dataflow {command}: error: {_one_line(message)}", file=sys.stderr)
    return 1


def _user_traceback(error: BaseException) -> None:
    """Print the traceback of an exception raised by the user's code, without our own frames."""
    tb = error.__traceback__
    here = os.path.dirname(os.path.abspath(__file__))  # our frames: any module of this package
    while tb is not None and (
        os.path.dirname(os.path.abspath(tb.tb_frame.f_code.co_filename)) == here
        or tb.tb_frame.f_code.co_filename.startswith("<frozen importlib")
    ):
        tb = tb.tb_next
    traceback.print_exception(type(error), error, tb, file=sys.stderr)


def _human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def _path_size(path: str) -> int:
    if os.path.isdir(path):
        return sum(
            os.path.getsize(os.path.join(root, f))
            for root, _, files in os.walk(path)
            for f in files
        )
    return os.path.getsize(path)


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text}")
    return value


def _import_file(path: str) -> Any:
    directory = os.path.dirname(path)
    if directory not in sys.path:
        sys.path.insert(0, directory)  # so that the file's sibling modules import
    stem = os.path.splitext(os.path.basename(path))[0]
    name = stem if stem.isidentifier() and stem not in sys.modules else f"_dataflow_bench_{stem}"
    name = name if name.isidentifier() else "_dataflow_bench_module"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise DataFlowArgumentError(f"{path} cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # (pickling functions of the module needs it registered)
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _load_factory(target: str) -> tuple[Callable[[], Any], str]:
    """The callable named by ``MODULE:FUNCTION`` or ``FILE.py:FUNCTION`` (dots walk attributes)."""
    where, sep, attr = target.rpartition(":")
    if not sep or not where or not attr:
        raise DataFlowArgumentError(
            f"TARGET must be MODULE:FUNCTION or path/to/file.py:FUNCTION, got {target!r}"
        )
    is_file = where.endswith(".py") or os.sep in where or "/" in where
    path = os.path.abspath(where)
    if is_file and not os.path.isfile(path):
        raise DataFlowArgumentError(f"{where}: no such file")
    try:
        if is_file:
            module = _import_file(path)
        else:
            if os.getcwd() not in sys.path and "" not in sys.path:
                sys.path.insert(0, os.getcwd())  # MODULE is looked for in the current folder
            module = importlib.import_module(where)
    except ModuleNotFoundError as e:
        if (
            not is_file
            and e.name is not None
            and (where == e.name or where.startswith(e.name + "."))
        ):
            raise DataFlowError(
                f"cannot import module {where!r}: {e}. Run from the folder that holds it, or give "
                "a file path (path/to/file.py:FUNCTION)"
            ) from None
        _user_traceback(e)
        raise DataFlowError(f"importing {where} failed: {type(e).__name__}: {e}") from e
    except Exception as e:
        _user_traceback(e)
        raise DataFlowError(f"importing {where} failed: {type(e).__name__}: {e}") from e
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise DataFlowError(f"{where} has no attribute {attr!r}") from None
    if not callable(obj):
        raise DataFlowError(
            f"{target} is a {type(obj).__name__}, not a function that returns a DataFlow"
        )
    return obj, target


def _build(factory: Callable[[], Any], target: str) -> Any:
    """Call the factory; check that it returned a flow."""
    from ..base import DataFlow

    try:
        flow = factory()
    except Exception as e:
        _user_traceback(e)
        raise DataFlowError(f"{target}() raised {type(e).__name__}: {e}") from e
    if not isinstance(flow, DataFlow) and not (
        hasattr(flow, "__iter__") and hasattr(flow, "reset_state")
    ):
        raise DataFlowError(f"{target}() returned a {type(flow).__name__}, not a DataFlow")
    return flow

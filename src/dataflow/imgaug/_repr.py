"""The ``repr`` of augmentors and transforms: ``imgaug.Name(arg=value, ...)`` from their arguments.

Shared by :mod:`.base` (augmentors) and :mod:`.transform` (transforms); it needs neither of them,
so that transforms do not depend on augmentors.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

_EMPTY = inspect.Parameter.empty
_signatures: dict[type, list[tuple[str, Any]] | None] = {}


def _init_fields(cls: type) -> list[tuple[str, Any]] | None:
    """The (name, default) of ``cls.__init__``'s arguments, or None where *args/**kwargs are used."""
    if cls in _signatures:
        return _signatures[cls]
    fields: list[tuple[str, Any]] | None = []
    try:
        params = list(inspect.signature(cls.__init__).parameters.values())[1:]  # type: ignore[misc]
    except (TypeError, ValueError):
        params = []
    for p in params:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            fields = None
            break
        fields.append((p.name, p.default))  # type: ignore[union-attr]
    _signatures[cls] = fields
    return fields


def _is_default(value: Any, default: Any) -> bool:
    if value is default:
        return True
    if default is _EMPTY or isinstance(value, np.ndarray) or isinstance(default, np.ndarray):
        return False
    try:
        return type(value) is type(default) and bool(value == default)
    except Exception:  # an __eq__ that does not return a bool: not a default then
        return False


def default_repr(obj: Any) -> str:
    """``imgaug.Name(arg=value, ...)`` from the constructor's arguments stored as attributes.

    Arguments equal to their default are left out. Where an argument is not stored under its own
    name, falls back to ``object.__repr__``.
    """
    cls = type(obj)
    fields = _init_fields(cls)
    if fields is None:
        return object.__repr__(obj)
    parts = []
    for name, default in fields:
        try:
            value = getattr(obj, name)
        except AttributeError:
            return object.__repr__(obj)
        if _is_default(value, default):
            continue
        parts.append(f"{name}={value!r}")
    return f"imgaug.{cls.__name__}({', '.join(parts)})"

"""Optional dependencies, imported when first used.

``import dataflow`` needs only the core dependencies. A class that needs an optional package (lmdb,
h5py, pyzmq, ...) stays importable without it and calls :func:`require` when it is used, which
either returns the module or raises an ImportError that says what to install.

:class:`LazyModule` stands in for a subpackage that needs an optional package (``dataflow.imgaug``
needs OpenCV): ``from dataflow import *`` binds ``imgaug`` and ``dataset`` as tensorpack's star
import did, and the subpackage is imported at the first attribute access.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import Any

__all__ = ["require", "LazyModule"]

# import name -> pip distribution name, where they differ
_PIP_NAMES = {
    "cv2": "opencv-python-headless",
    "zmq": "pyzmq",
    "sklearn": "scikit-learn",
    "PIL": "Pillow",
    "yaml": "PyYAML",
}


def require(module: str, extra: str | None = None, *, who: str | None = None) -> ModuleType:
    """Import ``module`` and return it, or raise an ImportError naming what to install.

    Args:
        module: the import name (``"lmdb"``, ``"zmq"``).
        extra: the pydataflow extra that installs it (``"lmdb"`` for ``pydataflow[lmdb]``), or None
            when no extra does (then the message names the pip package itself).
        who: what needs it, for the message (default: the module name).
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        top = module.split(".")[0]
        package = _PIP_NAMES.get(top, top)
        hint = f"pip install 'pydataflow[{extra}]'" if extra else f"pip install {package}"
        raise ImportError(f"{who or module} requires {package}: {hint}", name=module) from e


# LazyModule's own attributes; everything else is the real module's.
_OWN = frozenset(
    {"_lazy_target", "_lazy_load", "__class__", "__dict__", "__reduce__", "__reduce_ex__"}
)


class LazyModule(ModuleType):
    """A module object that imports the module ``target`` at its first attribute access.

    It behaves as the module: attribute access (``imgaug.Flip``), assignment, ``dir()`` and
    ``isinstance(x, imgaug.Flip)`` go to the real module, which is imported then (an ImportError
    naming the pip extra, raised by the module itself, if its optional dependency is missing).
    ``repr`` and ``isinstance(proxy, types.ModuleType)`` do not import anything. Once imported,
    ``import dataflow.imgaug`` and ``from dataflow import imgaug`` give the real module, since the
    import system rebinds the package attribute.
    """

    def __init__(self, target: str) -> None:
        super().__init__(target)
        object.__setattr__(self, "_lazy_target", target)

    def _lazy_load(self) -> ModuleType:
        target = object.__getattribute__(self, "_lazy_target")
        module = sys.modules.get(target)
        if module is None or module is self:
            module = importlib.import_module(target)
        return module

    def __getattribute__(self, name: str) -> Any:
        if name in _OWN:
            return object.__getattribute__(self, name)
        return getattr(object.__getattribute__(self, "_lazy_load")(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._lazy_load(), name, value)

    def __delattr__(self, name: str) -> None:
        delattr(self._lazy_load(), name)

    def __dir__(self) -> list[str]:
        return dir(self._lazy_load())

    def __repr__(self) -> str:
        target = object.__getattribute__(self, "_lazy_target")
        module = sys.modules.get(target)
        if module is None:
            return f"<module {target!r} (not imported yet)>"
        return repr(module)

    def __reduce__(self) -> Any:
        # pickled by reference, as modules are not picklable: the copy imports it by name
        return (importlib.import_module, (object.__getattribute__(self, "_lazy_target"),))

"""Optional dependencies, imported when first used.

``import dataflow`` needs only the core dependencies. A class that needs an optional package (lmdb,
h5py, pyzmq, ...) stays importable without it and calls :func:`require` when it is used, which
either returns the module or raises an ImportError that says what to install.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["require"]

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

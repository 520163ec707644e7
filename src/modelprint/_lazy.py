"""Optional heavy dependencies, imported where first needed, each behind one helper that says
how to install it when it is missing (Ray for scale-out, uvicorn for serving, matplotlib for
plots). ONNX Runtime is imported only inside the contained worker, which cannot import this."""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import ParameterError


def _optional(name: str, purpose: str, install: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError:
        raise ParameterError(f"{purpose} needs {name}: {install}") from None


def ray() -> ModuleType:
    return _optional("ray", "the ray backend", "pip install 'modelprint[ray]'")


def uvicorn() -> ModuleType:
    return _optional("uvicorn", "serving a model", "pip install 'modelprint[serve]'")


def require(name: str, purpose: str, extra: str) -> None:
    """Fail with the install line when ``name`` is missing (imported later by its own user)."""
    _optional(name, purpose, f"pip install 'modelprint[{extra}]'")


def pyplot() -> ModuleType:
    """matplotlib.pyplot on the file-only Agg backend (no display)."""
    matplotlib = _optional("matplotlib", "plots", "pip install 'modelprint[report]'")
    matplotlib.use("Agg")
    return importlib.import_module("matplotlib.pyplot")

"""Your own architecture: any ``nn.Module``, named by import path (``mypkg.nets:make_net``).

A model card records the architecture either as a registered name (``cnn``) or as an import
path ``MODULE:ATTRIBUTE``, a class or function returning the network. Importing a module runs
its code, so a card from someone else must never choose what gets imported: an import path is
built only once you have trusted it, by naming it on the command line (``--arch``,
``--trust-arch``), in ``MODELPRINT_TRUST_ARCH`` (comma-separated) or with :func:`trust_arch`.
``torchvision.models:NAME`` and ``timm:create_model`` are trusted from the start: they are
libraries, not the suspect's code.

The factory is called with the card's ``arch_args``, plus ``num_classes`` / ``input_shape``
when its signature takes them and the arguments do not already set them. As with the
built-in architectures, the network sees ``(x - mean) / std`` of images in [0, 1].

Example::

    trust_arch("mynets:make_net")
    net = build_imported("mynets:make_net", {"width": 32}, num_classes=10, input_shape=(1, 28, 28))
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable
from typing import Any

from torch import nn

from ..errors import ParameterError

TRUST_ENV = "MODELPRINT_TRUST_ARCH"
# Library factories: importing them runs no code a suspect's card could have chosen.
_LIBRARY_PREFIXES = ("torchvision.models:", "timm:create_model")
_trusted: set[str] = set()


def is_import_path(name: str) -> bool:
    """True for ``MODULE:ATTRIBUTE`` (registered names hold no colon)."""
    module, sep, attr = name.partition(":")
    return bool(sep and module and attr and "=" not in name)


def trust_arch(*paths: str) -> None:
    """Allow these import paths to be imported when a model card names them."""
    for path in paths:
        if not is_import_path(path):
            raise ParameterError(
                f"an architecture import path is MODULE:ATTRIBUTE (e.g. mynets:make_net), got {path!r}"
            )
        _trusted.add(path)


def is_trusted(path: str) -> bool:
    from_env = {p.strip() for p in os.environ.get(TRUST_ENV, "").split(",") if p.strip()}
    return path in _trusted or path in from_env or path.startswith(_LIBRARY_PREFIXES)


def untrusted_message(path: str) -> str:
    return (
        f"the architecture is code named by import path {path!r}, and modelprint imports code only "
        f"when you trust it: add --trust-arch {path} (or set {TRUST_ENV}={path}, "
        f"or call modelprint.trust_arch({path!r}))"
    )


def import_factory(path: str) -> Callable[..., nn.Module]:
    """The class or function at ``MODULE:ATTRIBUTE``, imported only if trusted."""
    if not is_trusted(path):
        raise ParameterError(untrusted_message(path))
    module_name, _, attr = path.partition(":")
    # As uvicorn does: a module beside the user's script, in the working folder, is importable.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except ImportError as e:
        raise ParameterError(f"architecture {path!r}: cannot import {module_name!r} ({e})") from None
    except AttributeError:
        raise ParameterError(f"architecture {path!r}: module {module_name!r} has no attribute {attr!r}") from None
    if not callable(obj):
        raise ParameterError(f"architecture {path!r} is not a class or function that returns an nn.Module")
    return obj


def check_arguments(name: str, factory: Callable[..., Any], args: dict[str, Any]) -> None:
    """Refuse arguments the factory does not take, in one line that lists the ones it does."""
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):  # some builtins have no signature: let the call decide
        return
    params = sig.parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    accepted = [k for k, p in params.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and k != "self"]
    unknown = sorted(set(args) - set(accepted))
    if unknown:
        shown = [k for k in accepted if k not in ("num_classes", "input_shape")]
        raise ParameterError(
            f"architecture {name!r} has no argument {', '.join(map(repr, unknown))}; "
            f"it takes: {', '.join(shown) or 'no arguments'}"
        )


def build_imported(
    path: str, args: dict[str, Any], *, num_classes: int, input_shape: tuple[int, int, int]
) -> nn.Module:
    """Call the trusted factory at ``path`` with ``args`` (and the shape arguments it takes)."""
    factory = import_factory(path)
    check_arguments(path, factory, args)
    call = dict(args)
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        params = {}
    # num_classes 0: unknown yet (an import reads it from the net), so the factory's default stands
    for key, value in (("num_classes", num_classes), ("input_shape", tuple(input_shape))):
        if key in params and key not in call and value:
            call[key] = value
    try:
        net = factory(**call)
    except TypeError as e:
        raise ParameterError(f"architecture {path!r}: {e}") from None
    if not isinstance(net, nn.Module):
        raise ParameterError(f"architecture {path!r} returned {type(net).__name__}, not an nn.Module")
    return net


def import_path_of(obj: Any) -> str:
    """``MODULE:QUALNAME`` of a class or function, as a card records it."""
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if not module or not qualname or "<locals>" in qualname:
        raise ParameterError(
            f"{obj!r} has no import path (defined inside a function?); define it at a module's top level"
        )
    return f"{module}:{qualname}"

"""Your own architecture: any ``nn.Module``, named by import path (``mypkg.nets:make_net``).

A model card records the architecture either as a registered name (``cnn``) or as an import
path ``MODULE:ATTRIBUTE``, a class or function returning the network. Importing a module runs
its code, so a card from someone else must never choose what gets imported: an import path is
built only once you have trusted that exact path, by naming it on the command line
(``--arch``, ``--trust-arch``), in ``MODELPRINT_TRUST_ARCH`` (comma-separated) or with
:func:`trust_arch`. Library factories (``torchvision.models:resnet18``, ``timm:create_model``)
are no exception: a card can name any attribute of a library, so each one is trusted by name.
A path is ``MODULE:ATTRIBUTE`` with ATTRIBUTE one identifier (no attribute chains such as
``pkg:_api.os.system``), and it is imported from the installed packages and ``PYTHONPATH``:
never from the working folder or a suspect's folder, where a hostile ``torchvision/`` or
``mynets.py`` could stand in for the real module (put your own folder on ``PYTHONPATH``).

The factory is called with the card's ``arch_args``, plus ``num_classes`` / ``input_shape``
when its signature takes them and the arguments do not already set them. As with the
built-in architectures, the network sees ``(x - mean) / std`` of images in [0, 1].

Example::

    trust_arch("mynets:make_net")
    net = build_imported("mynets:make_net", {"width": 32}, num_classes=10, input_shape=(1, 28, 28))
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import os
import re
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

from torch import nn

from ..errors import ParameterError
from ..registry import comma_list

TRUST_ENV = "MODELPRINT_TRUST_ARCH"
# MODULE is dotted identifiers, ATTRIBUTE exactly one: an attribute chain could walk from any
# trusted module to anything it imported (``pkg:_api.inspect.os.system``).
_IMPORT_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*", re.ASCII)
_trusted: set[str] = set()
# sys.path is narrowed for the length of an import; imports from two threads must not interleave.
_import_lock = threading.Lock()
_untrusted_folders: list[str] = []


def is_import_path(name: str) -> bool:
    """True for anything of the form ``MODULE:ATTRIBUTE`` (registered names hold no colon);
    :func:`valid_import_path` says whether it is one modelprint would ever import."""
    module, sep, attr = name.partition(":")
    return bool(sep and module and attr and "=" not in name)


def valid_import_path(name: str) -> bool:
    """``MODULE:ATTRIBUTE``, MODULE dotted identifiers and ATTRIBUTE a single identifier."""
    return _IMPORT_PATH.fullmatch(name) is not None


def trust_arch(*paths: str) -> None:
    """Allow exactly these import paths to be imported when a model card names them."""
    for path in paths:
        if not valid_import_path(path):
            raise ParameterError(
                "an architecture import path is MODULE:ATTRIBUTE with ATTRIBUTE one name "
                f"(e.g. mynets:make_net), got {path!r}"
            )
        _trusted.add(path)


def trusted_archs() -> list[str]:
    """The import paths trusted in this process by :func:`trust_arch` (the environment's apart),
    to pass to a worker process, which trusts exactly these too."""
    return sorted(_trusted)


def is_trusted(path: str) -> bool:
    """Whether ``path`` was trusted exactly (no prefixes, no patterns)."""
    from_env = set(comma_list(os.environ.get(TRUST_ENV, "")))
    return valid_import_path(path) and (path in _trusted or path in from_env)


@contextlib.contextmanager
def untrusted_folder(folder: str | os.PathLike) -> Iterator[None]:
    """While a file from ``folder`` is being built, no import resolves from that folder."""
    _untrusted_folders.append(os.path.realpath(folder))
    try:
        yield
    finally:
        _untrusted_folders.pop()


def _import_search_path() -> list[str]:
    """sys.path without the working folder and the folders of files being loaded, unless the
    user named that folder in PYTHONPATH themselves."""
    explicit = {os.path.realpath(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p}
    refused = {os.path.realpath(os.getcwd()), *_untrusted_folders}
    # "" and "." are the working folder too
    return [p for p in sys.path if os.path.realpath(p or ".") not in refused - explicit]


def untrusted_message(path: str) -> str:
    if not valid_import_path(path):
        return (
            f"the architecture {path[:200]!r} is not an import path MODULE:NAME with NAME one identifier "
            "(attribute chains are never followed); refused"
        )
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
    try:
        with _import_lock:
            saved = sys.path[:]
            sys.path[:] = _import_search_path()
            try:
                module = importlib.import_module(module_name)
            finally:
                sys.path[:] = saved
        obj: Any = getattr(module, attr)
    except ImportError as e:
        raise ParameterError(
            f"architecture {path!r}: cannot import {module_name!r} ({e}); modules are imported from installed "
            "packages and PYTHONPATH, never from the working folder or a suspect's folder: "
            f"add the folder that holds {module_name.split('.')[0]!r} to PYTHONPATH"
        ) from None
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
    if not module or not qualname or not valid_import_path(f"{module}:{qualname}"):
        raise ParameterError(
            f"{obj!r} has no import path MODULE:NAME (defined inside a function or a class?); "
            "define it at a module's top level"
        )
    return f"{module}:{qualname}"

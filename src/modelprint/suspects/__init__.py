"""Suspects: what a verifier can ask of a model it does not own, wherever the model lives.

One contract (:class:`Suspect.predict`, checked answers) and one adapter per place, each a
registered class in its own file: ``torch`` (an in-process module), ``model`` (a modelprint
model file), ``torchscript``, ``onnx`` (onnxruntime) and ``http`` (a prediction API).
:func:`open_suspect` picks the adapter from a path or URL; :func:`as_suspect` lets every
method take a plain ``ModelprintModel`` as well.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ..errors import ParameterError, SuspectError
from .base import SUSPECTS, Answer, Suspect, register_suspect
from .http_api import HttpSuspect
from .onnx_file import OnnxSuspect
from .torch_module import ModelFileSuspect, TorchSuspect
from .torchscript_file import TorchScriptSuspect, inspect_torchscript

__all__ = [
    "SUSPECTS",
    "Answer",
    "HttpSuspect",
    "ModelFileSuspect",
    "OnnxSuspect",
    "Suspect",
    "TorchScriptSuspect",
    "TorchSuspect",
    "as_suspect",
    "check_compatible",
    "inspect_torchscript",
    "open_suspect",
    "register_suspect",
    "suspect_type",
]


def suspect_type(location: str | os.PathLike) -> str:
    """The adapter name for a path or URL: ``http`` for http(s) URLs, else by file suffix."""
    text = str(location)
    if text.startswith(("http://", "https://")):
        return "http"
    suffix = Path(text).suffix.lower()
    for name in SUSPECTS.names():
        if suffix in SUSPECTS.get(name).suffixes:
            return name
    if suffix == "" or not Path(text).exists():
        return "model"  # NAME for NAME.safetensors, as every other command takes model files
    raise ParameterError(
        f"cannot tell what kind of suspect {text} is from its suffix {suffix!r}; "
        f"pass `kind` ({', '.join(n for n in SUSPECTS.names() if n != 'torch')})",
        params=("kind",),
    )


def open_suspect(location: str | os.PathLike, kind: str = "auto", **options: Any) -> Suspect:
    """The suspect at ``location`` (a file path or an http(s) URL), through the adapter ``kind``
    (``auto``: from the suffix or scheme). ``options`` go to the adapter (``token``,
    ``timeout``, ``labels_only``, ...)."""
    name = suspect_type(location) if kind == "auto" else kind
    if name == "torch":
        raise ParameterError("the torch adapter wraps a module in this process; give a file or a URL")
    return SUSPECTS.create(name, **{"url" if name == "http" else "path": str(location), **options})


def as_suspect(obj: Any) -> Suspect:
    """``obj`` as a :class:`Suspect`: adapters pass through, an ``nn.Module`` is wrapped."""
    if isinstance(obj, Suspect):
        return obj
    if isinstance(obj, torch.nn.Module):
        return TorchSuspect(obj)
    raise SuspectError(f"a suspect must be a model or a modelprint.suspects.Suspect, got {type(obj).__name__}")


def check_compatible(input_shape: tuple[int, ...], num_classes: int | None, suspect: Suspect) -> None:
    """Refuse a suspect whose input shape or class count differs from the fingerprint's."""
    if suspect.input_shape is not None and tuple(suspect.input_shape) != tuple(input_shape):
        raise SuspectError(
            f"the fingerprint's queries are {'x'.join(map(str, input_shape))} (C x H x W) but the suspect "
            f"takes {'x'.join(map(str, suspect.input_shape))}; verify a model of the same input shape"
        )
    if num_classes is not None and suspect.num_classes is not None and suspect.num_classes != num_classes:
        raise SuspectError(f"the fingerprint expects {num_classes} classes but the suspect has {suspect.num_classes}")
    if suspect.num_classes is None:  # a suspect that does not say is held to the fingerprint's count
        suspect.num_classes = num_classes

"""The architecture registry. Every architecture class takes ``num_classes``,
``input_shape`` (C, H, W) and its own width/depth keyword arguments; a name of the form
``MODULE:ATTRIBUTE`` is the user's own architecture (:mod:`modelprint.models.custom`)."""

from __future__ import annotations

from typing import Any

from torch import nn

from ..errors import ParameterError
from ..registry import Registry
from .attachments import attach_all, split_attachments
from .custom import build_imported, check_arguments, import_factory, is_import_path

ARCHITECTURES: Registry[nn.Module] = Registry("architecture")
register_arch = ARCHITECTURES.register


def create_arch(name: str, *, num_classes: int, input_shape: tuple[int, int, int], **args: Any) -> nn.Module:
    """An architecture by name. Arguments that name a registered attachment (e.g.
    ``frequency={"host": LAYER, "k": K}``) put that module beside its host layer, so a model
    file that carries one rebuilds it like any other layer."""
    plain, attachments = split_attachments(args)
    if is_import_path(name):
        net = build_imported(name, plain, num_classes=num_classes, input_shape=tuple(input_shape))
    else:
        cls = ARCHITECTURES.get(name)
        check_arguments(name, cls, plain)
        try:
            net = cls(num_classes=num_classes, input_shape=tuple(input_shape), **plain)
        except TypeError as e:
            raise ParameterError(f"architecture {name!r}: {e}") from None
    attach_all(net, tuple(input_shape), attachments)
    return net


def find_arch(name: str) -> Any:
    """The class (or factory) behind an architecture name or trusted import path; unknown
    names and untrusted paths raise with what to do."""
    return import_factory(name) if is_import_path(name) else ARCHITECTURES.get(name)

"""The architecture registry. Every architecture class takes ``num_classes``,
``input_shape`` (C, H, W) and its own width/depth keyword arguments."""

from __future__ import annotations

from typing import Any

from torch import nn

from ..errors import ParameterError
from ..registry import Registry
from .attachments import attach_all, split_attachments

ARCHITECTURES: Registry[nn.Module] = Registry("architecture")
register_arch = ARCHITECTURES.register


def create_arch(name: str, *, num_classes: int, input_shape: tuple[int, int, int], **args: Any) -> nn.Module:
    """An architecture by name. Arguments that name a registered attachment (e.g.
    ``frequency={"host": LAYER, "k": K}``) put that module beside its host layer, so a model
    file that carries one rebuilds it like any other layer."""
    cls = ARCHITECTURES.get(name)
    plain, attachments = split_attachments(args)
    try:
        net = cls(num_classes=num_classes, input_shape=tuple(input_shape), **plain)
    except TypeError as e:
        raise ParameterError(f"architecture {name!r}: {e}") from None
    attach_all(net, tuple(input_shape), attachments)
    return net

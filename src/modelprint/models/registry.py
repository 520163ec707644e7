"""The architecture registry. Every architecture class takes ``num_classes``,
``input_shape`` (C, H, W) and its own width/depth keyword arguments."""

from __future__ import annotations

from typing import Any

from torch import nn

from ..errors import ParameterError
from ..registry import Registry

ARCHITECTURES: Registry[nn.Module] = Registry("architecture")
register_arch = ARCHITECTURES.register


def create_arch(name: str, *, num_classes: int, input_shape: tuple[int, int, int], **args: Any) -> nn.Module:
    cls = ARCHITECTURES.get(name)
    try:
        return cls(num_classes=num_classes, input_shape=tuple(input_shape), **args)
    except TypeError as e:
        raise ParameterError(f"architecture {name!r}: {e}") from None

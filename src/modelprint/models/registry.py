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
    """An architecture by name; ``frequency={"host": LAYER, "k": K, "cutoff": c}`` among the
    arguments puts the white-box frequency module beside that layer (so a model file with one
    rebuilds it like any other layer)."""
    cls = ARCHITECTURES.get(name)
    frequency = args.pop("frequency", None)
    try:
        net = cls(num_classes=num_classes, input_shape=tuple(input_shape), **args)
    except TypeError as e:
        raise ParameterError(f"architecture {name!r}: {e}") from None
    if frequency is not None:
        from ..fingerprints.frequency import attach

        if not isinstance(frequency, dict) or not isinstance(frequency.get("host"), str):
            raise ParameterError(f"frequency must be a table with a 'host' layer name, got {frequency!r}")
        unknown = sorted(set(frequency) - {"host", "k", "cutoff", "aux_class"})
        if unknown:
            raise ParameterError(
                f"frequency: unknown setting(s) {', '.join(unknown)}; settings: host, k, cutoff, aux_class"
            )
        attach(net, frequency["host"], tuple(input_shape), k=int(frequency.get("k", 8)),
               cutoff=int(frequency.get("cutoff", 1)))  # fmt: skip
    return net

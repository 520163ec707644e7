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

# What a card may ask for, checked before anything is built: a card comes with a suspect, and
# a depth of 100,000 costs minutes and gigabytes even on the meta device. Generous for the
# models this tool is for (ImageNet-size inputs, ResNet-size networks).
MAX_CHANNELS = 64
MAX_SIDE = 4096
MAX_INPUT_ELEMENTS = 3 * 1024 * 1024  # a 1024 x 1024 colour image
MAX_CLASSES = 100_000
# Per argument name, (smallest, largest); an architecture narrows or adds to them with its own
# ``limits`` class attribute.
ARG_LIMITS: dict[str, tuple[float, float]] = {
    "width": (1, 4096),
    "depth": (1, 64),
    "heads": (1, 64),
    "patch": (0, MAX_SIDE),
    "mlp_ratio": (1, 16),
}


def check_shape_limits(name: str, num_classes: int, input_shape: tuple[int, ...]) -> None:
    """Refuse an input shape or class count past the limits, in one line that names the limit."""
    if len(input_shape) != 3 or not all(isinstance(d, int) and d >= 1 for d in input_shape):
        raise ParameterError(f"architecture {name!r}: input_shape must be three positive sizes (C, H, W)")
    c, h, w = input_shape
    if c > MAX_CHANNELS or max(h, w) > MAX_SIDE or c * h * w > MAX_INPUT_ELEMENTS:
        raise ParameterError(
            f"architecture {name!r}: input {c}x{h}x{w} is past the limits ({MAX_CHANNELS} channels, "
            f"{MAX_SIDE} pixels a side, {MAX_INPUT_ELEMENTS} values per image)"
        )
    if not isinstance(num_classes, int) or not 0 <= num_classes <= MAX_CLASSES:
        raise ParameterError(f"architecture {name!r}: num_classes {num_classes!r} is past the limit of {MAX_CLASSES}")


def check_arg_limits(name: str, cls: Any, args: dict[str, Any]) -> None:
    """Refuse a registered architecture's size argument outside its limits, before it is built."""
    limits = {**ARG_LIMITS, **getattr(cls, "limits", {})}
    for key, value in args.items():
        if key not in limits:
            continue
        low, high = limits[key]
        if not isinstance(value, int | float) or isinstance(value, bool) or not low <= value <= high:
            raise ParameterError(
                f"architecture {name!r}: {key} = {str(value)[:40]} is outside its limits {low}..{high}"
            )


def create_arch(name: str, *, num_classes: int, input_shape: tuple[int, int, int], **args: Any) -> nn.Module:
    """An architecture by name. Arguments that name a registered attachment (e.g.
    ``frequency={"host": LAYER, "k": K}``) put that module beside its host layer, so a model
    file that carries one rebuilds it like any other layer."""
    plain, attachments = split_attachments(args)
    check_shape_limits(name, num_classes, tuple(input_shape))
    if is_import_path(name):
        net = build_imported(name, plain, num_classes=num_classes, input_shape=tuple(input_shape))
    else:
        cls = ARCHITECTURES.get(name)
        check_arguments(name, cls, plain)
        check_arg_limits(name, cls, plain)
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

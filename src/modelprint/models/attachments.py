"""Add-on modules that sit beside a layer of an architecture, registered by name.

An attachment is a module with dense weights (O, C, kh, kw) that a model carries beside a
host layer; a model card names it among the architecture's arguments, e.g.
``arch_args = {"width": 16, "frequency": {"host": "features.0", "k": 8}}``, and
:func:`~modelprint.models.create_arch` rebuilds it like any other layer. The families that
define attachments register them here, so this layer never imports them; attacks that
touch every weight (pruning, noise, reparametrisation) see them through :class:`Attachment`
and :class:`HostedLayer` alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..errors import ParameterError

# name -> attach(net, input_shape, settings): puts the module in place (in place, in the net).
Attacher = Callable[[nn.Module, tuple[int, int, int], dict[str, Any]], None]
# name -> hosts(net, input_shape, **settings): {layer name: (in channels, out channels)} that can carry it.
HostFinder = Callable[..., dict[str, tuple[int, int]]]
_ATTACHERS: dict[str, Attacher] = {}
_HOSTS: dict[str, HostFinder] = {}


class Attachment(nn.Module):
    """Base of an attached module: its ``weight`` is a dense (O, C, kh, kw) tensor that pruning and
    noise attacks treat like a convolution's (an attacker touches every layer)."""

    weight: nn.Parameter


class HostedLayer(nn.Module):
    """``host(x) + branch(x)``: a convolution with an attachment beside it. Reparametrisation moves
    the two's output channels together."""

    def __init__(self, host: nn.Module, branch: Attachment) -> None:
        super().__init__()
        self.host, self.branch = host, branch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.host(x) + self.branch(x)


def register_attachment(name: str, attacher: Attacher, hosts: HostFinder) -> None:
    """Let model cards name ``name`` among an architecture's arguments: ``attacher`` rebuilds the
    module, ``hosts`` lists the layers that can carry it."""
    if name in _ATTACHERS and _ATTACHERS[name] is not attacher:
        raise ValueError(f"attachment {name!r} is registered twice")
    _ATTACHERS[name], _HOSTS[name] = attacher, hosts


def attachment_hosts(name: str, net: nn.Module, input_shape: tuple[int, int, int], **settings: Any) -> dict:
    """Layers of ``net`` that can carry attachment ``name``: ``{layer: (in channels, out channels)}``."""
    if name not in _HOSTS:
        raise ParameterError(f"unknown attachment {name!r}; known: {', '.join(attachment_names()) or 'none'}")
    return _HOSTS[name](net, input_shape, **settings)


def attachment_names() -> list[str]:
    return sorted(_ATTACHERS)


def split_attachments(args: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(architecture arguments, attachment settings by name) from a card's ``arch_args``."""
    plain = {k: v for k, v in args.items() if k not in _ATTACHERS}
    return plain, {k: v for k, v in args.items() if k in _ATTACHERS}


def attach_all(net: nn.Module, input_shape: tuple[int, int, int], attachments: dict[str, Any]) -> None:
    for name, settings in attachments.items():
        if not isinstance(settings, dict):
            raise ParameterError(f"{name} must be a table of settings, got {settings!r}")
        _ATTACHERS[name](net, input_shape, settings)

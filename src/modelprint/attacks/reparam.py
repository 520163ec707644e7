"""Function-preserving re-parametrisations: the weights change, the function does not
(up to float rounding), so weight-space fingerprints are fooled while every black-box
fingerprint must still match.

``permute``: hidden units are interchangeable. For every layer pair A -> (batch norm,
element-wise activation, pooling, flatten, depthwise conv) -> B whose intermediate channels
feed nothing else, a random permutation P reorders A's output channels (and the per-channel
parameters on the way) and B's input channels: ``B P^T act(P A x) = B act(A x)``.

``scale``: ReLU is positively homogeneous, ``relu(s z) = s relu(z)`` for ``s > 0``. Where
only batch norm, ReLU and pooling lie between A and B, channel c of A (or of its batch
norm) is multiplied by ``s_c`` and B's input channel c divided by it; ``s_c`` is drawn
log-uniformly from [1/spread, spread].

Pairs are found by tracing the network with ``torch.fx``; transformer MLPs (linear1 ->
activation -> linear2) are found by module type, so ViTs are permuted too.

Parameters:
    spread (float, scale only): the largest factor, > 1.

Example::

    twin = ChannelPermute().apply(model, seed=1)   # same logits, different weights
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import fx, nn

from ..data import Dataset
from ..errors import ParameterError
from ..models import ModelprintModel
from ..models.attachments import HostedLayer
from .base import Attack, register_attack

_POOLS = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Dropout, nn.Identity)
_ELEMENTWISE = (nn.ReLU6, nn.GELU, nn.SiLU, nn.Hardswish, nn.Tanh, nn.Sigmoid, nn.LeakyReLU, nn.ELU)
_RELU_FUNCS = (F.relu, torch.relu)
_ELEMENTWISE_FUNCS = (F.gelu, F.relu6, F.silu, torch.tanh, torch.sigmoid, F.hardswish)


@dataclass
class LayerPair:
    """Channels between ``producer`` (dim 0 of its weight) and ``consumer`` (dim 1)."""

    producer: nn.Module
    consumer: nn.Module
    channelwise: list[nn.Module] = field(default_factory=list)  # batch norms, depthwise convs on the way
    block: int = 1  # consumer inputs per channel (a flatten before a linear layer)
    scale_target: nn.Module | None = None  # where a positive factor goes in (None: cannot scale)


def _weight(m: nn.Module) -> torch.Tensor:
    """The dense weight of a layer; of its host for a layer carrying an attachment."""
    return m.host.weight if isinstance(m, HostedLayer) else m.weight


def _is_dense(m: nn.Module) -> bool:
    if isinstance(m, HostedLayer):
        return _is_dense(m.host)
    return isinstance(m, nn.Linear) or (isinstance(m, nn.Conv2d) and m.groups == 1)


class _Tracer(fx.Tracer):
    """Sees a layer that carries an attachment as one layer: host and attachment change together."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, HostedLayer) or super().is_leaf_module(m, qualname)


def _is_depthwise(m: nn.Module) -> bool:
    return isinstance(m, nn.Conv2d) and m.groups == m.in_channels == m.out_channels and m.groups > 1


def _follow(gm: fx.GraphModule, start: fx.Node, calls: dict[str, int]) -> LayerPair | None:
    modules = dict(gm.named_modules())
    producer = modules[start.target]
    pair = LayerPair(producer, producer)
    homogeneous, activated, flattened = True, False, False
    first_norm: nn.Module | None = None
    node = start
    while True:
        users = list(node.users)
        if len(users) != 1:
            return None
        node = users[0]
        if node.op == "call_module":
            m = modules[node.target]
            if calls.get(node.target, 0) > 1 and not isinstance(m, (*_POOLS, nn.ReLU, *_ELEMENTWISE)):
                return None  # a module with weights used twice: changing it changes both uses
            if _is_dense(m) and not _is_depthwise(m):
                pair.consumer = m
                break
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                pair.channelwise.append(m)
                if activated or first_norm is not None:
                    homogeneous = False
                first_norm = first_norm or m
            elif _is_depthwise(m):
                pair.channelwise.append(m)
                homogeneous = False
            elif isinstance(m, nn.ReLU):
                activated = True
            elif isinstance(m, _ELEMENTWISE):
                activated, homogeneous = True, False
            elif not isinstance(m, _POOLS):
                return None
        elif node.op == "call_function" and node.target in _RELU_FUNCS:
            activated = True
        elif node.op == "call_function" and node.target in _ELEMENTWISE_FUNCS:
            activated, homogeneous = True, False
        elif (node.op == "call_method" and node.target == "flatten") or (
            node.op == "call_function" and node.target is torch.flatten
        ):
            flattened = True
        else:
            return None
        if flattened and node.op == "call_module" and not isinstance(modules[node.target], nn.Linear):
            return None
    channels = _weight(producer).shape[0]
    if flattened:
        if not isinstance(pair.consumer, nn.Linear) or pair.consumer.in_features % channels:
            return None
        pair.block = pair.consumer.in_features // channels
    elif _weight(pair.consumer).shape[1] != channels:
        return None
    if homogeneous and activated:
        pair.scale_target = first_norm or producer
    return pair


def layer_pairs(net: nn.Module) -> list[LayerPair]:
    """Every producer/consumer pair whose shared channels can be reordered."""
    pairs: list[LayerPair] = []
    try:
        gm = fx.GraphModule(net, _Tracer().trace(net))
    except Exception:  # not traceable (e.g. data-dependent control flow): type-based pairs only
        gm = None
    if gm is not None:
        calls: dict[str, int] = {}
        for node in gm.graph.nodes:
            if node.op == "call_module":
                calls[node.target] = calls.get(node.target, 0) + 1
        modules = dict(gm.named_modules())
        for node in gm.graph.nodes:
            if node.op == "call_module" and _is_dense(modules[node.target]) and calls[node.target] == 1:
                pair = _follow(gm, node, calls)
                if pair is not None:
                    pairs.append(pair)
    for m in net.modules():
        if isinstance(m, nn.TransformerEncoderLayer):
            relu = m.activation is F.relu or isinstance(m.activation, nn.ReLU)
            pairs.append(LayerPair(m.linear1, m.linear2, scale_target=m.linear1 if relu else None))
    return pairs


def _parts(m: nn.Module) -> list[nn.Module]:
    """The modules whose channels move together: a hosted layer's host and its attachment."""
    return [m.host, m.branch] if isinstance(m, HostedLayer) else [m]


def _permute_pair(pair: LayerPair, perm: torch.Tensor) -> None:
    for m in (*_parts(pair.producer), *pair.channelwise):
        for name in ("weight", "bias", "running_mean", "running_var"):
            t = getattr(m, name, None)
            if isinstance(t, torch.Tensor) and t.ndim >= 1:
                t.copy_(t[perm])
    for part in _parts(pair.consumer):
        w = part.weight
        out = w.shape[0]
        if pair.block > 1:
            w.copy_(w.view(out, -1, pair.block)[:, perm].reshape(out, -1))
        else:
            w.copy_(w[:, perm])


def _scale_pair(pair: LayerPair, s: torch.Tensor) -> None:
    for target in _parts(pair.scale_target):
        for name in ("weight", "bias"):
            t = getattr(target, name, None)
            if isinstance(t, torch.Tensor):
                t.mul_(s.view(-1, *([1] * (t.ndim - 1))))
    for part in _parts(pair.consumer):
        w = part.weight
        out = w.shape[0]
        inv = (1.0 / s).view(1, -1, *([1] * (w.ndim - 2)))
        if pair.block > 1:
            w.copy_((w.view(out, -1, pair.block) / s.view(1, -1, 1)).reshape(out, -1))
        else:
            w.mul_(inv)


@register_attack("permute")
@dataclass(kw_only=True)
class ChannelPermute(Attack):
    """Permute hidden units: reorder each layer pair's intermediate channels; the function is
    unchanged, the weights are not. No arguments.

    Example::

        twin = create_attack("permute").apply(model, seed=1)   # same logits, other weights
    """

    @torch.no_grad()
    def _apply(self, model: ModelprintModel, data: Dataset | None, g: torch.Generator, device: str) -> None:
        pairs = layer_pairs(model.net)
        if not pairs:
            raise ParameterError(f"permute: found no layer pair to permute in {model.card.arch}")
        for pair in pairs:
            _permute_pair(pair, torch.randperm(_weight(pair.producer).shape[0], generator=g))


@register_attack("scale")
@dataclass(kw_only=True)
class ReluScale(Attack):
    """Rescale channels through ReLU: channel c of a layer times ``s_c``, the next layer's input
    channel c divided by it, ``s_c`` log-uniform in [1/spread, spread]; the function is unchanged.

    Arguments:
        spread (float): the largest factor, 4.0.

    Example::

        twin = create_attack("scale", spread=4.0).apply(model, seed=1)
    """

    spread: float = 4.0

    id_params = ("spread",)

    def __post_init__(self) -> None:
        if not self.spread > 1:
            raise ParameterError(f"spread must be > 1, got {self.spread}")

    @torch.no_grad()
    def _apply(self, model: ModelprintModel, data: Dataset | None, g: torch.Generator, device: str) -> None:
        pairs = [p for p in layer_pairs(model.net) if p.scale_target is not None]
        if not pairs:
            raise ParameterError(f"scale: {model.card.arch} has no ReLU-separated layer pair to rescale")
        log_spread = torch.log(torch.tensor(self.spread))
        for pair in pairs:
            u = torch.rand(_weight(pair.producer).shape[0], generator=g) * 2 - 1
            _scale_pair(pair, torch.exp(u * log_spread))

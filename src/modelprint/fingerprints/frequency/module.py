"""The frequency module: a K x K circular convolution beside a host layer, behind a low-pass
projection, and where a model can carry one.

From "Towards the Resistance of Neural Network Fingerprinting to Fine-tuning" (NeurIPS 2025):
a K x K convolution M with circular padding runs in parallel to a host layer, behind a fixed
low-pass projection P of the host's input::

    out = host(x) + M(P(x))

P keeps only the spatial frequencies that are multiples of 1/K cycles per pixel with
|index| <= ``cutoff`` (so P(x) is K-periodic: the grid side must be a multiple of K). The
per-filter K-point DFT of M's weights::

    F^(u,v)[o, c] = sum_{m,n} W[o, c, m, n] exp(-2 pi i (u m + v n) / K)

then splits into the components P lets through (|u|, |v| <= cutoff, modulo K) and the
rest, which never touch the output: the gradient of any loss is exactly zero there, so
plain SGD (momentum and weight decay included) changes them by a common scale at most.
The fingerprint lives in those **invariant** components.

The module registers with the architecture layer as the ``frequency`` attachment, so a model
card with ``arch_args["frequency"] = {"host": LAYER, "k": K, "cutoff": c}`` rebuilds it.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ParameterError
from ...models.attachments import Attachment, HostedLayer, register_attachment


def passband(k: int, cutoff: int) -> torch.Tensor:
    """(k, k) bool: the K-point frequencies (u, v) that P lets through, |u|, |v| <= cutoff mod k."""
    if k < 2 or not 0 <= cutoff < k // 2:
        raise ParameterError(f"need K >= 2 and 0 <= cutoff < K/2, got K={k}, cutoff={cutoff}")
    idx = torch.arange(k)
    near = torch.minimum(idx, k - idx) <= cutoff
    return near[:, None] & near[None, :]


def invariant_mask(k: int, cutoff: int) -> torch.Tensor:
    """(k, k) bool: the components of M's spectrum that no gradient reaches."""
    return ~passband(k, cutoff)


def lowpass_projection(x: torch.Tensor, k: int, cutoff: int) -> torch.Tensor:
    """P(x): keep the DFT bins (j H/K, l W/K) with |j|, |l| <= cutoff of each channel of
    ``x`` (N, C, H, W); H and W must be multiples of K. The result is real and K-periodic."""
    h, w = x.shape[-2:]
    if h % k or w % k:
        raise ParameterError(f"a {h}x{w} input cannot host a K={k} frequency module: the side must be a multiple of K")
    spectrum = torch.fft.fft2(x.double()) * _lowpass_mask(h, w, k, cutoff, str(x.device))
    return torch.fft.ifft2(spectrum).real.to(x.dtype)


@lru_cache(maxsize=32)
def _lowpass_mask(h: int, w: int, k: int, cutoff: int, device: str) -> torch.Tensor:
    """(h, w) bool: the DFT bins P keeps; made once per shape (every forward of a marked model needs it)."""
    keep = torch.zeros(h, w, dtype=torch.bool)
    rows, cols = torch.arange(k) * (h // k), torch.arange(k) * (w // k)
    keep[rows[:, None], cols[None, :]] = passband(k, cutoff)
    return keep.to(device)


def spectrum(weight: torch.Tensor) -> torch.Tensor:
    """Per-filter K-point DFT of (O, C, K, K) weights: complex (O, C, K, K), F[..., u, v]."""
    return torch.fft.fft2(weight.double())


def spectrum_at(weight: torch.Tensor, freqs: list[tuple[int, int]]) -> torch.Tensor:
    """The spectrum of (O, C, K, K) weights at ``freqs``: complex (F, O, C)."""
    spec = spectrum(weight.detach().cpu())
    return torch.stack([spec[..., u, v] for u, v in freqs])


def inverse_spectrum(spec: torch.Tensor) -> torch.Tensor:
    """Weights (O, C, K, K) from a spectrum; the real part (a real filter's spectrum is Hermitian)."""
    return torch.fft.ifft2(spec).real


class FrequencyBranch(Attachment):
    """M(P(x)): a bias-free K x K circular convolution behind the fixed low-pass projection."""

    def __init__(self, in_channels: int, out_channels: int, k: int = 8, cutoff: int = 1) -> None:
        super().__init__()
        passband(k, cutoff)
        self.k, self.cutoff = k, cutoff
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, k, k))
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = lowpass_projection(x, self.k, self.cutoff)
        lo, hi = self.k // 2, self.k - 1 - self.k // 2
        return F.conv2d(F.pad(p, (lo, hi, lo, hi), mode="circular"), self.weight)


class HostedBlock(nn.Module):
    """A transformer block with the module beside it: the block's input patch tokens (B, N, D),
    the class token first, are seen as a D x sqrt(N) x sqrt(N) image; the branch's output
    is added back to the patch tokens as a residual."""

    def __init__(self, host: nn.Module, branch: FrequencyBranch) -> None:
        super().__init__()
        self.host, self.branch = host, branch

    @property
    def self_attn(self) -> nn.Module:  # nn.TransformerEncoder reads its first layer's attention settings
        return self.host.self_attn

    def forward(self, src: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        out = self.host(src, *args, **kwargs)
        patches = src[:, 1:]
        b, n, d = patches.shape
        side = math.isqrt(n)
        grid = patches.transpose(1, 2).reshape(b, d, side, side)
        extra = self.branch(grid).reshape(b, -1, n).transpose(1, 2)
        return torch.cat([out[:, :1], out[:, 1:] + extra], 1)


def _token_grid(tokens: torch.Tensor) -> int:
    """Side of the square grid of patch tokens behind a class token; 0 when there is none."""
    if tokens.dim() != 3:
        return 0
    side = math.isqrt(tokens.shape[1] - 1)
    return side if side > 0 and side * side == tokens.shape[1] - 1 else 0


def hostable_layers(model: nn.Module, input_shape: tuple[int, int, int], k: int = 8) -> dict[str, tuple[int, int]]:
    """Layers that can host a K = ``k`` module, ``{name: (in_channels, out_channels)}``, found
    with one probe forward: convolutions whose output keeps the input's grid (stride 1, same
    padding) and transformer blocks over a square grid of patch tokens, the side a multiple of k."""
    found: dict[str, tuple[int, int]] = {}
    hooks = []

    def probe(name: str):
        def hook(module: nn.Module, args: tuple, out: torch.Tensor) -> None:
            x = args[0]
            if isinstance(module, nn.TransformerEncoderLayer):
                side = _token_grid(x)
                if side and side % k == 0 and out.shape == x.shape:
                    found[name] = (x.shape[2], x.shape[2])
            elif x.dim() == 4 and out.shape[-2:] == x.shape[-2:] and x.shape[-1] % k == 0 and x.shape[-2] % k == 0:
                found[name] = (x.shape[1], out.shape[1])

        return hook

    for name, module in model.named_modules():
        if (isinstance(module, nn.Conv2d) and module.groups == 1) or isinstance(module, nn.TransformerEncoderLayer):
            hooks.append(module.register_forward_hook(probe(name)))
    try:
        was_training = model.training
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *input_shape))
        model.train(was_training)
    finally:
        for h in hooks:
            h.remove()
    return found


def attach(
    model: nn.Module, host: str, input_shape: tuple[int, int, int], *, k: int = 8, cutoff: int = 1, seed: int = 0
) -> FrequencyBranch:
    """Replace the layer named ``host`` by host + frequency branch (in place); returns the branch."""
    layers = hostable_layers(model, input_shape, k)
    if host not in layers:
        options = ", ".join(layers) or "none"
        raise ParameterError(f"layer {host!r} cannot host a K={k} frequency module; layers that can: {options}")
    c_in, c_out = layers[host]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        branch = FrequencyBranch(c_in, c_out, k, cutoff)
    parent_name, _, leaf = host.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    layer = getattr(parent, leaf)
    wrapper = HostedBlock if isinstance(layer, nn.TransformerEncoderLayer) else HostedLayer
    setattr(parent, leaf, wrapper(layer, branch))
    return branch


def branch_of(model: nn.Module, host: str) -> FrequencyBranch | None:
    """The frequency branch beside ``host`` in ``model`` (a ModelprintModel or its net), or None."""
    for prefix in ("net.", ""):
        try:
            layer = model.get_submodule(prefix + host)
        except AttributeError:
            continue
        branch = getattr(layer, "branch", None)
        if isinstance(branch, FrequencyBranch):
            return branch
    return None


SETTINGS = ("host", "k", "cutoff", "aux_class")


def _attach_from_card(net: nn.Module, input_shape: tuple[int, int, int], settings: dict[str, Any]) -> None:
    """Rebuild the module a model card names: ``{"host": LAYER, "k": K, "cutoff": c}``."""
    if not isinstance(settings.get("host"), str):
        raise ParameterError(f"frequency must be a table with a 'host' layer name, got {settings!r}")
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise ParameterError(f"frequency: unknown setting(s) {', '.join(unknown)}; settings: {', '.join(SETTINGS)}")
    attach(net, settings["host"], input_shape, k=int(settings.get("k", 8)), cutoff=int(settings.get("cutoff", 1)))


register_attachment("frequency", _attach_from_card, hostable_layers)

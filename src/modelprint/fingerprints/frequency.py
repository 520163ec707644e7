"""White-box fingerprint in the frequency domain of convolution filters: the module and its invariance.

Construction (DESIGN.md, "Method (white-box)"; paper ``papers/001_…``): a K x K convolution
M with circular padding runs in parallel to a host layer, behind a fixed low-pass
projection P of the host's input::

    out = host(x) + M(P(x))

P keeps only the spatial frequencies that are multiples of 1/K cycles per pixel with
|index| <= ``cutoff`` (so P(x) is K-periodic: the grid side must be a multiple of K). The
per-filter K-point DFT of M's weights::

    F^(u,v)[o, c] = sum_{m,n} W[o, c, m, n] exp(-2 pi i (u m + v n) / K)

then splits into the components P lets through (|u|, |v| <= cutoff, modulo K) and the
rest, which never touch the output: the gradient of any loss is exactly zero there, so
plain SGD (momentum and weight decay included) changes them by a common scale at most.
The fingerprint lives in those **invariant** components.

This file holds the module, the transform, the invariant set, injection (:func:`inject`)
and verification (the ``frequency`` method); the attacks on the mark are in ``attacks/overwrite.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ParameterError
from .base import Evidence, Fingerprint, FingerprintMethod, register_method


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


class FrequencyBranch(nn.Module):
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


class HostedLayer(nn.Module):
    """``host(x) + branch(x)``: the host layer with the frequency module beside it."""

    def __init__(self, host: nn.Module, branch: FrequencyBranch) -> None:
        super().__init__()
        self.host, self.branch = host, branch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.host(x) + self.branch(x)


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


# --- injection -----------------------------------------------------------------------------------------------


def unique_invariant_frequencies(k: int, cutoff: int) -> list[tuple[int, int]]:
    """One (u, v) per conjugate pair {(u, v), (-u, -v)} of the invariant set (a real filter's
    spectrum at (-u, -v) is the conjugate of (u, v), so it carries nothing new), in a fixed order.

    Self-conjugate frequencies ((u, v) = (-u, -v), components 0 and K/2) are left out: there
    the spectrum is real, so a filter of a one-channel host carries one sign, which weight noise
    near zero flips (measured: 2 of 16 filters at noise 0.05 x rms, similarity 0.875)."""
    inv = invariant_mask(k, cutoff)
    out = []
    for u in range(k):
        for v in range(k):
            if inv[u, v] and (u, v) < ((-u) % k, (-v) % k):
                out.append((u, v))
    return out


def key_frequencies(key: int, k: int, cutoff: int, count: int) -> list[tuple[int, int]]:
    """S': ``count`` invariant frequencies chosen by the owner's key (all of them when fewer)."""
    freqs = unique_invariant_frequencies(k, cutoff)
    order = torch.randperm(len(freqs), generator=torch.Generator().manual_seed(key)).tolist()
    return sorted(freqs[i] for i in order[: min(count, len(freqs))])


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


def overwritten_weight(weight: torch.Tensor, how: str, g: torch.Generator) -> torch.Tensor:
    """What an attacker may put in the module's place: ``replace`` (fresh random weights of the
    same norm), ``spectrum-noise`` (complex noise on every frequency, half the spectrum's norm) or
    ``weight-noise`` (Gaussian noise at 0.5x the weights' norm)."""
    w = weight.detach()
    noise = torch.randn(w.shape, generator=g).to(w)
    if how == "replace":
        return noise * (w.norm() / noise.norm())
    if how == "weight-noise":
        return w + noise * (0.5 * w.norm() / noise.norm())
    if how == "spectrum-noise":
        spec = spectrum(w)
        cn = torch.complex(torch.randn(spec.shape, generator=g), torch.randn(spec.shape, generator=g)).to(spec)
        noisy = spec + cn * (0.5 * spec.abs().norm() / cn.abs().norm())
        return inverse_spectrum(noisy).to(w)
    raise ParameterError(f"overwrite must be replace, spectrum-noise or weight-noise, got {how!r}")


OVERWRITES = ("replace", "spectrum-noise", "weight-noise")


def _transfer_weights(source: nn.Module, marked: nn.Module, host: str) -> None:
    """Copy the source's weights into the marked network: the hosted layer's under ``host.host``,
    and the first rows of a classifier that grew an auxiliary class."""
    own = marked.state_dict()
    prefix = f"net.{host}."
    for name, value in source.state_dict().items():
        target = prefix + "host." + name[len(prefix) :] if name.startswith(prefix) else name
        if target not in own:
            raise ParameterError(f"cannot place the source's {name} in the marked model")
        if own[target].shape == value.shape:
            own[target] = value.clone()
        elif own[target].shape[1:] == value.shape[1:] and own[target].shape[0] == value.shape[0] + 1:
            own[target][: len(value)] = value  # the auxiliary class keeps its fresh row
        else:
            raise ParameterError(f"{name}: shape {tuple(value.shape)} does not fit {tuple(own[target].shape)}")
    marked.load_state_dict(own)


def _key_filters(shape: torch.Size, g: torch.Generator) -> torch.Tensor:
    """The key's filters (O, C, K, K): Gaussian, scaled by 1/sqrt(fan-in), drawn from ``g``."""
    return torch.randn(shape, generator=g) / math.sqrt(shape[1] * shape[2] * shape[3])


def _hosting_copy(model: Any, settings: dict[str, Any], key: int) -> tuple[Any, FrequencyBranch]:
    """The unmarked ``model``'s weights in a network that carries a module beside ``settings["host"]``
    (a (C+1)-th class when ``settings["aux_class"]``); returns it and the module."""
    from ..models import create_model

    card = model.card
    if "frequency" in card.arch_args:
        raise ParameterError("the model already carries a frequency module; mark the unmarked model")
    classes = card.num_classes + (1 if settings["aux_class"] else 0)
    marked = create_model(card.arch, num_classes=classes, input_shape=card.input_shape, mean=card.mean, std=card.std,
                          seed=key, **{**card.arch_args, "frequency": settings})  # fmt: skip
    _transfer_weights(model, marked, settings["host"])
    return marked, branch_of(marked, settings["host"])


def neutral_mark(model: Any, host: str, key: int, *, k: int = 8, cutoff: int = 1) -> Any:
    """A copy of the unmarked ``model`` with a frequency module beside ``host`` that holds
    ``key``'s filters with the passband zeroed: its output is exactly zero, so the copy computes
    what ``model`` computes, and its invariant components are those :func:`inject` would leave
    after any amount of SGD training (up to the common scale the similarity cancels).

    It stands for an independent owner who marked their own model with another key: the
    calibration null of the frequency fingerprint is fitted on such models."""

    card = model.card
    settings = {"host": host, "k": k, "cutoff": cutoff, "aux_class": False}
    marked, branch = _hosting_copy(model, settings, key)
    with torch.no_grad():
        spec = spectrum(_key_filters(branch.weight.shape, torch.Generator().manual_seed(key)))
        spec[..., passband(k, cutoff)] = 0
        branch.weight.copy_(inverse_spectrum(spec).to(branch.weight))
    for attr in ("classes", "dataset", "split", "training", "accuracy"):
        setattr(marked.card, attr, getattr(card, attr))
    recipe = {"mark": "frequency-neutral", **settings, "key": key}
    marked.card.lineage = [*card.lineage, {"parent_sha256": card.weights_sha256, "recipe": recipe}]
    marked.eval()
    return marked


def inject(
    source: Any,
    data: Any,
    *,
    host: str,
    key: int,
    k: int = 8,
    cutoff: int = 1,
    aux_class: bool = True,
    beta: float = 1.0,
    overwrites: tuple[str, ...] | list[str] = ("replace",),
    epochs: int = 20,
    lr: float = 0.01,
    batch_size: int = 64,
    test: Any = None,
    progress: bool = True,
) -> Any:
    """The source with a key-initialised frequency module beside ``host``, trained with SGD
    (momentum 0.9, weight decay 5e-4) on ``data`` with CE + beta * L_attack: with
    ``aux_class`` the network gets a (C+1)-th class and predictions made with an overwritten
    module (``overwrites``, a subset of :data:`OVERWRITES`, in turn) are pushed into it, so
    overwriting costs accuracy. Replacement alone is the default: on digits, adding the noise
    overwrites cost 7-40 points of clean accuracy (the network must then notice a small
    low-frequency change of its first layer), replacement alone 1.7 (BENCHMARKS.md)."""
    import time

    from torch.func import functional_call

    from ..progress import progress_bar

    card = source.card
    overwrites = tuple(overwrites)
    if not overwrites or any(o not in OVERWRITES for o in overwrites):
        raise ParameterError(f"overwrites must be a non-empty subset of {', '.join(OVERWRITES)}, got {overwrites!r}")
    settings = {"host": host, "k": k, "cutoff": cutoff, "aux_class": aux_class}
    marked, branch = _hosting_copy(source, settings, key)
    g = torch.Generator().manual_seed(key)
    with torch.no_grad():  # the key's filters; their invariant components are the mark
        branch.weight.copy_(_key_filters(branch.weight.shape, g))
    marked.card.classes = (*card.classes, "overwritten-module") if aux_class and card.classes else card.classes
    marked.card.dataset, marked.card.split = card.dataset, card.split
    opt = torch.optim.SGD(marked.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    weight_name = next(n for n, p in marked.named_parameters() if p is branch.weight)
    aux = torch.full((batch_size,), card.num_classes, dtype=torch.long)
    started = time.perf_counter()
    marked.train()
    with progress_bar(epochs, "frequency mark", progress) as bar:
        for epoch in range(epochs):
            for step, idx in enumerate(torch.randperm(len(data), generator=g).split(batch_size)):
                x, y = data.x[idx], data.y[idx]
                loss = F.cross_entropy(marked(x), y)
                if aux_class and beta > 0:
                    how = overwrites[(epoch + step) % len(overwrites)]
                    fake = overwritten_weight(branch.weight, how, g)
                    # The overwritten pass must not leak into BatchNorm's running statistics: at test
                    # time the network sees its real module, and those statistics describe it.
                    scratch = {name: b.detach().clone() for name, b in marked.named_buffers()}
                    logits = functional_call(marked, {**scratch, weight_name: fake}, (x,))
                    loss = loss + beta * F.cross_entropy(logits, aux[: len(x)])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            bar.update(1)
    marked.eval()
    recipe = {"mark": "frequency", **settings, "key": key, "beta": beta, "overwrites": list(overwrites),
              "epochs": epochs, "lr": lr}  # fmt: skip
    marked.card.lineage = [*card.lineage, {"parent_sha256": card.weights_sha256, "recipe": recipe}]
    marked.card.train_seconds = round(time.perf_counter() - started, 2)
    if test is not None:
        from ..train import accuracy

        marked.card.accuracy = round(accuracy(marked, test), 6)
    return marked


# --- verification --------------------------------------------------------------------------------------------


def _unit(z: torch.Tensor) -> torch.Tensor:
    return z / z.abs().pow(2).sum(-1, keepdim=True).sqrt().clamp_min(1e-12)


def align_channels(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``b`` (F, O, C) complex with its output and input channels permuted to best match ``a``
    (Hungarian matching, scipy): input channels on permutation-invariant magnitude profiles
    first, then output channels on complex cosine. Undoes a channel-permutation attack."""
    from scipy.optimize import linear_sum_assignment

    def profile(z: torch.Tensor) -> torch.Tensor:  # per input channel, sorted over output channels
        m = z.abs().permute(2, 0, 1).sort(-1).values.flatten(1)
        return m / m.norm(dim=1, keepdim=True).clamp_min(1e-12)

    cost = torch.cdist(profile(a).double(), profile(b).double())
    _, cols = linear_sum_assignment(cost.numpy())
    b = b[:, :, torch.as_tensor(cols)]
    fa, fb = _unit(a.permute(1, 0, 2).flatten(1)), _unit(b.permute(1, 0, 2).flatten(1))
    _, cols = linear_sum_assignment(-(fa @ fb.conj().T).real.numpy())
    return b[:, torch.as_tensor(cols), :]


def per_frequency_similarity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(F,) mean over filters o of Re<a[f, o], b[f, o]> / (|a[f, o]| |b[f, o]|): scale cancels."""
    return (_unit(a) * _unit(b).conj()).sum(-1).real.mean(-1)


@register_method("frequency")
@dataclass(kw_only=True)
class FrequencyFingerprint(FingerprintMethod):
    """White-box fingerprint: the key's spectra at S' in a marked model's frequency module.

    ``generate`` reads the mark from a model :func:`inject` made (``n`` = |S'|, at most the
    invariant frequencies up to conjugation; the ``seed`` is the owner's key). Evidence is
    the per-frequency similarity after channel alignment; the statistic, the fingerprint
    score, is the fraction above ``tau``. A suspect without the module gives similarity 0.

    Parameters: tau (float): similarity threshold per frequency, 0.98 (DESIGN).

    Example::

        marked = inject(load_model("owner.safetensors"), owner_data, host="features.0", key=7)
        fp = create_method("frequency").generate(marked, n=16, seed=7)
    """

    tau: float = 0.98
    evidence_kind: ClassVar[str] = "components"
    statistic_name: ClassVar[str] = "fingerprint_score"
    null_family: ClassVar[str] = "scores"
    sequential: ClassVar[bool] = False

    def __post_init__(self) -> None:
        if not -1 <= self.tau <= 1:
            raise ParameterError(f"tau must be in [-1, 1], got {self.tau}")

    def items(self, fp: Fingerprint) -> int:
        return len(fp.extra["freqs"])

    def statistic(self, values: np.ndarray) -> float:
        return float(np.mean(np.asarray(values) > self.tau))

    def reference_model(self, fp: Fingerprint, model: Any, seed: int) -> Any:
        """An independent model marked by an independent owner: an output-neutral module with key
        ``seed`` (never the fingerprint's own) beside the same host, where the model has it
        (:func:`neutral_mark`); an unmarked model of another architecture stays as it is."""
        host, k, cutoff = fp.meta["host"], int(fp.meta["k"]), int(fp.meta["cutoff"])
        if "frequency" in model.card.arch_args:
            return model
        if host not in hostable_layers(model.net, tuple(model.card.input_shape), k):
            return model
        key = seed if seed != fp.meta.get("seed") else seed + 1
        return neutral_mark(model, host, key, k=k, cutoff=cutoff)

    def _generate(
        self, model: Any, data: Any, *, n: int, seed: int, device: str, progress: bool
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor], dict[str, Any]]:
        settings = model.card.arch_args.get("frequency")
        if not settings:
            raise ParameterError(
                "this model carries no frequency module: mark it first with "
                "`modelprint fingerprint create MODEL --method frequency --host LAYER --key KEY` "
                "(which trains the mark in; `modelprint list --hosts ARCH` shows the layers)"
            )
        k, cutoff = int(settings.get("k", 8)), int(settings.get("cutoff", 1))
        freqs = key_frequencies(seed, k, cutoff, n)
        at = spectrum_at(branch_of(model, settings["host"]).weight, freqs)
        empty = torch.zeros((0, *model.card.input_shape))
        extra = {"freqs": torch.tensor(freqs), "spectrum_real": at.real.float(), "spectrum_imag": at.imag.float()}
        # num_classes None: weights are compared, not outputs, so a suspect's class count is no obstacle.
        info = {"host": settings["host"], "k": k, "cutoff": cutoff, "frequencies": len(freqs), "num_classes": None}
        return empty, torch.zeros(0, dtype=torch.long), extra, info

    def _evidence(self, fp: Fingerprint, suspect: Any, start: int, stop: int) -> Evidence:
        freqs = fp.extra["freqs"].tolist()
        a = torch.complex(fp.extra["spectrum_real"].double(), fp.extra["spectrum_imag"].double())
        branch = branch_of(suspect, fp.meta["host"])
        if branch is None or tuple(branch.weight.shape[:2]) != tuple(a.shape[1:]) or branch.k != fp.meta["k"]:
            return Evidence(np.zeros(stop - start), "components", 0)  # nothing of the mark to compare
        b = spectrum_at(branch.weight, freqs)
        sims = per_frequency_similarity(a, align_channels(a, b))
        return Evidence(sims[start:stop].numpy(), "components", 0)

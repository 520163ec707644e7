"""Marking: train a key's filters into a frequency module beside a host layer (:func:`inject`),
the output-neutral mark of an independent owner (:func:`neutral_mark`), and what an attacker
may put in the module's place (:func:`overwritten_weight`)."""

from __future__ import annotations

import math
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ...errors import ParameterError
from ...models import create_model
from ...progress import progress_bar
from ...train import accuracy
from .module import FrequencyBranch, branch_of, invariant_mask, inverse_spectrum, passband, spectrum


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
# What :func:`inject` takes besides the source, its data and the key: the settings a user,
# a zoo spec's ``mark`` table and ``fingerprint create --mark`` may give.
MARK_SETTINGS = ("host", "k", "cutoff", "aux_class", "beta", "overwrites", "epochs", "lr", "batch_size")


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
    card = model.card
    if "frequency" in card.arch_args:
        raise ParameterError("the model already carries a frequency module; mark the unmarked model")
    classes = card.num_classes + (1 if settings["aux_class"] else 0)
    marked = create_model(
        card.arch,
        num_classes=classes,
        input_shape=card.input_shape,
        mean=card.mean,
        std=card.std,
        seed=key,
        **{**card.arch_args, "frequency": settings},
    )
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


def _train_mark(
    marked: Any,
    branch: Any,
    data: Any,
    g: torch.Generator,
    *,
    aux_label: int | None,
    beta: float,
    overwrites: tuple[str, ...],
    epochs: int,
    lr: float,
    batch_size: int,
    progress: bool,
) -> None:
    """SGD on CE + beta * CE(overwritten pass, the extra class), as :func:`inject` describes."""
    opt = torch.optim.SGD(marked.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    weight_name = next(n for n, p in marked.named_parameters() if p is branch.weight)
    aux = torch.full((batch_size,), -1 if aux_label is None else aux_label, dtype=torch.long)
    marked.train()
    with progress_bar(epochs, "frequency mark", progress) as bar:
        for epoch in range(epochs):
            for step, idx in enumerate(torch.randperm(len(data), generator=g).split(batch_size)):
                x, y = data.x[idx], data.y[idx]
                loss = F.cross_entropy(marked(x), y)
                if aux_label is not None and beta > 0:
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
    started = time.perf_counter()
    training = {"epochs": epochs, "lr": lr, "batch_size": batch_size, "progress": progress}
    aux_label = card.num_classes if aux_class else None  # the extra class overwritten passes are pushed into
    _train_mark(marked, branch, data, g, aux_label=aux_label, beta=beta, overwrites=overwrites, **training)
    marked.eval()
    recipe = {
        "mark": "frequency",
        **settings,
        "key": key,
        "beta": beta,
        "overwrites": list(overwrites),
        "epochs": epochs,
        "lr": lr,
    }
    marked.card.lineage = [*card.lineage, {"parent_sha256": card.weights_sha256, "recipe": recipe}]
    marked.card.train_seconds = round(time.perf_counter() - started, 2)
    if test is not None:
        marked.card.accuracy = round(accuracy(marked, test), 6)
    return marked

"""Attacks on the white-box frequency mark.

``overwrite``: put something else in the frequency module's place, ``how`` = ``replace``
(fresh random weights of the same norm), ``spectrum-noise`` (complex noise at half the
spectrum's norm) or ``weight-noise`` (Gaussian noise at 0.5x the weights' norm). The mark is
gone; what it costs depends on whether the owner trained with L_attack.

``spectral-reset``: the adaptive attack. Zero exactly the components of the module's
spectrum that the low-pass projection makes gradient-free: no output depends on them, so
the model's function is unchanged to float precision and the mark is erased.

Both act on every frequency module in the model and refuse a model without one.

Example::

    erased = create_attack("spectral-reset").apply(marked)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...attacks.base import Attack, register_attack
from ...data import Dataset
from ...errors import ParameterError
from ...models import ModelprintModel
from .marking import OVERWRITES, overwritten_weight
from .module import FrequencyBranch, invariant_mask, inverse_spectrum, spectrum


def _branches(model: ModelprintModel, attack: str) -> list[FrequencyBranch]:
    found = [m for m in model.modules() if isinstance(m, FrequencyBranch)]
    if not found:
        raise ParameterError(f"{attack}: the model carries no frequency module (nothing to overwrite)")
    return found


@register_attack("overwrite")
@dataclass(kw_only=True)
class Overwrite(Attack):
    """Put something else in the frequency module's place: ``replace`` (fresh random weights
    of the same norm), ``spectrum-noise`` or ``weight-noise``. Refuses a model without a module.

    Arguments:
        how (str): "replace", "spectrum-noise" or "weight-noise".

    Example::

        stolen = create_attack("overwrite", how="replace").apply(marked)
    """

    how: str = "replace"
    id_params = ("how",)

    def __post_init__(self) -> None:
        if self.how not in OVERWRITES:
            raise ParameterError(f"how must be one of {', '.join(OVERWRITES)}, got {self.how!r}")

    def _apply(self, model: ModelprintModel, data: Dataset | None, g: torch.Generator, device: str) -> None:
        with torch.no_grad():
            for branch in _branches(model, self.name):
                branch.weight.copy_(overwritten_weight(branch.weight, self.how, g))


@register_attack("spectral-reset")
@dataclass(kw_only=True)
class SpectralReset(Attack):
    """The adaptive attack: zero exactly the gradient-free components of the module's spectrum;
    the function is unchanged to float precision, the mark is erased. No arguments.

    Example::

        erased = create_attack("spectral-reset").apply(marked)
    """

    def _apply(self, model: ModelprintModel, data: Dataset | None, g: torch.Generator, device: str) -> None:
        with torch.no_grad():
            for branch in _branches(model, self.name):
                spec = spectrum(branch.weight)
                spec[..., invariant_mask(branch.k, branch.cutoff).to(spec.device)] = 0
                branch.weight.copy_(inverse_spectrum(spec).to(branch.weight))


@register_attack("nullspace-reset")
@dataclass(kw_only=True)
class NullspaceReset(Attack):
    """The adaptive attack without knowing the construction: find, with gradients alone, the
    directions of each filter of the frequency module that its output depends on, and keep
    only those (``W[o] <- W[o] V_r^T V_r``, ``V_r`` the right singular vectors of the stacked
    gradients with singular value above ``rtol`` times the largest).

    It needs no P, K or cutoff: the gradient of a random projection of the module's output
    with respect to one filter is a combination of the input patches that filter sees, and
    ``samples`` of them span every direction an output can depend on. So a secret projection
    would not protect the mark either.

    Parameters: samples (int): gradients drawn, at least the filter size C x K x K to span it
    (default 0: twice that); rtol (float): relative singular-value cut-off, 1e-5.
    Data: ``attacker`` images (the module's inputs on real data).

    Example::

        erased = create_attack("nullspace-reset").apply(marked, attacker_data, seed=0)
    """

    samples: int = 0
    rtol: float = 1e-5
    needs_data = True
    default_split = "attacker"

    def __post_init__(self) -> None:
        if self.samples < 0 or not 0 < self.rtol < 1:
            raise ParameterError(f"need samples >= 0 and 0 < rtol < 1, got {self.samples}, {self.rtol}")

    def _apply(self, model: ModelprintModel, data: Dataset | None, g: torch.Generator, device: str) -> None:
        for branch in _branches(model, self.name):
            seen: list[torch.Tensor] = []
            hook = branch.register_forward_hook(lambda _m, args, _out, seen=seen: seen.append(args[0].detach()))
            size = branch.weight[0].numel()
            samples = self.samples or 2 * size
            idx = torch.randint(0, len(data), (samples,), generator=g)
            try:
                model.eval()
                with torch.no_grad():
                    model(data.x[idx].to(device))
            finally:
                hook.remove()
            inputs = seen[0]
            grads = []
            w = branch.weight
            for i in range(samples):  # filter 0 is as good as any: every filter sees the same patches
                out = branch(inputs[i : i + 1])[:, 0]
                r = torch.randn(out.shape, generator=g).to(out)
                (grad,) = torch.autograd.grad((out * r).sum(), w)
                grads.append(grad[0].flatten())
            _, s, vh = torch.linalg.svd(torch.stack(grads).double(), full_matrices=False)
            keep = vh[s > self.rtol * s[0]]
            with torch.no_grad():
                flat = w.detach().flatten(1).double()
                w.copy_((flat @ keep.T @ keep).reshape(w.shape).to(w))

"""Attacks on the white-box frequency mark (DESIGN, "Method (white-box)"; issue 12).

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

from ..data import Dataset
from ..errors import ParameterError
from ..models import ModelprintModel
from .base import Attack, register_attack


def _branches(model: ModelprintModel, attack: str) -> list:
    from ..fingerprints.frequency import FrequencyBranch

    found = [m for m in model.modules() if isinstance(m, FrequencyBranch)]
    if not found:
        raise ParameterError(f"{attack}: the model carries no frequency module (nothing to overwrite)")
    return found


@register_attack("overwrite")
@dataclass(kw_only=True)
class Overwrite(Attack):
    how: str = "replace"
    id_params = ("how",)

    def __post_init__(self) -> None:
        from ..fingerprints.frequency import OVERWRITES

        if self.how not in OVERWRITES:
            raise ParameterError(f"how must be one of {', '.join(OVERWRITES)}, got {self.how!r}")

    def _apply(self, model: ModelprintModel, data: Dataset | None, g: torch.Generator, device: str) -> None:
        from ..fingerprints.frequency import overwritten_weight

        with torch.no_grad():
            for branch in _branches(model, self.name):
                branch.weight.copy_(overwritten_weight(branch.weight, self.how, g))


@register_attack("spectral-reset")
@dataclass(kw_only=True)
class SpectralReset(Attack):
    def _apply(self, model: ModelprintModel, data: Dataset | None, g: torch.Generator, device: str) -> None:
        from ..fingerprints.frequency import invariant_mask, inverse_spectrum, spectrum

        with torch.no_grad():
            for branch in _branches(model, self.name):
                spec = spectrum(branch.weight)
                spec[..., invariant_mask(branch.k, branch.cutoff).to(spec.device)] = 0
                branch.weight.copy_(inverse_spectrum(spec).to(branch.weight))

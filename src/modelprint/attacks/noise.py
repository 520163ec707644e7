"""Weight noising (Yang et al. 2022, as in FingerBench): add Gaussian noise to every conv
and linear weight, scaled to that layer's own weights, ``W += sigma * rms(W) * N(0, 1)``
with ``rms(W) = ||W||_2 / sqrt(numel(W))``; FingerBench then fine-tunes (chain a
``finetune`` step, as the zoo specs do).

Parameters:
    sigma (float): noise strength relative to each layer's RMS weight (>= 0).

Example::

    noisy = WeightNoise(sigma=0.1).apply(load_model("owner.safetensors"), seed=3)
    save_model(noisy, "owner-noise0.1.safetensors")
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..data import Dataset
from ..errors import ParameterError
from ..models import ModelprintModel
from .base import Attack, register_attack
from .prune import prunable_weights


@register_attack("noise")
@dataclass(kw_only=True)
class WeightNoise(Attack):
    """Weight noising (Yang et al. 2022): ``W += sigma * rms(W) * N(0, 1)`` on every conv and
    linear weight (attached modules included).

    Arguments:
        sigma (float): noise relative to each layer's RMS weight, 0.1.

    Example::

        noisy = create_attack("noise", sigma=0.1).apply(load_model("owner.safetensors"), seed=3)
    """

    sigma: float = 0.1

    id_params = ("sigma",)
    strength = "sigma"

    def __post_init__(self) -> None:
        if not self.sigma >= 0:
            raise ParameterError(f"sigma must be >= 0, got {self.sigma}")

    @torch.no_grad()
    def _apply(self, model: ModelprintModel, data: Dataset | None, g: torch.Generator, device: str) -> None:
        for w in prunable_weights(model):
            rms = w.norm() / w.numel() ** 0.5
            w.add_(torch.randn(w.shape, generator=g) * (self.sigma * rms))

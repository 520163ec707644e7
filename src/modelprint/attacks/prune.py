"""Unstructured pruning (Han et al. 2015): zero the fraction ``rate`` of conv and linear
weights with the smallest magnitude, over the whole network (``scope="global"``) or
layer by layer (``scope="layer"``); ``criterion="random"`` zeros random weights
instead (the paper repeats random pruning 5 times per rate).

Parameters:
    rate (float): fraction of prunable weights set to zero, in [0, 1].
    scope (str): "global" or "layer".
    criterion (str): "magnitude" or "random".

Example::

    pruned = MagnitudePrune(rate=0.5).apply(load_model("owner.safetensors"))
    save_model(pruned, "owner-prune50.safetensors")
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..data import Dataset
from ..errors import ParameterError
from ..models import ModelprintModel
from ..models.attachments import Attachment
from .base import Attack, register_attack


def prunable_weights(model: nn.Module) -> list[torch.Tensor]:
    """Weights of conv and linear layers (biases and norm layers are left alone), the white-box
    attached modules' dense weights included (:class:`~modelprint.models.attachments.Attachment`):
    an attacker prunes or noises every layer."""
    return [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear, Attachment))]


def _zero_smallest(scores: torch.Tensor, count: int) -> torch.Tensor:
    """Boolean keep-mask that drops exactly ``count`` entries with the lowest scores."""
    keep = torch.ones(scores.numel(), dtype=torch.bool)
    if count > 0:
        keep[torch.topk(scores.flatten(), count, largest=False).indices] = False
    return keep.view_as(scores)


@register_attack("prune")
@dataclass(kw_only=True)
class MagnitudePrune(Attack):
    """Unstructured pruning (Han et al. 2015): zero the fraction ``rate`` of conv and linear
    weights with the smallest magnitude (or at random).

    Arguments:
        rate (float): in [0, 1], 0.5. scope (str): "global" or "layer". criterion (str):
        "magnitude" or "random".

    Example::

        pruned = create_attack("prune", rate=0.5).apply(load_model("owner.safetensors"))
    """

    rate: float = 0.5
    scope: str = "global"
    criterion: str = "magnitude"

    id_params = ("rate",)
    strength = "rate"

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ParameterError(f"rate must be in [0, 1], got {self.rate}")
        if self.scope not in ("global", "layer"):
            raise ParameterError(f"scope must be global or layer, got {self.scope!r}")
        if self.criterion not in ("magnitude", "random"):
            raise ParameterError(f"criterion must be magnitude or random, got {self.criterion!r}")

    def _scores(self, w: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        return w.detach().abs() if self.criterion == "magnitude" else torch.rand(w.shape, generator=g)

    @torch.no_grad()
    def _apply(self, model: ModelprintModel, data: Dataset | None, g: torch.Generator, device: str) -> None:
        weights = prunable_weights(model)
        if self.scope == "layer":
            for w in weights:
                w.mul_(_zero_smallest(self._scores(w, g), round(self.rate * w.numel())))
            return
        scores = torch.cat([self._scores(w, g).flatten() for w in weights])
        keep = _zero_smallest(scores, round(self.rate * scores.numel()))
        offset = 0
        for w in weights:
            w.mul_(keep[offset : offset + w.numel()].view_as(w))
            offset += w.numel()

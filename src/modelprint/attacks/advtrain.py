"""Adversarial training as FingerBench runs it (after Lukas et al. 2021): make PGD
adversarial examples (Madry et al. 2018, L-inf, true labels) for a fraction ``p`` of the
fine-tuning data, add them to it, and fine-tune all layers on the augmented set.
The examples are made once, against the model being attacked.

Parameters:
    p (float): fraction of the fine-tuning data turned adversarial, in (0, 1].
    eps (float): L-inf radius in [0, 1] input space (8/255 on CIFAR).
    alpha (float): PGD step size.
    steps (int): PGD steps.
    epochs, lr, batch_size, optimizer, augment: the fine-tuning run.

Example::

    robust = AdversarialTraining(p=0.5).apply(load_model("owner.safetensors"), tune_data)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..data import Dataset
from ..errors import ParameterError
from ..models import ModelprintModel
from ..train import TrainingSettings, train
from .base import Attack, register_attack


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    alpha: float,
    steps: int,
    g: torch.Generator,
    batch_size: int = 256,
) -> torch.Tensor:
    """Untargeted L-inf PGD with a random start: ``x' = clip(x' + alpha * sign(grad CE))``
    projected to the eps-ball around ``x`` and to [0, 1]. Shapes: x (N,C,H,W), y (N,)."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(x), batch_size):
        xb, yb = x[i : i + batch_size].to(device), y[i : i + batch_size].to(device)
        start = (torch.rand(xb.shape, generator=g) * 2 - 1).to(device) * eps
        adv = (xb + start).clamp(0, 1)
        for _ in range(steps):
            adv.requires_grad_(True)
            (grad,) = torch.autograd.grad(F.cross_entropy(model(adv), yb), adv)
            adv = adv.detach() + alpha * grad.sign()
            adv = torch.min(torch.max(adv, xb - eps), xb + eps).clamp(0, 1)
        out.append(adv.detach().cpu())
    return torch.cat(out)


@register_attack("advtrain")
@dataclass(kw_only=True)
class AdversarialTraining(TrainingSettings, Attack):
    """Adversarial training (after Lukas et al. 2021): PGD examples for a fraction ``p`` of the
    fine-tuning data, then all layers fine-tuned on the augmented set.

    Arguments:
        p (float): 0.5. eps (float): L-inf radius, 8/255. alpha (float): PGD step, 2/255.
        steps (int): 7. epochs, lr, batch_size, optimizer, augment: the fine-tuning run.

    Example::

        robust = create_attack("advtrain", p=0.5).apply(load_model("owner.safetensors"), tune_data)
    """

    p: float = 0.5
    eps: float = 8 / 255
    alpha: float = 2 / 255
    steps: int = 7

    needs_data = True
    default_split = "tune"
    id_params = ("p",)
    strength = "p"

    def __post_init__(self) -> None:
        if not 0.0 < self.p <= 1.0:
            raise ParameterError(f"p must be in (0, 1], got {self.p}")
        if not (0.0 <= self.eps <= 1.0 and self.alpha > 0 and self.steps >= 1):
            raise ParameterError("eps must be in [0, 1], alpha > 0 and steps >= 1")
        self.train_config()

    def _apply(self, model: ModelprintModel, data: Dataset | None, g: torch.Generator, device: str) -> None:
        chosen = torch.randperm(len(data), generator=g)[: max(1, round(self.p * len(data)))]
        model.to(device)
        adv = pgd(model, data.x[chosen], data.y[chosen], eps=self.eps, alpha=self.alpha, steps=self.steps, g=g)
        augmented = Dataset(
            torch.cat([data.x, adv]), torch.cat([data.y, data.y[chosen]]), data.classes, data.spec, data.split
        )
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=g))
        train(model, augmented, self.train_config(), seed=seed, device=device, progress=False, record=False)

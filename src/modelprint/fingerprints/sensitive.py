"""Sensitive samples (He, Zhang and Lee, "Sensitive-sample fingerprinting of deep neural
networks", CVPR 2019): inputs whose output moves the most when the weights move, so that any
change to the model shows in its answers.

Each query starts from an owner image x and climbs (signed-gradient steps of size alpha,
kept in [0, 1]) the sensitivity of the source's top logit to its weights::

    S(x) = || d g_c(x) / d W ||_2^2,   c = the source's class for the starting image

which needs the gradient of a gradient (double backpropagation). The paper verifies by
comparing the full output vector; on the evidence contract the evidence is the label, like
the other query sets. The paper is explicit that this makes pruned or fine-tuned copies fail
("a change to the model is detected"): the characteristic-example paper measured 0.04 %
robustness on pruned copies. Sensitive samples are a tamper check, here as a baseline.

Parameters:
    steps (int): 100 ascent steps; alpha (float): step size per pixel, 0.01 (our choices: the
        paper's optimiser settings are not in our sources).

Example::

    fp = create_method("sensitive").generate(source, owner_data, n=100, seed=0)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from ..data import Dataset
from ..errors import ParameterError
from ..models import ModelprintModel
from ..progress import progress_bar
from .base import FingerprintMethod, owner_images, register_method


def weight_sensitivity(model: ModelprintModel, x: torch.Tensor, c: torch.Tensor, *, create_graph: bool = False):
    """Per example ``||d g_c(x) / d W||^2`` over every trainable weight (N,), one example at a time."""
    params = [p for p in model.parameters() if p.requires_grad]
    out = []
    for xi, ci in zip(x, c):
        logit = model(xi[None])[0, ci]
        grads = torch.autograd.grad(logit, params, create_graph=create_graph)
        out.append(sum(gr.pow(2).sum() for gr in grads))
    return torch.stack(out)


@register_method("sensitive")
@dataclass(kw_only=True)
class SensitiveSamples(FingerprintMethod):
    """Sensitive samples (He, Zhang and Lee, CVPR 2019): owner images climbed to where the
    source's top logit is most sensitive to its weights; a tamper check, here as a baseline.

    Arguments:
        steps (int): 100 signed-gradient ascent steps. alpha (float): step size per pixel, 0.01.

    Shape: queries (n, C, H, W) in [0, 1], labels (n,).

    Example::

        fp = create_method("sensitive").generate(source, owner_data, n=100, seed=0)
    """

    paper: ClassVar[str] = 'He, Zhang and Lee, "Sensitive-Sample Fingerprinting of Deep Neural Networks", CVPR 2019'

    steps: int = 100
    alpha: float = 0.01

    def __post_init__(self) -> None:
        if self.steps < 1 or self.alpha <= 0:
            raise ParameterError(f"need steps >= 1 and alpha > 0, got {self.steps}, {self.alpha}")

    def _generate(
        self, model: ModelprintModel, data: Dataset | None, *, n: int, seed: int, device: str, progress: bool
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor], dict[str, Any]]:
        x = owner_images(model, data, n, seed).clone().to(device)
        c = model.predict(x).to(device)
        model.requires_grad_(True)  # the sensitivity is a gradient with respect to every weight
        start = weight_sensitivity(model, x, c).detach()
        with progress_bar(self.steps, "sensitive samples", progress) as bar:
            for _ in range(self.steps):
                x.requires_grad_(True)
                s = weight_sensitivity(model, x, c, create_graph=True)
                (grad,) = torch.autograd.grad(s.sum(), x)
                x = (x.detach() + self.alpha * grad.sign()).clamp_(0, 1)
                bar.update(1)
        final = weight_sensitivity(model, x, c).detach()
        info = {
            "sensitivity_start": round(float(start.mean()), 6),
            "sensitivity_final": round(float(final.mean()), 6),
            "sensitivity_increased": round(float((final > start).float().mean()), 4),
        }
        return x.cpu(), model.predict(x).cpu(), {"sensitivity": final.cpu()}, info

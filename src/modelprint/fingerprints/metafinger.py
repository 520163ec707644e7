"""MetaFinger (Yang, Wang and Wang, IJCAI 2022): queries meta-trained over many models, so
that models derived from the source keep their labels and independent models do not.

Each query starts from an owner image x with the source's label y. Every iteration the
images take one signed-gradient step (size ``alpha``, kept in [0, 1]) on::

    L = mean_{f in P} CW(f(T(x)), y) + mean_{f in N} CW_untargeted(f(T(x)), y)
    CW(Z, y) = max(max_{j != y} Z_j - Z_y, -kappa)          (keep y, by a margin kappa)
    CW_untargeted(Z, y) = max(Z_y - max_{j != y} Z_j, -kappa)  (leave y, by a margin kappa)

P is the training zoo's positives (the source and copies derived from it) plus
``augmented`` copies of the source made afresh every iteration (model augmentation: magnitude
pruning at a rate in [0, ``prune_max``] or Gaussian weight noise at up to ``noise_max`` times
each layer's RMS); N is the training zoo's negatives; T is a random input transformation
drawn every iteration (input augmentation: shift, shear, Gaussian noise; no mirror images
for digits). Labels are the evidence; the fingerprint records the trained models' sha256s so
that ``bench`` refuses to score them.

What the paper leaves to us (our sources hold only NaturalFinger's summary of it): starting
from owner images, the CW losses (NaturalFinger's, with an untargeted form for negatives
instead of an adversarial label), the signed steps, and the augmentation ranges below.

Parameters:
    trained (str): training zoo folder (``modelprint zoo build SPEC-train``).
    iterations (int): 300; alpha (float): step per pixel, 0.005; kappa (float): 1.0.
    augmented (int): fresh augmented source copies per iteration, 2.
    prune_max (float): 0.5; noise_max (float): 0.1.
    translate (float): 0.1; shear (float): 0.1; noise (float): input noise sigma, 0.03.

Example::

    fp = create_method("metafinger", trained="train-zoo").generate(source, n=100, seed=0)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from ..data import Dataset
from ..errors import ParameterError
from ..models import ModelprintModel
from ..progress import progress_bar
from .base import FingerprintMethod, owner_images, register_method
from .learnt import NO_FLIP_DATA, LearnsFromTrainedModels, cw_loss, random_transform


@register_method("metafinger")
@dataclass(kw_only=True)
class MetaFinger(LearnsFromTrainedModels, FingerprintMethod):
    """MetaFinger (Yang, Wang and Wang, IJCAI 2022): owner images meta-trained over a training
    zoo so that derived models keep their labels and independent models leave them.

    Arguments:
        trained (str): training zoo folder. iterations (int): 300. alpha (float): step per
        pixel, 0.005. kappa (float): CW margin, 1.0. augmented (int): fresh pruned or noised
        source copies per iteration, 2; prune_max 0.5, noise_max 0.1. translate 0.1,
        shear 0.1, noise 0.03: the random input transformation.

    Shape: queries (n, C, H, W) in [0, 1], labels (n,).

    Example::

        fp = create_method("metafinger", trained="train-zoo").generate(source, n=100, seed=0)
    """

    paper: ClassVar[str] = (
        'Yang, Wang and Wang, "MetaFinger: Fingerprinting the Deep Neural Networks with Meta-training", IJCAI 2022'
    )

    iterations: int = 300
    alpha: float = 0.005
    kappa: float = 1.0
    translate: float = 0.1
    shear: float = 0.1
    noise: float = 0.03

    def __post_init__(self) -> None:
        if self.iterations < 0 or self.alpha <= 0 or self.kappa < 0:
            raise ParameterError("iterations >= 0, alpha > 0 and kappa >= 0 are required")
        self._check_augmentation()

    def _generate(
        self, model: ModelprintModel, data: Dataset | None, *, n: int, seed: int, device: str, progress: bool
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor], dict[str, Any]]:
        trained = self._load_trained(model)
        g = torch.Generator().manual_seed(seed)
        flip = not str(model.card.dataset).startswith(NO_FLIP_DATA)
        x = owner_images(model, data, n, seed).clone().to(device)
        y = model.predict(x).to(device)
        for net in trained.positives + trained.negatives:
            net.to(device).eval().requires_grad_(False)
        with progress_bar(self.iterations, "metafinger queries", progress) as bar:
            for _ in range(self.iterations):
                extra = self._augmented_copies(model, g)
                x.requires_grad_(True)
                xt = random_transform(x, g, flip=flip, translate=self.translate, shear=self.shear, noise=self.noise)
                pos = torch.stack([cw_loss(f(xt), y, self.kappa) for f in trained.positives + extra]).mean(0)
                neg = torch.stack([_leave(f(xt), y, self.kappa) for f in trained.negatives]).mean(0)
                (grad,) = torch.autograd.grad((pos + neg).sum(), x)
                x = (x.detach() - self.alpha * grad.sign()).clamp_(0, 1)
                bar.update(1)
        with torch.no_grad():
            expected = model.predict(x)
            pos_rate = torch.stack([f.predict(x) == expected for f in trained.positives]).float().mean().item()
            neg_rate = torch.stack([f.predict(x) == expected for f in trained.negatives]).float().mean().item()
        info = {
            "trained_models": trained.records,
            "flip": flip,
            "trained_positive_match": round(pos_rate, 4),
            "trained_negative_match": round(neg_rate, 4),
        }
        return x.cpu(), expected.cpu(), {"start_label": y.cpu()}, info


def _leave(logits: torch.Tensor, y: torch.Tensor, kappa: float) -> torch.Tensor:
    """Untargeted CW margin: max(Z_y - max_{j != y} Z_j, -kappa), small once y is left behind."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), float("-inf")).amax(1)
    return (true - other).clamp(min=-kappa)

"""MetaV (Pan, Yan, Zhang and Yang, KDD 2022): queries and a meta-verifier learnt together.

The queries X (n images) and a small MLP V are optimised jointly (Adam) so that V, reading a
model's softmax outputs on X laid end to end, says 1 for models derived from the source and
0 for independent ones::

    min_{X, V}  mean_{f in P} BCE(V(softmax f(X)), 1) + mean_{f in N} BCE(V(softmax f(X)), 0)

P is the training zoo's positives plus ``augmented`` copies of the source made afresh every
iteration (pruned or noised, as for MetaFinger); N is its negatives. The evidence is V's
score on the suspect's outputs, one number in [0, 1]: the score path of the evidence
contract, with a Beta null fitted on independent models (their scores sit near 0 or 1, not
on a bell). MetaV needs the suspect's scores (probabilities), not only its labels: a
label-only suspect is refused (``needs_scores``).
The fingerprint stores X, V's weights and the trained models' sha256s, so ``bench`` refuses
to score a model MetaV learnt from.

What we chose where our sources are silent (they hold NaturalFinger's summary of MetaV):
queries start as uniform noise, V has two hidden layers of ``hidden`` units (ReLU), both use
Adam with learning rate ``lr`` for ``iterations`` steps, positives and negatives weigh alike.

Parameters:
    trained (str): training zoo folder (``modelprint zoo build SPEC-train``).
    iterations (int): 500; lr (float): 0.01 for the queries, a tenth of it for V.
    hidden (int): 64; augmented (int): 2; prune_max (float): 0.5; noise_max (float): 0.1.

Example::

    fp = create_method("metav", trained="train-zoo").generate(source, n=100, seed=0)
    create_method("metav").evidence(fp, suspect).values  # array([0.97])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data import Dataset
from ..errors import ParameterError
from ..models import ModelprintModel
from ..progress import progress_bar
from ..suspects import Suspect
from .base import Evidence, Fingerprint, FingerprintMethod, register_method
from .learnt import LearnsFromTrainedModels


def meta_verifier(inputs: int, hidden: int) -> nn.Sequential:
    """V: outputs laid end to end (n x classes) -> one logit."""
    layers = [nn.Linear(inputs, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1)]
    return nn.Sequential(*layers)


def _verifier_from(extra: dict[str, torch.Tensor]) -> nn.Sequential:
    weights = {k.removeprefix("v."): v for k, v in extra.items() if k.startswith("v.")}
    v = meta_verifier(weights["0.weight"].shape[1], weights["0.weight"].shape[0])
    v.load_state_dict(weights)
    return v.eval()


@register_method("metav")
@dataclass(kw_only=True)
class MetaV(LearnsFromTrainedModels, FingerprintMethod):
    """MetaV (Pan, Yan, Zhang and Yang, KDD 2022): queries and a meta-verifier V learnt together;
    the evidence is V's score on the suspect's probabilities (needs scores, not labels only).

    Arguments:
        trained (str): training zoo folder. iterations (int): 500. lr (float): 0.01 for the
        queries, a tenth for V. hidden (int): V's hidden units, 64. augmented, prune_max,
        noise_max: the fresh source copies per iteration, as MetaFinger's.

    Shape: queries (n, C, H, W) in [0, 1]; evidence one score in [0, 1].

    Example::

        fp = create_method("metav", trained="train-zoo").generate(source, n=100, seed=0)
        create_method("metav").evidence(fp, suspect).values  # array([0.97])
    """

    paper: ClassVar[str] = (
        'Pan, Yan, Zhang and Yang, "MetaV: A Meta-Verifier Approach to Task-Agnostic Model Fingerprinting", KDD 2022'
    )

    iterations: int = 500
    lr: float = 0.01
    hidden: int = 64

    evidence_kind: ClassVar[str] = "scores"
    statistic_name: ClassVar[str] = "verifier_score"
    null_family: ClassVar[str] = "probabilities"
    needs_scores: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if self.iterations < 0 or self.lr <= 0 or self.hidden < 1:
            raise ParameterError("iterations >= 0, lr > 0 and hidden >= 1 are required")
        self._check_augmentation()

    def items(self, fp: Fingerprint) -> int:
        return 1  # one verifier score over all the queries

    def _generate(
        self, model: ModelprintModel, data: Dataset | None, *, n: int, seed: int, device: str, progress: bool
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor], dict[str, Any]]:
        trained = self._load_trained(model)
        g = torch.Generator().manual_seed(seed)
        classes = model.card.num_classes
        x = torch.rand((n, *model.card.input_shape), generator=g).to(device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            v = meta_verifier(n * classes, self.hidden).to(device)
        x.requires_grad_(True)
        opt = torch.optim.Adam([{"params": [x], "lr": self.lr}, {"params": v.parameters(), "lr": self.lr / 10}])
        for net in trained.positives + trained.negatives:
            net.to(device).eval().requires_grad_(False)
        with progress_bar(self.iterations, "metav queries + verifier", progress) as bar:
            for _ in range(self.iterations):
                extra = self._augmented_copies(model, g)
                pos = torch.cat([v(f(x).softmax(1).reshape(1, -1)) for f in trained.positives + extra])
                neg = torch.cat([v(f(x).softmax(1).reshape(1, -1)) for f in trained.negatives])
                loss = F.binary_cross_entropy_with_logits(
                    pos, torch.ones_like(pos)
                ) + F.binary_cross_entropy_with_logits(neg, torch.zeros_like(neg))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                with torch.no_grad():
                    x.clamp_(0, 1)
                bar.update(1, description=f"metav queries + verifier (loss {loss.item():.3f})")
        x = x.detach()
        v.eval()
        with torch.no_grad():
            score = lambda f: torch.sigmoid(v(f(x).softmax(1).reshape(1, -1))).item()  # noqa: E731
            pos_scores = [score(f) for f in trained.positives]
            neg_scores = [score(f) for f in trained.negatives]
        extra_tensors = {f"v.{k}": t.detach().cpu() for k, t in v.state_dict().items()}
        info = {
            "trained_models": trained.records,
            "trained_positive_score": round(float(np.mean(pos_scores)), 4),
            "trained_negative_score": round(float(np.mean(neg_scores)), 4),
        }
        return x.cpu(), model.predict(x).cpu(), extra_tensors, info

    def _evidence(self, fp: Fingerprint, suspect: Suspect, start: int, stop: int) -> Evidence:
        probs = suspect.predict(fp.x).probs
        with torch.no_grad():
            s = torch.sigmoid(_verifier_from(fp.extra)(probs.reshape(1, -1))).item()
        return Evidence(np.asarray([s]), "scores", len(fp.x))

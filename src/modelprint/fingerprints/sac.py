"""SAC (Guan, Liang and He, NeurIPS 2022, "Are You Stealing My Model? Sample Correlation for
Fingerprinting Deep Neural Networks"): a stolen model keeps how its victim relates samples to
each other, even when it keeps no single label.

For n samples x_1..x_n and a model's outputs o_i = f(x_i), the correlation matrix is::

    M_ij = (1 - cos(o_i, o_j)) / 2            (n x n, entries in [0, 1])

and the distance between source S and suspect V is ``d = mean_ij |M^S_ij - M^V_ij|``. The
evidence is one score, the correlation similarity ``1 - 2 d`` (1 for the source itself;
higher means closer, as every score statistic here), with a normal null fitted on
independent models like any score family.

Which samples:
  * ``sac-w``: held-out images (the data set's tune and test splits) that the source
    *misclassifies*: a copy inherits its victim's mistakes, an independent model makes its
    own. Needs no model other than the source.
  * ``sac-m``: owner images with a CutMix patch (a square of ``cut`` x side, pasted from
    another image of the set, centred in a corner region outside the middle two thirds of
    both axes): off the data manifold, so outputs of unrelated models decorrelate. Needs
    no surrogate training.

What we chose where the paper leaves room: by default the outputs are the suspect's class
probabilities (what a prediction API returns, robust to its rounding). The authors' code
reads logits; ``output="logits"`` uses them as far as probabilities reveal them, centred:
``log p - mean(log p)`` is the logit vector minus its mean (probabilities rounded to 0 are
read as 1e-30). ``output="labels"`` uses one-hot labels, for label-only suspects: ``M_ij``
is then 0 for two samples given the same label and 1/2 otherwise. CutMix draws one box
per image with the seed.

Parameters:
    output (str): "probabilities" (default), "logits" (centred, from the probabilities) or "labels".
    cut (float): CutMix patch side as a fraction of the image side, 0.2 (sac-m).
    min_samples (int): sac-w refuses a source that misclassifies fewer held-out images, 20.

Example::

    fp = create_method("sac-m").generate(source, n=100, seed=0)
    create_method("sac-m").evidence(fp, suspect).values  # array([0.93])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from ..data import Dataset, load_splits
from ..errors import ParameterError
from ..models import ModelprintModel
from ..suspects import Suspect
from .base import Evidence, Fingerprint, FingerprintMethod, owner_images, register_method

OUTPUTS = ("probabilities", "logits", "labels")
# a probability an API rounded to 0 is read as this, so its log stays finite
PROB_FLOOR = 1e-30


def correlation_matrix(outputs: torch.Tensor) -> torch.Tensor:
    """``(1 - cos(o_i, o_j)) / 2`` for outputs (n, classes): (n, n), entries in [0, 1]."""
    o = F.normalize(outputs.double(), dim=1)
    return (1 - o @ o.T) / 2


def correlation_similarity(source: torch.Tensor, suspect: torch.Tensor) -> float:
    """``1 - 2 mean |M^S - M^V|`` of two models' outputs on the same samples (1: identical relations)."""
    return float(1 - 2 * (correlation_matrix(source) - correlation_matrix(suspect)).abs().mean())


def cutmix(x: torch.Tensor, cut: float, g: torch.Generator) -> torch.Tensor:
    """Each image of ``x`` (n, C, H, W) with a square patch of ``cut`` x side from another
    image of the set, centred outside the middle two thirds of both axes (a corner region)."""
    n, _, h, w = x.shape
    ph, pw = max(1, round(cut * h)), max(1, round(cut * w))
    out = x.clone()
    donors = (torch.arange(n) + torch.randint(1, max(n, 2), (n,), generator=g)) % n  # never the image itself
    for i in range(n):
        # a centre in the outer sixth at either end of each axis
        cy, cx = (
            int(side * (torch.rand(1, generator=g) / 6 + (5 / 6) * torch.randint(0, 2, (1,), generator=g)))
            for side in (h, w)
        )
        y0, x0 = min(max(cy - ph // 2, 0), h - ph), min(max(cx - pw // 2, 0), w - pw)
        out[i, :, y0 : y0 + ph, x0 : x0 + pw] = x[donors[i], :, y0 : y0 + ph, x0 : x0 + pw]
    return out


@dataclass(kw_only=True)
class SAC(FingerprintMethod):
    """SAC's evidence, shared by ``sac-w`` and ``sac-m``; subclasses pick the samples."""

    paper: ClassVar[str] = (
        'Guan, Liang and He, "Are You Stealing My Model? Sample Correlation for Fingerprinting Deep '
        'Neural Networks", NeurIPS 2022'
    )

    output: str = "probabilities"

    evidence_kind: ClassVar[str] = "scores"
    statistic_name: ClassVar[str] = "correlation_similarity"
    null_family: ClassVar[str] = "scores"

    def __post_init__(self) -> None:
        if self.output not in OUTPUTS:
            raise ParameterError(f"output must be one of {', '.join(OUTPUTS)}, got {self.output!r}")

    @property
    def needs_scores(self) -> bool:  # type: ignore[override]
        return self.output != "labels"

    def items(self, fp: Fingerprint) -> int:
        return 1

    def summary(self, fp: Fingerprint) -> str:
        return f"{len(fp)} samples, correlations of their {self.output}"

    def _outputs(self, probs: torch.Tensor | None, labels: torch.Tensor, classes: int) -> torch.Tensor:
        if self.output == "labels":
            return F.one_hot(labels.long(), classes).double()
        if self.output == "logits":
            log_p = probs.double().clamp_min(PROB_FLOOR).log()
            return log_p - log_p.mean(1, keepdim=True)
        return probs.double()

    def _evidence(self, fp: Fingerprint, suspect: Suspect, start: int, stop: int) -> Evidence:
        answer = suspect.predict(fp.x)
        classes = int(fp.meta["num_classes"])
        ours = self._outputs(fp.extra.get("source_probs"), fp.y, classes)
        theirs = self._outputs(answer.probs, answer.labels, classes)
        return Evidence(np.asarray([correlation_similarity(ours, theirs)]), "scores", len(fp.x))

    def _package(
        self, model: ModelprintModel, x: torch.Tensor, info: dict[str, Any]
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor], dict[str, Any]]:
        with torch.no_grad():
            probs = torch.cat([model(b).softmax(1).cpu() for b in x.split(256)])
        return x.cpu(), probs.argmax(1), {"source_probs": probs.float()}, info


@register_method("sac-w")
@dataclass(kw_only=True)
class SACW(SAC):
    """SAC-w: held-out images the source misclassifies; evidence the correlation similarity.

    Arguments:
        output (str): "probabilities", "logits" or "labels". min_samples (int): fewest misclassified
        images accepted, 20 (fewer: refused, with the count; a smaller ``n`` is kept as is).

    Shape: samples (n, C, H, W) in [0, 1]; evidence one score in [0, 1].

    Example::

        fp = create_method("sac-w").generate(source, n=100, seed=0)
        create_method("sac-w").evidence(fp, suspect).values  # array([0.91])
    """

    min_samples: int = 20

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.min_samples < 2:
            raise ParameterError(f"min_samples must be at least 2, got {self.min_samples}")

    def _generate(
        self, model: ModelprintModel, data: Dataset | None, *, n: int, seed: int, device: str, progress: bool
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor], dict[str, Any]]:
        if data is None:
            if not model.card.dataset:
                raise ParameterError("the model card names no data set: pass held-out data")
            splits = load_splits(model.card.dataset)
            pool_x, pool_y = torch.cat([splits.tune.x, splits.test.x]), torch.cat([splits.tune.y, splits.test.y])
        else:
            pool_x, pool_y = data.x, data.y
        with torch.no_grad():
            pred = torch.cat([model(b.to(device)).argmax(1).cpu() for b in pool_x.split(256)])
        wrong = torch.nonzero(pred != pool_y).flatten()
        if len(wrong) < self.min_samples:
            raise ParameterError(
                f"sac-w: the source misclassifies {len(wrong)} of {len(pool_x)} held-out images, fewer than "
                f"min_samples={self.min_samples}: use sac-m, or give more held-out data"
            )
        keep = wrong[torch.randperm(len(wrong), generator=torch.Generator().manual_seed(seed))[:n]]
        info = {"misclassified": int(len(wrong)), "pool": int(len(pool_x)), "samples": int(len(keep))}
        if len(keep) < n:
            info["short"] = f"{len(keep)} of the {n} samples asked for: the source misclassifies no more"
        return self._package(model, pool_x[keep].to(device), info)


@register_method("sac-m")
@dataclass(kw_only=True)
class SACM(SAC):
    """SAC-m: owner images with a CutMix patch in a corner region; evidence the correlation similarity.

    Arguments:
        output (str): "probabilities", "logits" or "labels". cut (float): patch side / image side, 0.2.

    Shape: samples (n, C, H, W) in [0, 1]; evidence one score in [0, 1].

    Example::

        fp = create_method("sac-m", cut=0.2).generate(source, n=100, seed=0)
        create_method("sac-m").evidence(fp, suspect).values  # array([0.95])
    """

    cut: float = 0.2

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.cut < 1:
            raise ParameterError(f"cut must be in (0, 1), got {self.cut}")

    def _generate(
        self, model: ModelprintModel, data: Dataset | None, *, n: int, seed: int, device: str, progress: bool
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor], dict[str, Any]]:
        if n < 2:
            raise ParameterError("sac-m needs at least 2 samples: a correlation relates pairs")
        x = cutmix(owner_images(model, data, n, seed), self.cut, torch.Generator().manual_seed(seed))
        return self._package(model, x.to(device), {"cut": self.cut})

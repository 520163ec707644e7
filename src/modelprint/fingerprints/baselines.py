"""White-box baselines for the frequency fingerprint.

``weight-cosine``: the plainest white-box test. The fingerprint keeps the source's weight
matrices (every convolution and linear weight, the frequency module left out); a suspect's
evidence is, layer by layer, the cosine between its weights and the source's, and the
statistic their mean. Layers are matched by name and shape, with no channel alignment, so
a channel permutation or a student network defeats it; it is the baseline the paper's
"direct comparison" stands for.

``cka``: representation similarity in the manner of REEF (Zhang et al., 2024): linear
centred kernel alignment between the source's and the suspect's penultimate features (the
input of the last linear layer) on ``n`` probe images from the owner's data::

    CKA(X, Y) = ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F),   Xc = X - mean(X)

It compares functions, not weights, so it is blind to permutation and scale and sees through
distillation partly. We use the penultimate layer of every architecture (REEF picks a layer
per model pair) and linear CKA (REEF's default).

Both fit the evidence contract as one more white-box family: ``components`` evidence, a
score statistic, a normal null fitted on independent models. Weight cosine's null is fitted on
the references of the source's own architecture only: a model whose layers do not line up
scores exactly 0, and a pile of exact zeros beside the bell of same-architecture cosines makes
a normal fit too narrow for the latter (on 336 independent digits models it called 3-4 % of
them a match at a nominal 1 %).

Example::

    fp = create_method("cka").generate(source, n=200, seed=0)
    create_method("cka").evidence(fp, suspect).values  # array([0.93])
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from ..data import Dataset
from ..errors import CalibrationError, ParameterError
from ..models import ModelprintModel
from ..null import NormalNull, Null
from .base import Evidence, Fingerprint, FingerprintMethod, owner_images, register_method


def comparable_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """Convolution and linear weights by a name that ignores a hosted frequency module
    (``features.0.host.weight`` -> ``features.0.weight``); the module's own weights are left out."""
    out = {}
    for name, p in model.named_parameters():
        if p.dim() < 2 or ".branch." in name:
            continue
        out[re.sub(r"\.host\.", ".", name.removeprefix("net."))] = p.detach().cpu().float()
    return out


@register_method("weight-cosine")
@dataclass(kw_only=True)
class WeightCosine(FingerprintMethod):
    """Baseline: per-layer cosine of the source's and the suspect's weights (no parameters;
    ``n`` and ``seed`` are unused: the whole network is the fingerprint).

    Example::

        fp = create_method("weight-cosine").generate(source)
        verify(fp, "suspect.safetensors").statistic  # mean cosine over layers
    """

    paper: ClassVar[str] = "no paper: the plainest white-box baseline (layer-by-layer weight cosine)"

    evidence_kind: ClassVar[str] = "components"
    statistic_name: ClassVar[str] = "weight_cosine"
    null_family: ClassVar[str] = "scores"

    def items(self, fp: Fingerprint) -> int:
        return len(fp.meta["layers"])

    def _generate(
        self, model: ModelprintModel, data: Dataset | None, *, n: int, seed: int, device: str, progress: bool
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor], dict[str, Any]]:
        weights = comparable_weights(model)
        empty = torch.zeros((0, *model.card.input_shape))
        extra = {f"layer{i}": w for i, w in enumerate(weights.values())}
        return empty, torch.zeros(0, dtype=torch.long), extra, {"layers": list(weights), "num_classes": None}

    def _evidence(self, fp: Fingerprint, suspect: ModelprintModel, start: int, stop: int) -> Evidence:
        theirs = comparable_weights(suspect)
        values = []
        for i, name in enumerate(fp.meta["layers"][start:stop], start):
            a, b = fp.extra[f"layer{i}"].double().flatten(), theirs.get(name)
            if b is None or b.numel() != a.numel():
                values.append(0.0)  # no such layer: nothing alike
                continue
            b = b.double().flatten()
            values.append(float(a @ b / (a.norm() * b.norm()).clamp_min(1e-12)))
        return Evidence(np.asarray(values), "components", 0)

    def fit_null(self, fp: Fingerprint, evidence: Sequence[np.ndarray], statistics: Sequence[float]) -> Null:
        """A normal null over the references whose every layer lines up with the source's (a
        layer without counterpart scores exactly 0; trained weights never do). Models of other
        architectures score a fraction of the same cosines, closer to 0, so leaving them out
        only makes their p-values larger."""
        layers = len(fp.meta["layers"])
        alike = [i for i, v in enumerate(evidence) if len(v) == layers and np.all(np.asarray(v) != 0.0)]
        if len(alike) < 3:
            raise CalibrationError(
                f"weight-cosine's null needs at least 3 reference models of the source's architecture "
                f"({fp.meta.get('source_arch', '?')}), got {len(alike)} of {len(evidence)}: use a larger "
                "reference set (every third reference model has the source's architecture)"
            )
        null = NormalNull.fit([evidence[i] for i in alike], [statistics[i] for i in alike])
        null.data["left_out"] = len(evidence) - len(alike)
        return null


def penultimate_features(model: ModelprintModel, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """(N, D): the input of the model's last linear layer on ``x`` (eval mode, no gradient)."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ParameterError("the model has no linear layer whose input could serve as its representation")
    seen: list[torch.Tensor] = []
    hook = linears[-1].register_forward_hook(lambda _m, args, _out: seen.append(args[0].detach().flatten(1)))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for i in range(0, len(x), batch_size):
                model(x[i : i + batch_size])
    finally:
        hook.remove()
        model.train(was_training)
    return torch.cat(seen).double()


def linear_cka(a: torch.Tensor, b: torch.Tensor) -> float:
    """Linear CKA of (N, D1) and (N, D2) representations of the same N inputs, in [0, 1]."""
    if len(a) != len(b) or len(a) < 2:
        raise ParameterError(f"CKA needs the same N >= 2 inputs on both sides, got {len(a)} and {len(b)}")
    a, b = a - a.mean(0), b - b.mean(0)
    cross = (b.T @ a).pow(2).sum()
    norm = (a.T @ a).pow(2).sum().sqrt() * (b.T @ b).pow(2).sum().sqrt()
    return float(cross / norm) if norm > 0 else 0.0


@register_method("cka")
@dataclass(kw_only=True)
class CKASimilarity(FingerprintMethod):
    """Baseline: linear CKA of penultimate features on ``n`` probe images drawn (``seed``) from
    the owner's data (the source's data set, owner split, when none is given).

    Example::

        fp = create_method("cka").generate(source, owner_data, n=200, seed=0)
    """

    paper: ClassVar[str] = (
        'linear CKA of penultimate features, in the manner of REEF (Zhang et al., "REEF: Representation '
        'Encoding Fingerprints for Large Language Models", ICLR 2024)'
    )

    evidence_kind: ClassVar[str] = "components"
    statistic_name: ClassVar[str] = "cka"
    null_family: ClassVar[str] = "scores"

    def items(self, fp: Fingerprint) -> int:
        return 1

    def _generate(
        self, model: ModelprintModel, data: Dataset | None, *, n: int, seed: int, device: str, progress: bool
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor], dict[str, Any]]:
        if n < 2:
            raise ParameterError(f"cka needs at least 2 probe images, got n={n}")
        x = owner_images(model, data, n, seed).to(device)
        feats = penultimate_features(model, x).float().cpu()
        return x.cpu(), model.predict(x).cpu(), {"features": feats}, {"num_classes": None}

    def _evidence(self, fp: Fingerprint, suspect: ModelprintModel, start: int, stop: int) -> Evidence:
        theirs = penultimate_features(suspect, fp.x.to(next(suspect.parameters()).device)).cpu()
        return Evidence(np.asarray([linear_cka(fp.extra["features"].double(), theirs)]), "components", len(fp.x))

"""Dataset inference (Maini, Yaghini and Papernot, ICLR 2021): a model that learnt from the
owner's private training data, directly or through a stolen copy, sits farther from its
decision boundary on those points than on points it never saw.

Black-box distances ("blind walk"): from a point x with true label y, walk along a random
direction delta until the suspect's label changes::

    d(x, delta) = ||delta||_2 * min{k in 1..K : f(clip(x + k delta)) != y}     (K + 1 if never)

for ``directions`` directions of each noise kind (uniform, Gaussian, Laplace), each scaled
to an L-infinity step of ``step``; a point's embedding is its distances per kind, sorted
(directions are exchangeable), as log(1 + d). Labels only: the walk needs no scores.

The owner trains a *confidence regressor* (logistic, on standardised embeddings from the
source) to tell ``train_points`` of its private training data from as many points it never
saw (the data set's test split). The fingerprint holds n / 2 other private points and as
many other unseen ones; a suspect's evidence is the regressor's score on each, from the suspect's
own blind walks, and the statistic is Welch's t of private minus unseen scores, the
quantity the paper's one-sided test reads. The paper turns t into a p-value by the
t-distribution; here, as for every family, the p-value comes from a normal null fitted on
independent reference models' t. That matters: a model trained on the same data without
any theft also sits far from its boundary on those points (later work reports exactly
these false positives), and a null fitted on references trained on the owner's data says
so instead of calling them stolen.

White-box distances (``dataset-inference-mingd``, the paper's MinGD, for suspects whose
weights can be read): from x, for every other class t, gradient steps that raise t's logit
over the rest, each of L-infinity (sign of the gradient) or L2 length ``step``, until the
suspect predicts t::

    d_t(x) = ||delta_k||_p  at the first k with argmax f(clip(x + delta_k)) = t   (norm p = inf, 2)

a point's embedding is these distances for both norms, sorted per norm (never reached:
``max_steps`` steps). The regressor and the test are the black-box variant's.

Parameters:
    train_points (int): of each kind for the regressor, 200. split_seed (int): the owner's
    data split, 0 (the source's card names its split and training subset). directions (int): per noise
    kind, 5. step (float): L-infinity length of one walk step, 0.02. max_steps (int): K, 50.

Example::

    di = create_method("dataset-inference")
    fp = di.generate(source, n=100, seed=0)
    di.statistic(di.evidence(fp, suspect).values)  # Welch's t, e.g. 4.2
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from ..data import Dataset, load_splits
from ..errors import ParameterError
from ..models import ModelprintModel
from ..suspects import Suspect, as_suspect
from .base import Evidence, Fingerprint, FingerprintMethod, register_method

NOISE_KINDS = ("uniform", "gaussian", "laplace")


def walk_directions(n: int, directions: int, shape: tuple[int, ...], step: float, seed: int) -> torch.Tensor:
    """(n, kinds x directions, *shape) random directions, each kind scaled to L-infinity ``step``."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for kind in NOISE_KINDS:
        size = (n, directions, *shape)
        if kind == "uniform":
            d = torch.rand(size, generator=g) * 2 - 1
        elif kind == "gaussian":
            d = torch.randn(size, generator=g)
        else:  # Laplace: the difference of two exponentials
            d = -torch.rand(size, generator=g).log() + torch.rand(size, generator=g).log()
        out.append(d * step / d.flatten(2).abs().amax(2).clamp_min(1e-12).reshape(n, directions, *[1] * len(shape)))
    return torch.cat(out, 1)


NORMS = ("linf", "l2")


def min_gd_distances(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, step: float, max_steps: int
) -> torch.Tensor:
    """(n, norms x (classes - 1)) distances to every other class by targeted gradient steps (MinGD),
    sorted per norm; a class not reached in ``max_steps`` steps counts the distance walked."""
    model.eval()
    with torch.no_grad():
        k = model(x[:1]).shape[1]
    out = []
    for norm in NORMS:
        per_class = []
        for shift in range(1, k):
            t = (y + shift) % k
            delta = torch.zeros_like(x, requires_grad=True)
            dist = torch.full((len(x),), float("nan"), dtype=torch.float64, device=x.device)
            for _ in range(max_steps):
                logits = model((x + delta).clamp(0, 1))
                done = (logits.argmax(1) == t) & dist.isnan()
                dist[done] = _norm(delta.detach(), norm)[done].double()
                if not dist.isnan().any():
                    break
                margin = logits.gather(1, t[:, None]).squeeze(1) - logits.scatter(1, t[:, None], float("-inf")).amax(1)
                (grad,) = torch.autograd.grad(margin.sum(), delta)
                with torch.no_grad():
                    delta += step * _unit(grad, norm)
            per_class.append(torch.where(dist.isnan(), _norm(delta.detach(), norm).double(), dist))
        out.append(torch.stack(per_class, 1).sort(dim=1).values)
    return torch.cat(out, 1)


def _norm(d: torch.Tensor, norm: str) -> torch.Tensor:
    flat = d.flatten(1)
    return flat.abs().amax(1) if norm == "linf" else flat.norm(dim=1)


def _unit(grad: torch.Tensor, norm: str) -> torch.Tensor:
    if norm == "linf":
        return grad.sign()
    return grad / grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (grad.dim() - 1))


def blind_walk(
    suspect: Suspect, x: torch.Tensor, y: torch.Tensor, deltas: torch.Tensor, max_steps: int
) -> torch.Tensor:
    """(n, directions) distances ``||delta|| * first k whose label differs from y`` (``max_steps + 1``
    if none); every step of every walk is one query, sent in batches."""
    n, dirs = deltas.shape[:2]
    first = torch.full((n, dirs), max_steps + 1, dtype=torch.long)
    for k in range(1, max_steps + 1):
        open_ = first > max_steps
        if not open_.any():
            break
        idx = open_.nonzero()
        points = (x[idx[:, 0]] + k * deltas[idx[:, 0], idx[:, 1]]).clamp(0, 1)
        flipped = suspect.predict(points).labels != y[idx[:, 0]]
        hit = idx[flipped]
        first[hit[:, 0], hit[:, 1]] = k
    return first.double() * deltas.flatten(2).norm(dim=2).double()


@register_method("dataset-inference")
@dataclass(kw_only=True)
class DatasetInference(FingerprintMethod):
    """Dataset inference: blind-walk distances to the boundary on the owner's private and unseen
    points, a confidence regressor, Welch's t of private minus unseen scores.

    Arguments:
        train_points (int): per kind for the regressor, 200. directions (int): per noise
        kind, 5. step (float): 0.02. max_steps (int): 50. split_seed (int): 0.

    Shape: points (n, C, H, W) in [0, 1], first the n / 2 private ones; evidence n regressor scores.

    Example::

        fp = create_method("dataset-inference").generate(source, n=100, seed=0)
        create_method("dataset-inference").evidence(fp, suspect).values.shape  # (100,)
    """

    paper: ClassVar[str] = (
        'Maini, Yaghini and Papernot, "Dataset Inference: Ownership Resolution in Machine Learning", ICLR 2021'
    )

    train_points: int = 200
    directions: int = 5
    step: float = 0.02
    max_steps: int = 50
    split_seed: int = 0

    evidence_kind: ClassVar[str] = "scores"
    statistic_name: ClassVar[str] = "welch_t"
    null_family: ClassVar[str] = "scores"
    evidence_of: ClassVar[str] = "training-data"

    def __post_init__(self) -> None:
        if self.train_points < 2 or self.directions < 1 or self.max_steps < 1 or not self.step > 0:
            raise ParameterError("need train_points >= 2, directions >= 1, max_steps >= 1 and step > 0")

    def summary(self, fp: Fingerprint) -> str:
        return (
            f"{len(fp) // 2} private and {len(fp) - len(fp) // 2} unseen points, "
            f"{len(NOISE_KINDS) * self.directions} blind walks each (regressor accuracy on the source "
            f"{fp.meta.get('regressor_accuracy', '?')})"
        )

    def embedding(self, suspect: Any, x: torch.Tensor, y: torch.Tensor, seed: int) -> torch.Tensor:
        """(n, kinds x directions) sorted log(1 + distance) per noise kind, from ``suspect``'s blind walks."""
        deltas = walk_directions(len(x), self.directions, tuple(x.shape[1:]), self.step, seed)
        d = blind_walk(as_suspect(suspect), x, y, deltas, self.max_steps).reshape(len(x), len(NOISE_KINDS), -1)
        return d.sort(dim=2).values.reshape(len(x), -1).log1p()

    def statistic(self, values: np.ndarray) -> float:
        """Welch's t of the first half (private points' scores) minus the rest (unseen)."""
        half = len(values) // 2
        a, b = values[:half], values[half:]
        se = np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
        return float((a.mean() - b.mean()) / max(se, 1e-6))

    def _score(self, fp: Fingerprint, emb: torch.Tensor) -> torch.Tensor:
        z = (emb - fp.extra["feature_mean"].double()) / fp.extra["feature_std"].double()
        return torch.sigmoid(z @ fp.extra["regressor_w"].double() + fp.extra["regressor_b"].double())

    def _evidence(self, fp: Fingerprint, suspect: Suspect, start: int, stop: int) -> Evidence:
        before = suspect.queries
        emb = self.embedding(suspect, fp.x, fp.y, int(fp.meta["seed"]) + 1)
        return Evidence(self._score(fp, emb).numpy(), "scores", suspect.queries - before)

    def _generate(
        self, model: ModelprintModel, data: Dataset | None, *, n: int, seed: int, device: str, progress: bool
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor], dict[str, Any]]:
        if not model.card.dataset:
            raise ParameterError("dataset inference needs the source's data set named on its card")
        if n < 4:
            raise ParameterError(f"dataset inference needs n >= 4 (n / 2 private and n / 2 unseen points), got {n}")
        # the very images the source trained on: its split, cut to its training subset as it was
        subset = int((model.card.training or {}).get("train_subset") or 0)
        splits = load_splits(model.card.dataset, split_seed=self.split_seed, train_subset=subset)
        private = data if data is not None else splits.get(model.card.split or "owner")
        unseen = splits.test
        half = n // 2
        need = (self.train_points + half, self.train_points + n - half)
        if len(private) < need[0] or len(unseen) < need[1]:
            raise ParameterError(
                f"dataset inference needs {need[0]} private and {need[1]} unseen points (train_points + n / 2); "
                f"the private data holds {len(private)}, the test split {len(unseen)}: lower train_points or n"
            )
        g = torch.Generator().manual_seed(seed)
        pi = torch.randperm(len(private), generator=g)[: need[0]]
        ui = torch.randperm(len(unseen), generator=g)[: need[1]]
        px, py, ux, uy = private.x[pi], private.y[pi], unseen.x[ui], unseen.y[ui]
        t = self.train_points
        source = model.cpu().eval()
        emb = self.embedding(source, torch.cat([px[:t], ux[:t]]), torch.cat([py[:t], uy[:t]]), seed)
        target = torch.cat([torch.ones(t), torch.zeros(t)]).double()
        mean, std = emb.mean(0), emb.std(0).clamp_min(1e-6)
        w, b, accuracy = _logistic((emb - mean) / std, target, seed)
        x = torch.cat([px[t:], ux[t:]])
        y = torch.cat([py[t:], uy[t:]])
        extra = {
            "feature_mean": mean.float(),
            "feature_std": std.float(),
            "regressor_w": w.float(),
            "regressor_b": b.reshape(1).float(),
        }
        info = {
            "regressor_accuracy": round(accuracy, 4),
            "private": f"{model.card.split or 'owner'} split",
            "unseen": "test split",
            "private_points": half,
        }
        model.to(device)
        return x, y, extra, info


def _logistic(
    x: torch.Tensor, y: torch.Tensor, seed: int, steps: int = 200
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """A logistic regression (L2 1e-3), fitted by L-BFGS; returns weights, bias and training accuracy."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
        b = torch.zeros((), dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([w, b], max_iter=steps, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = torch.nn.functional.binary_cross_entropy_with_logits(x @ w + b, y) + 1e-3 * (w * w).sum()
            loss.backward()
            return loss

        opt.step(closure)
    with torch.no_grad():
        accuracy = float(((x @ w + b > 0).double() == y).double().mean())
    return w.detach(), b.detach(), accuracy


@register_method("dataset-inference-mingd")
@dataclass(kw_only=True)
class DatasetInferenceMinGD(DatasetInference):
    """Dataset inference, white-box (MinGD): targeted gradient steps to every other class give each
    point's distances to the boundary; the regressor and Welch's t as in ``dataset-inference``.

    Arguments:
        train_points (int): 200. step (float): length of one gradient step (L-infinity and L2), 0.01.
        max_steps (int): 50. split_seed (int): 0.

    Shape: points (n, C, H, W), first the n / 2 private ones; evidence n regressor scores.

    Example::

        fp = create_method("dataset-inference-mingd").generate(source, n=100, seed=0)
        create_method("dataset-inference-mingd").evidence(fp, suspect_model).values.shape  # (100,)
    """

    step: float = 0.01
    evidence_kind: ClassVar[str] = "components"

    def summary(self, fp: Fingerprint) -> str:
        return (
            f"{len(fp) // 2} private and {len(fp) - len(fp) // 2} unseen points, MinGD distances to every other "
            f"class (regressor accuracy on the source {fp.meta.get('regressor_accuracy', '?')})"
        )

    def embedding(self, suspect: Any, x: torch.Tensor, y: torch.Tensor, seed: int) -> torch.Tensor:
        """(n, 2 x (classes - 1)) log(1 + distance) from the suspect's weights (a model: the
        evidence contract hands white-box methods the model itself); MinGD draws nothing at random."""
        device = next(suspect.parameters()).device
        return min_gd_distances(suspect, x.to(device), y.to(device), self.step, self.max_steps).cpu().log1p()

    def _evidence(self, fp: Fingerprint, suspect: Any, start: int, stop: int) -> Evidence:
        emb = self.embedding(suspect, fp.x, fp.y, int(fp.meta["seed"]) + 1)
        return Evidence(self._score(fp, emb).numpy(), "components", len(fp.x))

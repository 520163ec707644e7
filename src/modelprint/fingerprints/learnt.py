"""What the learnt methods share (NaturalFinger, MetaFinger, MetaV): the trained models they
learn from, the random input transforms they optimise through, the Carlini-Wagner margin,
and the augmented copies of the source they see each iteration."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .._io import sha256_file
from ..attacks import create_attack
from ..errors import ParameterError
from ..models import ModelprintModel, load_model, weights_digest
from ..zoo import ZooManifest, source_row

# Data whose classes change under a mirror image (a mirrored 2 is no digit): no flips in T.
NO_FLIP_DATA = ("digits", "mnist")


def cw_loss(logits: torch.Tensor, target: torch.Tensor, kappa: float) -> torch.Tensor:
    """Carlini-Wagner margin per example: max(max_{j != t} Z_j - Z_t, -kappa), shape (N,)."""
    true = logits.gather(1, target[:, None]).squeeze(1)
    other = logits.masked_fill(F.one_hot(target, logits.shape[1]).bool(), float("-inf")).amax(1)
    return (other - true).clamp(min=-kappa)


def random_transform(
    x: torch.Tensor, g: torch.Generator, *, flip: bool, translate: float, shear: float, noise: float
) -> torch.Tensor:
    """A differentiable random affine map per image (shift up to ``translate`` of the side,
    shear up to ``shear``, mirror with probability 1/2 when ``flip``), then Gaussian noise;
    zero padding, clipped to [0, 1]."""
    n = len(x)

    def u(lo: float, hi: float) -> torch.Tensor:
        return torch.rand(n, generator=g) * (hi - lo) + lo

    sx = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0) if flip else torch.ones(n)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = sx
    theta[:, 0, 1] = u(-shear, shear)
    theta[:, 1, 0] = u(-shear, shear)
    theta[:, 1, 1] = 1.0
    theta[:, 0, 2] = u(-2 * translate, 2 * translate)  # normalised coordinates span 2 per side
    theta[:, 1, 2] = u(-2 * translate, 2 * translate)
    theta = theta.to(x.device, x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, padding_mode="zeros", align_corners=False)
    if noise > 0:
        out = out + noise * torch.randn(out.shape, generator=g).to(x.device, x.dtype)
    return out.clamp(0, 1)


@dataclass
class TrainedModels:
    """The positive and negative models a method learns from, with where they came from."""

    positives: list[ModelprintModel]
    negatives: list[ModelprintModel]
    records: list[dict[str, Any]]  # id, role, arch, sha256 of each, for the fingerprint's meta
    categories: list[str]  # each model's zoo category (``source``, ``independent``, ...), in records' order


def load_trained(zoo: str, source: ModelprintModel) -> TrainedModels:
    """Trained models from a training zoo whose source is ``source``: positives = the source
    and every positive derived from it, negatives = every negative model."""
    manifest = ZooManifest.read(zoo)
    src = source_row(manifest)
    digest = weights_digest(source)
    if src["sha256"] != digest:
        raise ParameterError(
            f"the training zoo {zoo} was built from another source (sha256 {src['sha256'][:12]}…, the model "
            f"fingerprinted has {digest[:12]}…): build the training spec with the same source recipe and data"
        )
    positives: list[ModelprintModel] = [source]
    negatives: list[ModelprintModel] = []
    records = [{"id": src["id"], "role": "positive", "arch": src["arch"], "sha256": src["sha256"]}]
    categories = [src["category"]]
    for row in manifest.rows:
        if row["status"] != "done" or row is src:
            continue
        model = load_model(manifest.path(row))
        (positives if row["role"] == "positive" else negatives).append(model)
        records.append({k: row[k] for k in ("id", "role", "arch", "sha256")})
        categories.append(row["category"])
    if len(positives) < 1 or len(negatives) < 1:
        raise ParameterError(f"the training zoo {zoo} needs at least one negative model")
    # records list positives and negatives as the manifest interleaves them; order both as the models are
    order = sorted(range(len(records)), key=lambda i: records[i]["role"] != "positive")
    return TrainedModels(positives, negatives, [records[i] for i in order], [categories[i] for i in order])


def augmented_copy(source: ModelprintModel, g: torch.Generator, prune_max: float, noise_max: float):
    """The source pruned (the registered ``prune`` attack: global magnitude, rate uniform in
    [0, prune_max]) or noised (the ``noise`` attack: sigma uniform in [0, noise_max]), at random."""
    if torch.rand((), generator=g) < 0.5:
        attack = create_attack("prune", rate=float(torch.rand((), generator=g)) * prune_max)
    else:
        attack = create_attack("noise", sigma=float(torch.rand((), generator=g)) * noise_max)
    model = attack.apply(source, seed=int(torch.randint(0, 2**31 - 1, (), generator=g)))
    return model.eval().requires_grad_(False)


TRAINED_ZOO = "a training zoo (modelprint zoo build SPEC-train, e.g. mini-digits-train)"


@dataclass(kw_only=True)
class LearnsFromTrainedModels:
    """Settings shared by the methods that learn from a training zoo (``trained``) and from
    ``augmented`` fresh copies of the source per iteration (pruned up to ``prune_max`` or
    noised up to ``noise_max``): MetaFinger and MetaV."""

    trained: str | None = None
    augmented: int = 2
    prune_max: float = 0.5
    noise_max: float = 0.1

    def _check_augmentation(self) -> None:
        if self.augmented < 0 or not 0 <= self.prune_max < 1 or self.noise_max < 0:
            raise ParameterError("augmented >= 0, prune_max in [0, 1) and noise_max >= 0 are required")

    def required_inputs(self) -> dict[str, str]:
        return {"trained": TRAINED_ZOO}

    def inputs_digest(self) -> str:
        path = Path(self.trained or "") / "manifest.jsonl"
        return sha256_file(path) if self.trained and path.is_file() else ""

    def _load_trained(self, model: ModelprintModel) -> Any:
        if not self.trained:
            raise ParameterError(
                f"{self.name} learns from trained models: `trained`=ZOO (modelprint zoo build SPEC-train, "
                "e.g. mini-digits-train)",
                params=("trained",),
            )
        return load_trained(self.trained, model)

    def _augmented_copies(self, model: ModelprintModel, g: torch.Generator) -> list[ModelprintModel]:
        return [augmented_copy(model, g, self.prune_max, self.noise_max) for _ in range(self.augmented)]

"""Stealthiness: would an attacker's detector reject a fingerprint's queries?

NaturalFinger's protocol (Section 4.5): the attacker trains a CNN to tell their clean data
from abnormal inputs, Gaussian-noise images and FGSM adversarial examples, with Adam
(lr 1e-3) for 20 epochs; a method's **detection rate** is the fraction of its queries the
detector flags, averaged over detectors trained with 3 seeds. The attacker knows nothing
of the queries. The FGSM examples are made against the model the attacker holds (the
stolen copy: a zoo's source). We also report each detector's false-alarm rate on clean
held-out images, without which a detection rate means little.

Parameters:
    clean (int): clean images from the attacker's data, 5000 (the paper's 5k).
    sigma (float): standard deviation of the Gaussian noise added to clean images, 0.1.
    eps (float): FGSM step, 0.03 (the paper gives neither).
    epochs (int), lr (float): the detector's training, 20 and 1e-3 (Adam).
    seeds (tuple[int, ...]): detector seeds, (0, 1, 2).

Example::

    rates = detection_rates({"c": fp.x}, attacker_data, holder=stolen_model, test=test_data)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from .data import Dataset
from .errors import ParameterError
from .models import ModelprintModel
from .models.detector import DetectorCNN
from .progress import progress_bar


@dataclass(frozen=True)
class StealthConfig:
    clean: int = 5000
    sigma: float = 0.1
    eps: float = 0.03
    epochs: int = 20
    lr: float = 1e-3
    batch_size: int = 128
    seeds: tuple[int, ...] = (0, 1, 2)

    def __post_init__(self) -> None:
        if self.clean < 10 or self.epochs < 1 or self.lr <= 0 or not self.seeds:
            raise ParameterError("stealth: clean >= 10, epochs >= 1, lr > 0 and at least one seed are required")
        if not 0 < self.sigma <= 1 or not 0 < self.eps <= 1:
            raise ParameterError("stealth: sigma and eps must be in (0, 1]")


def fgsm(model: ModelprintModel, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """Untargeted FGSM: x + eps * sign(grad_x CE(f(x), y)), clipped to [0, 1]."""
    out = []
    for xb, yb in zip(x.split(256), y.split(256)):
        xb = xb.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(model(xb), yb, reduction="sum"), xb)
        out.append((xb + eps * grad.sign()).clamp(0, 1).detach())
    return torch.cat(out)


def train_detector(
    clean: torch.Tensor, abnormal: torch.Tensor, config: StealthConfig, seed: int, progress: bool = False
) -> DetectorCNN:
    """A binary CNN: 0 = clean, 1 = abnormal; classes weighted by their counts."""
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        det = DetectorCNN(clean.shape[1])
        det(clean[:2])  # materialise the lazy layer
    x = torch.cat([clean, abnormal])
    y = torch.cat([torch.zeros(len(clean), dtype=torch.long), torch.ones(len(abnormal), dtype=torch.long)])
    weight = torch.tensor([len(x) / (2 * len(clean)), len(x) / (2 * len(abnormal))])
    opt = torch.optim.Adam(det.parameters(), lr=config.lr)
    det.train()
    with progress_bar(config.epochs, f"stealth detector (seed {seed})", progress) as bar:
        for _ in range(config.epochs):
            for idx in torch.randperm(len(x), generator=g).split(config.batch_size):
                loss = F.cross_entropy(det(x[idx]), y[idx], weight=weight)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            bar.update(1)
    return det.eval()


def _flagged(det: DetectorCNN, x: torch.Tensor) -> float:
    with torch.no_grad():
        return float(torch.cat([det(b).argmax(1) for b in x.split(512)]).float().mean())


def detection_rates(
    queries: dict[str, torch.Tensor],
    data: Dataset,
    *,
    holder: ModelprintModel,
    test: Dataset | None = None,
    config: StealthConfig = StealthConfig(),
    progress: bool = True,
) -> dict[str, Any]:
    """Detection rate of each entry of ``queries`` ((N, C, H, W) in [0, 1]) under detectors
    trained on ``data`` (the attacker's clean images) against noise and FGSM on ``holder``.

    Returns ``{"methods": {name: {"mean", "per_seed"}}, "false_alarm": {"mean", "per_seed"},
    "settings": {...}}``; false alarms are measured on ``test`` (clean held-out images)."""
    if len(data) < 10:
        raise ParameterError(f"stealth: the attacker's data has {len(data)} images; at least 10 are needed")
    for name, x in queries.items():
        if x.shape[1:] != data.x.shape[1:]:
            raise ParameterError(f"stealth: {name}'s queries are {tuple(x.shape[1:])}, the data {data.input_shape}")
    per_seed: dict[str, list[float]] = {m: [] for m in queries}
    alarms: list[float] = []
    holder = holder.cpu().eval()
    for seed in config.seeds:
        g = torch.Generator().manual_seed(10_000 + seed)
        idx = torch.randperm(len(data), generator=g)[: config.clean]
        clean = data.x[idx]
        noisy = (clean + config.sigma * torch.randn(clean.shape, generator=g)).clamp(0, 1)
        adversarial = fgsm(holder, clean, holder.predict(clean), config.eps)
        det = train_detector(clean, torch.cat([noisy, adversarial]), config, seed, progress)
        for m, x in queries.items():
            per_seed[m].append(_flagged(det, x.float()))
        if test is not None and len(test):
            alarms.append(_flagged(det, test.x))

    def summary(values: list[float]) -> dict[str, Any]:
        return {"mean": round(sum(values) / len(values), 4), "per_seed": [round(v, 4) for v in values]}

    return {
        "methods": {m: summary(v) for m, v in per_seed.items()},
        "false_alarm": summary(alarms) if alarms else None,
        "settings": {**config.__dict__, "seeds": list(config.seeds), "clean_used": min(config.clean, len(data))},
    }

"""One training loop used everywhere (owner models, independent models, later attacks)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F

from .data import Dataset
from .errors import ParameterError
from .models import ModelprintModel, create_model, find_arch
from .progress import progress_bar


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 30
    batch_size: int = 64
    optimizer: str = "sgd"  # sgd | adam
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"  # cosine | step | constant
    augment: str = "crop"  # none | crop | flip | crop+flip
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        if self.epochs < 0 or self.batch_size < 1 or not (math.isfinite(self.lr) and self.lr > 0):
            raise ParameterError("epochs must be >= 0, batch_size >= 1 and lr a finite number > 0")
        for name in ("momentum", "weight_decay", "label_smoothing"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                raise ParameterError(f"{name} must be a finite number >= 0, got {getattr(self, name)}")
        if self.optimizer not in ("sgd", "adam"):
            raise ParameterError(f"optimizer must be sgd or adam, got {self.optimizer!r}")
        if self.schedule not in ("cosine", "step", "constant"):
            raise ParameterError(f"schedule must be cosine, step or constant, got {self.schedule!r}")
        if self.augment not in ("none", "crop", "flip", "crop+flip"):
            raise ParameterError(f"augment must be none, crop, flip or crop+flip, got {self.augment!r}")


@dataclass(kw_only=True)
class TrainingSettings:
    """The part of :class:`TrainConfig` an attack that trains exposes as its own parameters (a
    mixin of dataclass fields), with an attacker's defaults: shorter and gentler than training
    from scratch. They are recorded in each derived model's recipe."""

    epochs: int = 20
    lr: float = 0.01
    batch_size: int = 64
    optimizer: str = "sgd"
    augment: str = "crop"

    def train_config(self) -> TrainConfig:
        """The run these settings describe, on a cosine schedule (TrainConfig's other fields at their defaults)."""
        return TrainConfig(**{f.name: getattr(self, f.name) for f in fields(TrainingSettings)}, schedule="cosine")


def arch_training(arch: str) -> dict[str, Any]:
    """An architecture's own training needs: its class attribute ``training``, a dict of
    :class:`TrainConfig` fields plus ``epoch_factor`` (how many times the usual epochs it needs)."""
    return dict(getattr(find_arch(arch), "training", {}))


def training_settings(arch: str, base: Mapping[str, Any] = {}, explicit: Mapping[str, Any] = {}) -> dict[str, Any]:
    """The training settings of one ``arch`` model, from the general to the particular:
    :class:`TrainConfig`'s defaults, then ``base`` (what holds for every architecture on this
    data, e.g. a zoo spec's ``[train]`` table), then the architecture's needs
    (:func:`arch_training`; ``epoch_factor`` multiplies the epochs so far), then ``explicit``
    (what was written for this model). Returns plain TrainConfig fields, validated."""
    names = {f.name for f in fields(TrainConfig)}
    unknown = sorted((set(base) | set(explicit)) - names)
    if unknown:
        raise ParameterError(f"unknown training setting(s) {', '.join(unknown)}; settings: {', '.join(sorted(names))}")
    settings = {**asdict(TrainConfig()), **base}
    TrainConfig(**settings)  # before the factor: it would turn -1 epochs into 1
    own = arch_training(arch)
    factor = own.pop("epoch_factor", 1)
    settings.update(own, epochs=max(1, round(settings["epochs"] * factor)) if settings["epochs"] else 0)
    settings.update(explicit)
    TrainConfig(**settings)
    return settings


def augment_batch(x: torch.Tensor, mode: str, g: torch.Generator) -> torch.Tensor:
    """Random crop with zero padding of size/8 and/or horizontal flip, per image."""
    if "crop" in mode:
        n, _, h, w = x.shape
        pad = max(1, h // 8)
        padded = F.pad(x, (pad, pad, pad, pad))
        dy = torch.randint(0, 2 * pad + 1, (n,), generator=g)
        dx = torch.randint(0, 2 * pad + 1, (n,), generator=g)
        rows = (dy[:, None] + torch.arange(h)[None]).view(n, 1, h, 1).expand(n, x.shape[1], h, w + 2 * pad)
        x = padded.gather(2, rows)
        cols = (dx[:, None] + torch.arange(w)[None]).view(n, 1, 1, w).expand(n, x.shape[1], h, w)
        x = x.gather(3, cols)
    if "flip" in mode:
        flip = torch.rand(len(x), generator=g) < 0.5
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
    return x


def _lr_at(cfg: TrainConfig, epoch_progress: float) -> float:
    if cfg.schedule == "cosine":
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * epoch_progress / max(cfg.epochs, 1)))
    if cfg.schedule == "step":
        return cfg.lr * 0.1 ** int(epoch_progress / max(cfg.epochs, 1) * 3)  # /10 at 1/3 and 2/3
    return cfg.lr


@torch.no_grad()
def accuracy(model: ModelprintModel, data: Dataset, batch_size: int = 512) -> float:
    if len(data) == 0:
        return float("nan")
    return (model.predict(data.x, batch_size) == data.y).float().mean().item()


def _optimizer(cfg: TrainConfig, trainable: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        nesterov = cfg.momentum > 0
        return torch.optim.SGD(
            trainable, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=nesterov
        )
    return torch.optim.Adam(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _fit(
    model: ModelprintModel,
    data: Dataset,
    cfg: TrainConfig,
    opt: torch.optim.Optimizer,
    g: torch.Generator,
    *,
    label: str,
    device: str,
    progress: bool,
    targets: torch.Tensor | None,
    loss_fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None,
) -> None:
    """``cfg.epochs`` epochs of mini-batch steps in ``g``'s order, the learning rate following the schedule."""
    n = len(data)
    steps_per_epoch = max(1, math.ceil(n / cfg.batch_size))
    with progress_bar(cfg.epochs * steps_per_epoch, label, progress) as bar:
        for epoch in range(cfg.epochs):
            order = torch.randperm(n, generator=g)
            for i in range(steps_per_epoch):
                idx = order[i * cfg.batch_size : (i + 1) * cfg.batch_size]
                if len(idx) < 2:  # batch norm needs two samples
                    continue
                for group in opt.param_groups:
                    group["lr"] = _lr_at(cfg, epoch + i / steps_per_epoch)
                x = augment_batch(data.x[idx], cfg.augment, g).to(device)
                target = (targets if targets is not None else data.y)[idx].to(device)
                if loss_fn is None:
                    loss = F.cross_entropy(model(x), target, label_smoothing=cfg.label_smoothing)
                else:
                    loss = loss_fn(model(x), target, x)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                bar.update(1, description=f"{label} e{epoch + 1} loss {loss.item():.3f}")


def train(
    model: ModelprintModel,
    data: Dataset,
    cfg: TrainConfig = TrainConfig(),
    *,
    seed: int = 0,
    device: str = "cpu",
    test: Dataset | None = None,
    progress: bool = True,
    params: list[torch.nn.Parameter] | None = None,
    record: bool = True,
    loss_fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    targets: torch.Tensor | None = None,
    frozen_norm: bool = False,
) -> ModelprintModel:
    """Train ``model`` in place on ``data`` and return it (eval mode, on CPU).

    ``params`` limits training to those parameters (e.g. the last layer for fine-tuning).
    ``targets`` (N, ...) replaces the labels (e.g. a teacher's soft labels), and
    ``loss_fn(logits, targets, x)`` the cross-entropy. ``record=False`` leaves the card's
    ``training`` entry alone (attacks record themselves in the lineage instead).
    The card's ``accuracy`` is set on ``test`` when given.
    """
    if len(data) < 2:
        raise ParameterError(f"training needs at least 2 examples, {data.spec}:{data.split} has {len(data)}")
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    started = time.perf_counter()
    model.to(device).train()
    if frozen_norm:
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()
    trainable = params if params is not None else [p for p in model.parameters() if p.requires_grad]
    # Frozen parameters need no gradient: cheaper backward passes when only a head trains.
    was_trainable = {p: p.requires_grad for p in model.parameters()}
    chosen = {id(p) for p in trainable}
    for p in model.parameters():
        p.requires_grad_(id(p) in chosen)
    opt = _optimizer(cfg, trainable)
    label = f"train {model.card.arch} seed {seed} on {data.spec} {data.split}"  # names the model in a log
    _fit(model, data, cfg, opt, g, label=label, device=device, progress=progress, targets=targets, loss_fn=loss_fn)
    for p, flag in was_trainable.items():
        p.requires_grad_(flag)
    model.eval().cpu()
    if record:
        model.card.training = {**asdict(cfg), "seed": seed, "threads": torch.get_num_threads(), "device": device}
        model.card.train_seconds = round(time.perf_counter() - started, 2)
    if test is not None:
        model.card.accuracy = round(accuracy(model, test), 6)
    return model


def train_new(
    arch: str,
    data: Dataset,
    cfg: TrainConfig = TrainConfig(),
    *,
    seed: int = 0,
    test: Dataset | None = None,
    device: str = "cpu",
    progress: bool = True,
    **arch_args: Any,
) -> ModelprintModel:
    """Create ``arch`` for ``data`` (normalised by its per-channel statistics) and train it."""
    c = data.input_shape[0]
    mean = tuple(data.x.transpose(0, 1).reshape(c, -1).mean(1).tolist())
    std = tuple(max(s, 1e-3) for s in data.x.transpose(0, 1).reshape(c, -1).std(1).tolist())
    model = create_model(
        arch, num_classes=data.num_classes, input_shape=data.input_shape, mean=mean, std=std, seed=seed, **arch_args
    )
    model.card.classes, model.card.dataset, model.card.split = data.classes, data.spec, data.split
    return train(model, data, cfg, seed=seed, device=device, test=test, progress=progress)

"""Model extraction: a new network of any registered architecture learns the victim's
function.

``distill`` (Hinton et al. 2015): the thief holds the victim and unlabelled data of the
same distribution (the ``attacker`` split); the student minimises
``T^2 * KL(softmax(teacher(x)/T) || softmax(student(x)/T))`` on augmented batches.

``knockoff`` (Orekondy et al. 2019, Knockoff Nets): the victim is a black box queried once
on a transfer set from another distribution; the student trains on the returned
probabilities (``output="probs"``) or top-1 labels (``output="label"``). ``classes`` keeps
only the images of those classes in the transfer set (a class shift: the thief's data
need not cover the victim's classes evenly); ``budget`` caps the number of queries.

Parameters (both):
    arch (str): student architecture (``modelprint list``); arch_args (dict): its arguments.
    epochs, lr, batch_size, optimizer, augment: the student's training run; ``lr`` and
        ``optimizer`` default to the student architecture's own (``modelprint.train.arch_training``)
        and its ``epoch_factor`` scales ``epochs``.
Distill only: T (float) temperature. Knockoff only: budget (int, 0 = all), output, classes.

Example::

    student = Distill(arch="vgg11", arch_args={"width": 16}).apply(victim, attacker_data, seed=1)
    thief = Knockoff(arch="resnet18", classes=[0, 1, 2, 3, 4, 5]).apply(victim, other_data)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from ..data import Dataset
from ..errors import ParameterError
from ..models import ModelprintModel, create_model, find_arch
from ..train import TrainConfig, TrainingSettings, train, training_settings
from .base import Attack, register_attack


@dataclass(kw_only=True)
class _Extraction(TrainingSettings, Attack):
    """What distillation and knockoff share: a student network and its training run."""

    arch: str = "cnn"
    arch_args: dict[str, Any] = field(default_factory=dict)
    epochs: int = 30
    lr: float | None = None  # None: the student architecture's own (0.05 with SGD for most)
    optimizer: str | None = None

    needs_data = True
    default_split = "attacker"
    strength = "arch"

    def step_id(self) -> str:
        shown = ",".join(f"{k}={v}" for k, v in sorted(self.arch_args.items()))
        return f"{self.name}({self.arch}{f'[{shown}]' if shown else ''})"

    def train_config(self) -> TrainConfig:
        """``epochs`` counts for a student without an ``epoch_factor`` (vit-tiny trains twice
        as long); the optimizer and learning rate are the student architecture's unless given."""
        base = {"epochs": self.epochs, "lr": 0.05, "optimizer": "sgd", "batch_size": self.batch_size}
        given = {k: v for k, v in (("lr", self.lr), ("optimizer", self.optimizer)) if v is not None}
        settings = training_settings(self.arch, {**base, "augment": self.augment, "schedule": "cosine"}, given)
        return TrainConfig(**settings)

    def _check(self) -> None:
        find_arch(self.arch)  # unknown names fail here, with the list of known ones
        self.train_config()

    def _train_student(
        self, victim: ModelprintModel, data: Dataset, g: torch.Generator, device: str, loss_fn, targets=None
    ) -> ModelprintModel:
        card = victim.card
        student = create_model(
            self.arch,
            num_classes=card.num_classes,
            input_shape=card.input_shape,
            mean=card.mean,
            std=card.std,
            seed=int(torch.randint(0, 2**31 - 1, (1,), generator=g)),
            **self.arch_args,
        )
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=g))
        cfg = self.train_config()
        return train(
            student, data, cfg, seed=seed, device=device, progress=False, record=False, loss_fn=loss_fn, targets=targets
        )


@register_attack("distill")
@dataclass(kw_only=True)
class Distill(_Extraction):
    """Distillation (Hinton et al. 2015): a student of any registered architecture learns the
    victim's softened outputs on the thief's unlabelled data (the ``attacker`` split).

    Arguments:
        arch (str): student architecture, "cnn". arch_args (dict): its arguments. T (float):
        temperature, 4.0. epochs, lr, batch_size, optimizer, augment: the student's run.

    Example::

        student = create_attack("distill", arch="vgg11", arch_args={"width": 16}).apply(victim, attacker_data)
    """

    T: float = 4.0

    def __post_init__(self) -> None:
        self._check()
        if not self.T > 0:
            raise ParameterError(f"T must be > 0, got {self.T}")

    def _apply(self, model: ModelprintModel, data: Dataset | None, g: torch.Generator, device: str) -> ModelprintModel:
        teacher = model.to(device).eval()
        T = self.T

        def loss(logits: torch.Tensor, _: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                soft = F.softmax(teacher(x) / T, 1)
            return F.kl_div(F.log_softmax(logits / T, 1), soft, reduction="batchmean") * T * T

        return self._train_student(model, data, g, device, loss)


@register_attack("knockoff")
@dataclass(kw_only=True)
class Knockoff(_Extraction):
    """Knockoff Nets (Orekondy et al. 2019): the victim answers a transfer set from another
    distribution once; a student trains on its probabilities or top-1 labels.

    Arguments:
        arch (str), arch_args (dict): the student. budget (int): most queries, 0 = all.
        output (str): "probs" or "label". classes (list[int] | None): keep only these classes
        of the transfer set. epochs, lr, batch_size, optimizer, augment: the student's run.

    Example::

        thief = create_attack("knockoff", arch="resnet18", classes=[0, 1, 2]).apply(victim, other_data)
    """

    budget: int = 0
    output: str = "probs"
    classes: list[int] | None = None
    augment: str = "none"  # the answers belong to the exact images queried

    def __post_init__(self) -> None:
        self._check()
        if self.output not in ("probs", "label"):
            raise ParameterError(f"output must be probs or label, got {self.output!r}")
        if self.budget < 0:
            raise ParameterError(f"budget must be >= 0 (0 = the whole transfer set), got {self.budget}")

    def _apply(self, model: ModelprintModel, data: Dataset | None, g: torch.Generator, device: str) -> ModelprintModel:
        transfer = data
        if self.classes is not None:
            keep = torch.isin(data.y, torch.tensor(self.classes, dtype=data.y.dtype))
            transfer = data.subset(torch.nonzero(keep).flatten(), data.split)
        order = torch.randperm(len(transfer), generator=g)
        if self.budget:
            order = order[: self.budget]
        transfer = transfer.subset(order, transfer.split)
        if len(transfer) < 2:
            raise ParameterError(f"knockoff: the transfer set has {len(transfer)} images; widen classes or budget")
        model.to(device).eval()
        with torch.no_grad():  # the only thing the thief sees: one answer per query
            answers = torch.cat(
                [F.softmax(model(transfer.x[i : i + 512].to(device)), 1).cpu() for i in range(0, len(transfer), 512)]
            )
        if self.output == "label":
            answers = F.one_hot(answers.argmax(1), answers.shape[1]).float()

        def loss(logits: torch.Tensor, target: torch.Tensor, _: torch.Tensor) -> torch.Tensor:
            return -(target * F.log_softmax(logits, 1)).sum(1).mean()

        return self._train_student(model, transfer, g, device, loss, answers)

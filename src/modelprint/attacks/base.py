"""The attack base class and registry."""

from __future__ import annotations

import copy
import dataclasses
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch

from ..data import Dataset
from ..errors import ParameterError
from ..models import ModelprintModel
from ..registry import Registry
from ..train import accuracy


class Attack(ABC):
    """Base: keyword-only dataclass settings; :meth:`apply` copies the model, seeds, runs
    ``_apply`` on the copy and records the lineage. The input model is never changed.

    Class attributes a subclass sets: ``needs_data`` (it trains, so :meth:`apply` wants
    data), ``default_split`` (which split of a data set it uses when the caller names only
    the data set: ``tune`` for fine-tuning, ``attacker`` for extraction) and ``id_params``
    (the settings that name a derived model, e.g. ``prune(0.5)``).
    """

    name: str = ""
    needs_data: ClassVar[bool] = False
    default_split: ClassVar[str] = "tune"
    id_params: ClassVar[tuple[str, ...]] = ()
    # The setting a zoo sweeps to make the attack stronger or weaker (bench plots margins by it).
    strength: ClassVar[str | None] = None

    def params(self) -> dict[str, Any]:
        return dataclasses.asdict(self) if dataclasses.is_dataclass(self) else {}

    def step_id(self) -> str:
        """A short readable name of this step, e.g. ``finetune(ftal)`` or ``distill(resnet18)``."""
        values = [_short(getattr(self, p)) for p in self.id_params]
        return f"{self.name}({','.join(values)})" if values else self.name

    def apply(
        self,
        model: ModelprintModel,
        data: Dataset | None = None,
        *,
        seed: int = 0,
        device: str = "cpu",
        test: Dataset | None = None,
    ) -> ModelprintModel:
        """The derived model; ``test`` (optional) sets the card's accuracy."""
        if not isinstance(model, ModelprintModel):
            raise ParameterError("model must be a ModelprintModel (use modelprint.models.load_model)")
        if self.needs_data and (data is None or len(data) < 2):
            raise ParameterError(
                f"attack {self.name!r} trains, so it needs data: give `data` (e.g. digits:16)", params=("data",)
            )
        child = model.derive({"attack": self.name, **self.params(), "seed": seed})
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            result = self._apply(child, data, torch.Generator().manual_seed(seed), device)
        if result is not None and result is not child:  # extraction: a new network, the victim's lineage
            result.card.lineage = copy.deepcopy(child.card.lineage)
            result.card.classes, result.card.dataset, result.card.split = (
                model.card.classes,
                model.card.dataset,
                model.card.split,
            )
            child = result
        child = child.cpu().eval()
        if test is not None:
            child.card.accuracy = round(accuracy(child, test), 6)
        return child

    @abstractmethod
    def _apply(
        self, model: ModelprintModel, data: Dataset | None, g: torch.Generator, device: str
    ) -> ModelprintModel | None:
        """Change ``model`` in place (return None) or return a new model (extraction)."""


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "+".join(_short(v) for v in value)
    return str(value)


ATTACKS: Registry[Attack] = Registry("attack")
register_attack = ATTACKS.register

create_attack = ATTACKS.create

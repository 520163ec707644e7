"""The attack base class and registry."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from ..data import Dataset
from ..errors import ParameterError
from ..models import ModelprintModel
from ..registry import Registry


class Attack:
    """Base: keyword-only dataclass settings; :meth:`apply` copies the model, seeds, runs
    ``_apply`` on the copy and records the lineage. The input model is never changed."""

    name: str = ""

    def params(self) -> dict[str, Any]:
        return dataclasses.asdict(self) if dataclasses.is_dataclass(self) else {}

    def apply(self, model: ModelprintModel, data: Dataset | None = None, *, seed: int = 0) -> ModelprintModel:
        if not isinstance(model, ModelprintModel):
            raise ParameterError("model must be a ModelprintModel (use modelprint.models.load_model)")
        child = model.derive({"attack": self.name, **self.params(), "seed": seed})
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self._apply(child, data, torch.Generator().manual_seed(seed))
        return child.eval()

    def _apply(self, model: ModelprintModel, data: Dataset | None, g: torch.Generator) -> None:
        raise NotImplementedError  # abstract: every registered attack overrides it


ATTACKS: Registry[Attack] = Registry("attack")
register_attack = ATTACKS.register

create_attack = ATTACKS.create

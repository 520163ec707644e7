"""Fine-tuning in the four modes of Adi et al. (USENIX Security 2018), "Turning your
weakness into a strength", as FingerBench uses them:

- ``ftll``: train only the last (classifier) layer;
- ``ftal``: train all layers;
- ``rtll``: re-initialise the last layer, then train only it;
- ``rtal``: re-initialise the last layer, then train all layers.

The attacker fine-tunes on its own labelled data: the ``tune`` split by default.
In the last-layer modes the rest of the network is frozen, batch-norm statistics included.

Parameters:
    mode (str): ftll | ftal | rtll | rtal.
    epochs (int), lr (float), batch_size (int), optimizer (str), augment (str): the
        fine-tuning run (SGD with momentum and a cosine schedule by default).

Example::

    tuned = Finetune(mode="rtal").apply(load_model("owner.safetensors"), load_dataset("digits:16", "tune"))
    save_model(tuned, "owner-rtal.safetensors")
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..data import Dataset
from ..errors import ParameterError
from ..models import ModelprintModel
from ..train import TrainingSettings, train
from .base import Attack, register_attack

MODES = ("ftll", "ftal", "rtll", "rtal")


def last_layer(model: nn.Module) -> nn.Linear:
    """The classifier: the last ``nn.Linear`` registered in the network."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ParameterError("the model has no linear classifier layer to fine-tune")
    return linears[-1]


@register_attack("finetune")
@dataclass(kw_only=True)
class Finetune(TrainingSettings, Attack):
    """Fine-tuning in the four modes of Adi et al. (USENIX Security 2018) on the attacker's own
    labelled data (the ``tune`` split by default).

    Arguments:
        mode (str): ftll | ftal | rtll | rtal, "ftal". epochs (int): 20. lr (float): 0.01.
        batch_size (int): 64. optimizer (str): "sgd". augment (str): "crop".

    Example::

        tuned = create_attack("finetune", mode="rtal").apply(load_model("owner.safetensors"), tune_data)
    """

    mode: str = "ftal"

    needs_data = True
    default_split = "tune"
    id_params = ("mode",)
    strength = "mode"

    def step_id(self) -> str:
        """``finetune(ftal)``; the optimiser and learning rate join the name when they are not the
        defaults (``finetune(ftal,adam,lr=0.001)``), so a spec can sweep them."""
        extra = [self.optimizer] if self.optimizer != "sgd" else []
        extra += [f"lr={self.lr:g}"] if self.lr != 0.01 else []
        return f"{self.name}({','.join([self.mode, *extra])})"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ParameterError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        self.train_config()  # validates the training settings

    def _apply(self, model: ModelprintModel, data: Dataset | None, g: torch.Generator, device: str) -> None:
        head = last_layer(model)
        if self.mode.startswith("rt"):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=g)))
                head.reset_parameters()
        last_only = self.mode.endswith("ll")
        params = list(head.parameters()) if last_only else None
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=g))
        train(
            model,
            data,
            self.train_config(),
            seed=seed,
            device=device,
            progress=False,
            params=params,
            record=False,
            frozen_norm=last_only,
        )

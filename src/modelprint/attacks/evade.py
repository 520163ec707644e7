"""The thief who filters queries: the stolen model goes behind a query detector of its own,
and flagged queries are answered by a decoy, an independent model the thief trains on its
own labelled data.

The detector is the one of NaturalFinger's stealth protocol (Section 4.5), trained by the
thief: a CNN telling the thief's clean images from Gaussian-noise images and FGSM examples
made against the stolen model. Fingerprint queries that look perturbed are flagged and get
an innocent model's answer; natural images pass to the stolen model. The result is an
``evasive`` model (:mod:`modelprint.models.evasive`): one file, servable and exportable.

Parameters:
    decoy_arch (str): the decoy's architecture, "cnn"; decoy_args (dict): its arguments.
    decoy_epochs (int): the decoy's training epochs (its architecture's optimiser), 10.
    clean (int): the thief's labelled images the detector and the decoy train on, 5000 (the
        stealth protocol's).
    sigma (float): Gaussian noise of the abnormal images, 0.1. eps (float): FGSM step, 0.03.
    detector_epochs (int): the detector's training epochs (Adam, lr 1e-3), 20.
    false_alarm (float): the most of its own held-out clean images the thief lets the detector
        flag, 0.02: the flagging threshold rises from the detector's argmax until no more are.

The card's ``training["gate"]`` records what the gate achieves on the held-out images (the
shares of clean, noisy and FGSM images it flags); a gate that flags under half of the FGSM
examples is also logged as a warning.

Example::

    evasive = Evade().apply(stolen, attacker_data, seed=1)
    save_model(evasive, "evasive.safetensors")       # flagged queries get the decoy's labels
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from ..data import Dataset
from ..errors import ParameterError
from ..models import ModelprintModel, create_model, find_arch
from ..models.evasive import member_spec
from ..progress import log
from ..stealth import StealthConfig, fgsm, train_detector
from ..train import TrainConfig, train_new, training_settings
from .base import Attack, register_attack


@register_attack("evade")
@dataclass(kw_only=True)
class Evade(Attack):
    """A query detector in front of the stolen model; flagged queries get a decoy's answer.

    Arguments:
        decoy_arch (str): "cnn"; decoy_args (dict); decoy_epochs (int): 10. clean (int): 5000.
        sigma (float): 0.1. eps (float): 0.03. detector_epochs (int): 20. false_alarm (float): 0.02.

    Example::

        evasive = create_attack("evade").apply(stolen, attacker_data, seed=1)
    """

    decoy_arch: str = "cnn"
    decoy_args: dict[str, Any] = field(default_factory=dict)
    decoy_epochs: int = 10
    clean: int = 5000
    sigma: float = 0.1
    eps: float = 0.03
    detector_epochs: int = 20
    false_alarm: float = 0.02

    needs_data = True
    default_split = "attacker"
    id_params = ("decoy_arch",)
    arch: ClassVar[str] = "evasive"  # the network this attack returns (a zoo plan's arch)

    def __post_init__(self) -> None:
        if find_arch(self.decoy_arch) is find_arch("evasive"):
            raise ParameterError("evade: the decoy cannot itself be evasive")
        if self.decoy_epochs < 1:
            raise ParameterError(f"evade: decoy_epochs must be >= 1, got {self.decoy_epochs}")
        if not 0 < self.false_alarm < 1:
            raise ParameterError(f"evade: false_alarm must be in (0, 1), got {self.false_alarm}")
        self.detector_config()  # the detector's settings fail here, not after the decoy trained

    def detector_config(self) -> StealthConfig:
        return StealthConfig(clean=self.clean, sigma=self.sigma, eps=self.eps, epochs=self.detector_epochs)

    def decoy_config(self) -> TrainConfig:
        return TrainConfig(**training_settings(self.decoy_arch, {"epochs": self.decoy_epochs}))

    def _apply(self, model: ModelprintModel, data: Dataset | None, g: torch.Generator, device: str) -> ModelprintModel:
        if model.card.arch == "evasive":
            raise ParameterError("evade: this model is already evasive")
        model = model.cpu().eval()
        detector_seed, decoy_seed, init_seed = (int(s) for s in torch.randint(0, 2**31 - 1, (3,), generator=g))
        config = self.detector_config()
        order = torch.randperm(len(data), generator=g)
        # A fifth (at most 1000) of the thief's images is held out to set the flagging threshold.
        held = min(1000, max(1, len(data) // 5))
        chosen = data.subset(order[held:][: config.clean], data.split)
        clean = chosen.x
        noisy = (clean + config.sigma * torch.randn(clean.shape, generator=g)).clamp(0, 1)
        adversarial = fgsm(model, clean, model.predict(clean), config.eps)
        detector = train_detector(clean, torch.cat([noisy, adversarial]), config, detector_seed)
        decoy = train_new(
            self.decoy_arch,
            chosen,
            self.decoy_config(),
            seed=decoy_seed,
            device=device,
            progress=False,
            **self.decoy_args,
        )
        card = model.card
        evasive = create_model(
            "evasive",
            num_classes=card.num_classes,
            input_shape=card.input_shape,
            mean=(0.0,) * card.input_shape[0],
            std=(1.0,) * card.input_shape[0],
            seed=init_seed,
            model=member_spec(card.arch, card.arch_args, card.mean, card.std),
            decoy=member_spec(decoy.card.arch, decoy.card.arch_args, decoy.card.mean, decoy.card.std),
            detector_width=16,
        )
        evasive.net.model.net.load_state_dict(model.net.state_dict())
        evasive.net.decoy.net.load_state_dict(decoy.net.state_dict())
        evasive.net.detector.load_state_dict(detector.state_dict())
        held_x = data.x[order[:held]]
        flags_clean = evasive.net.set_threshold(held_x, self.false_alarm)  # in eval mode
        evasive.eval()  # the gate as it will answer: eval-mode detector statistics
        evasive.card.training = {"gate": self._gate_rates(evasive, model, held_x, flags_clean, g)}
        return evasive

    def _gate_rates(
        self,
        evasive: ModelprintModel,
        stolen: ModelprintModel,
        held: torch.Tensor,
        flags_clean: float,
        g: torch.Generator,
    ) -> dict[str, Any]:
        """What the thief's gate achieves on its held-out images, recorded in the card: the share
        of clean ones (``flags_clean``, as setting the threshold measured it), noisy ones and FGSM
        examples against the stolen model that it flags. A gate that flags few FGSM examples lets
        generated queries through; it is said, not hidden."""
        noisy = (held + self.sigma * torch.randn(held.shape, generator=g)).clamp(0, 1)
        adversarial = fgsm(stolen, held, stolen.predict(held), self.eps)
        with torch.no_grad():
            rates = {
                k: float(evasive.net.flagged(x).float().mean())
                for k, x in (("flags_noise", noisy), ("flags_fgsm", adversarial))
            }
        rates = {"flags_clean": flags_clean, **rates}
        if rates["flags_fgsm"] < 0.5:
            log.warning(
                "evade: the thief's detector flags only %.2f of its held-out FGSM examples (clean %.2f): "
                "most perturbed queries will reach the stolen model",
                rates["flags_fgsm"],
                rates["flags_clean"],
            )
        threshold = round(float(evasive.net.threshold), 6)
        return {"threshold": threshold, "held_out": len(held), **{k: round(v, 4) for k, v in rates.items()}}

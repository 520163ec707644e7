"""An evasive model: a thief's network behind a query detector of its own.

Images the detector calls clean get the thief's model's answer; images it flags (perturbed
or unnatural: a fingerprint's queries, if the detector is good) get a decoy's answer, an
independent model's. Every input runs through all three networks and the answer is picked
per image with ``torch.where``, so the model exports to ONNX and TorchScript like any other.

The card's arguments describe both members as plain data, each with its own normalisation
(``{"arch", "arch_args", "mean", "std"}``); the outer card's mean is 0 and std 1, so the
detector and the members see the images in [0, 1] as they are.

Example::

    evasive = create_attack("evade").apply(stolen, attacker_data, seed=1)   # arch "evasive"
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..errors import ParameterError
from .architectures import create_arch, register_arch
from .detector import DetectorCNN
from .files import logits_of

MEMBER_KEYS = ("arch", "arch_args", "mean", "std")


class Normalised(nn.Module):
    """``net((x - mean) / std)``: one member with its own normalisation."""

    def __init__(self, net: nn.Module, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return logits_of(self.net((x - self.mean) / self.std))


def member_spec(arch: str, arch_args: dict[str, Any], mean: tuple[float, ...], std: tuple[float, ...]) -> dict:
    """The card entry of one member: what :class:`EvasiveNet` rebuilds it from."""
    return {"arch": arch, "arch_args": dict(arch_args), "mean": list(mean), "std": list(std)}


def _member(role: str, spec: Any, num_classes: int, input_shape: tuple[int, int, int]) -> Normalised:
    if not isinstance(spec, dict) or sorted(spec) != sorted(MEMBER_KEYS):
        raise ParameterError(f"evasive: {role} must be a table with exactly {', '.join(MEMBER_KEYS)}")
    if spec["arch"] == "evasive":  # one gate per model: a card cannot nest them without bound
        raise ParameterError(f"evasive: the {role} cannot itself be evasive")
    if not isinstance(spec["arch_args"], dict):
        raise ParameterError(f"evasive: the {role}'s arch_args must be a table")
    c = input_shape[0]
    for key in ("mean", "std"):
        values = spec[key]
        if not isinstance(values, list) or len(values) != c:
            raise ParameterError(f"evasive: the {role}'s {key} must list {c} numbers")
        if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in values):
            raise ParameterError(f"evasive: the {role}'s {key} must be finite numbers")
    if not all(v > 0 for v in spec["std"]):
        raise ParameterError(f"evasive: the {role}'s std must be positive")
    net = create_arch(str(spec["arch"]), num_classes=num_classes, input_shape=input_shape, **spec["arch_args"])
    return Normalised(net, [float(v) for v in spec["mean"]], [float(v) for v in spec["std"]])


@register_arch("evasive")
class EvasiveNet(nn.Module):
    """A model behind a query detector: flagged images get the decoy's logits.

    Arguments:
        model (dict): the thief's network, ``{"arch", "arch_args", "mean", "std"}``.
        decoy (dict): the independent network that answers flagged queries, alike.
        detector_width (int): the detector's first channels, 16.

    Shape: input (N, C, H, W) in [0, 1], logits (N, num_classes).

    Example::

        net = create_arch("evasive", num_classes=10, input_shape=(1, 16, 16),
                          model=member_spec("cnn", {}, (0.5,), (0.25,)), decoy=member_spec("cnn", {}, (0.5,), (0.25,)))
    """

    limits = {"detector_width": (1, 256)}

    def __init__(
        self,
        *,
        num_classes: int,
        input_shape: tuple[int, int, int],
        model: dict[str, Any],
        decoy: dict[str, Any],
        detector_width: int = 16,
    ) -> None:
        super().__init__()
        self.model = _member("model", model, num_classes, input_shape)
        self.decoy = _member("decoy", decoy, num_classes, input_shape)
        self.detector = DetectorCNN(input_shape[0], detector_width, input_shape=input_shape)
        # The detector's logit margin (abnormal minus clean) above which an image is flagged;
        # the thief raises it from 0 until few enough of its own clean images are.
        self.register_buffer("threshold", torch.zeros(()))

    def margin(self, x: torch.Tensor) -> torch.Tensor:
        """(N,) the detector's abnormal logit minus its clean logit."""
        logits = self.detector(x)
        return logits[:, 1] - logits[:, 0]

    @torch.no_grad()
    def set_threshold(self, clean: torch.Tensor, false_alarm: float) -> float:
        """Raise the threshold from 0 (the detector's argmax) until at most ``false_alarm`` of
        ``clean`` (N, C, H, W) is flagged; margins in eval mode, whatever mode the net is in
        (batch statistics would move them, and the running ones with them). Returns the share
        of ``clean`` flagged."""
        was_training = self.training
        self.eval()
        margins = self.margin(clean)
        # the (k+1)-th largest margin, k = floor(false_alarm * N): only the k above it are flagged
        # (an interpolated quantile can sit below one more of them)
        allowed = int(false_alarm * len(margins))
        self.threshold.fill_(max(0.0, float(margins.sort(descending=True).values[allowed])))
        self.train(was_training)
        return float((margins > self.threshold).float().mean())

    def flagged(self, x: torch.Tensor) -> torch.Tensor:
        """(N,) booleans: the images the detector calls abnormal."""
        return self.margin(x) > self.threshold

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(self.flagged(x).unsqueeze(1), self.decoy(x), self.model(x))

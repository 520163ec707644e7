"""Post-training weight quantisation, the compression a thief applies before shipping.

``dtype="int8"``: every conv and linear weight is rounded to symmetric 8-bit integers,
``q = clamp(round(w / scale), -127, 127)`` with ``scale = max|w| / 127`` per output channel
(``granularity="channel"``) or per tensor (``"tensor"``, PyTorch's dynamic-quantisation
default), and stored dequantised (``q * scale``), so every suspect adapter reads the file;
the stored weights hold at most 255 distinct values per scale group.
``dtype="fp16"``: every floating-point parameter and buffer is cast to half precision and back.

Parameters:
    dtype (str): int8 | fp16.
    granularity (str): channel | tensor (int8 only).

Example::

    small = Quantize(dtype="int8").apply(load_model("owner.safetensors"))
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..data import Dataset
from ..errors import ParameterError
from ..models import ModelprintModel
from .base import Attack, register_attack
from .prune import prunable_weights


def fake_quantize_int8(w: torch.Tensor, per_channel: bool = True) -> torch.Tensor:
    """``w`` rounded to the symmetric int8 grid and mapped back to floats."""
    if per_channel and w.ndim > 1:
        peak = w.detach().abs().flatten(1).amax(1).view(-1, *([1] * (w.ndim - 1)))
    else:
        peak = w.detach().abs().amax()
    scale = torch.clamp(peak, min=1e-12) / 127
    return torch.clamp(torch.round(w / scale), -127, 127) * scale


@register_attack("quantize")
@dataclass(kw_only=True)
class Quantize(Attack):
    """Post-training weight quantisation: symmetric int8 rounding per output channel or per
    tensor (stored dequantised), or a round trip through fp16.

    Arguments:
        dtype (str): "int8" or "fp16". granularity (str): "channel" or "tensor" (int8 only).

    Example::

        small = create_attack("quantize", dtype="int8").apply(load_model("owner.safetensors"))
    """

    dtype: str = "int8"
    granularity: str = "channel"

    id_params = ("dtype",)

    def __post_init__(self) -> None:
        if self.dtype not in ("int8", "fp16"):
            raise ParameterError(f"dtype must be int8 or fp16, got {self.dtype!r}")
        if self.granularity not in ("channel", "tensor"):
            raise ParameterError(f"granularity must be channel or tensor, got {self.granularity!r}")

    @torch.no_grad()
    def _apply(self, model: ModelprintModel, data: Dataset | None, g: torch.Generator, device: str) -> None:
        if self.dtype == "fp16":
            for t in [*model.net.parameters(), *model.net.buffers()]:
                if t.is_floating_point():
                    t.copy_(t.half().float())
            return
        for w in prunable_weights(model.net):
            w.copy_(fake_quantize_int8(w, self.granularity == "channel"))

"""A tiny Vision Transformer (Dosovitskiy et al. 2021): patch embedding, ``depth``
pre-norm encoder blocks of dimension ``width``, class token, learned positions."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from .architectures import register_arch


@register_arch("vit-tiny")
class TinyViT(nn.Module):
    """A tiny Vision Transformer (Dosovitskiy et al. 2021): patch embedding, pre-norm encoder blocks, class token.

    Arguments:
        width (int): token dimension, 64. depth (int): blocks, 4. heads (int): 4.
        patch (int): patch side, 0 = chosen from the input. mlp_ratio (int): 2.

    Shape: input (N, C, H, W), logits (N, num_classes).

    Example::

        net = create_arch("vit-tiny", num_classes=10, input_shape=(3, 32, 32), depth=2, width=32)
    """

    # SGD with the CNNs' settings leaves it near chance on small data; Adam needs no weight
    # decay at this size, and attention without convolutions' priors needs about twice the epochs.
    training: ClassVar[dict[str, Any]] = {"optimizer": "adam", "lr": 2e-3, "weight_decay": 0.0, "epoch_factor": 2}

    def __init__(
        self,
        *,
        num_classes: int,
        input_shape: tuple[int, int, int],
        width: int = 64,
        depth: int = 4,
        heads: int = 4,
        patch: int = 0,
        mlp_ratio: int = 2,
    ) -> None:
        super().__init__()
        c, h, w = input_shape
        # About 8x8 tokens whatever the resolution: the first divisor of the size from size/8 up.
        patch = patch or next(p for p in range(max(1, h // 8), h + 1) if h % p == 0 and w % p == 0)
        if h % patch or w % patch:
            raise ValueError(f"patch size {patch} must divide the input size {h}x{w}")
        n_tokens = (h // patch) * (w // patch)
        self.embed = nn.Conv2d(c, width, patch, patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, width))
        self.pos = nn.Parameter(torch.randn(1, n_tokens + 1, width) * 0.02)
        layer = nn.TransformerEncoderLayer(
            width, heads, width * mlp_ratio, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x):
        tokens = self.embed(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls.expand(len(x), -1, -1), tokens], 1) + self.pos
        return self.head(self.norm(self.encoder(tokens))[:, 0])

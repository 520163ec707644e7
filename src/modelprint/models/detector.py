"""A query detector: a small CNN telling clean images (class 0) from abnormal ones (class 1).

The attacker's tool of NaturalFinger's stealth protocol (Section 4.5), and the gate of an
evasive model (:mod:`modelprint.models.evasive`). It reads images in [0, 1] as they are."""

from __future__ import annotations

import torch
from torch import nn


class DetectorCNN(nn.Module):
    """Nine layers: six 3x3 convolutions (BN, ReLU; max-pool after every second) and three linear.

    Arguments:
        channels (int): image channels. width (int): first convolutions' channels, 16.
        input_shape (tuple | None): (C, H, W); given, the first linear layer is sized at once
        (a model file can then be loaded into it), else on the first forward.

    Shape: input (N, C, H, W) in [0, 1], logits (N, 2) (1 = abnormal).
    """

    def __init__(self, channels: int, width: int = 16, input_shape: tuple[int, int, int] | None = None) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = channels
        for i, w in enumerate((width, width, 2 * width, 2 * width, 4 * width, 4 * width)):
            layers += [nn.Conv2d(c, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU()]
            if i % 2 == 1:
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
            c = w
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.Flatten(), nn.LazyLinear(64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 2)
        )
        if input_shape is not None:
            self.eval()
            self(torch.zeros(1, *input_shape))  # sizes the lazy layer (on the meta device too)
            self.train()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

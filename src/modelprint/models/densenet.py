"""DenseNet-BC (Huang et al. 2017) for small images: ``depth`` dense layers per block,
three blocks, growth rate ``width``, compression 0.5."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .architectures import register_arch


class DenseLayer(nn.Module):
    def __init__(self, c_in: int, growth: int) -> None:
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(c_in), nn.Conv2d(c_in, 4 * growth, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(4 * growth), nn.Conv2d(4 * growth, growth, 3, padding=1, bias=False)

    def forward(self, x):
        out = self.conv2(F.relu(self.bn2(self.conv1(F.relu(self.bn1(x))))))
        return torch.cat([x, out], 1)


class Transition(nn.Module):
    def __init__(self, c_in: int, c_out: int, pool: bool) -> None:
        super().__init__()
        self.bn, self.conv = nn.BatchNorm2d(c_in), nn.Conv2d(c_in, c_out, 1, bias=False)
        self.pool = nn.AvgPool2d(2) if pool else nn.Identity()

    def forward(self, x):
        return self.pool(self.conv(F.relu(self.bn(x))))


@register_arch("densenet")
class DenseNet(nn.Module):
    """DenseNet-BC (Huang et al. 2017) for small images: three dense blocks, compression 0.5.

    Arguments:
        width (int): growth rate, 12. depth (int): dense layers per block, 6.

    Shape: input (N, C, H, W), logits (N, num_classes).

    Example::

        net = create_arch("densenet", num_classes=10, input_shape=(3, 32, 32), width=12)
    """

    def __init__(self, *, num_classes: int, input_shape: tuple[int, int, int], width: int = 12, depth: int = 6) -> None:
        super().__init__()
        c, size = 2 * width, input_shape[1]
        layers: list[nn.Module] = [nn.Conv2d(input_shape[0], c, 3, padding=1, bias=False)]
        for block in range(3):
            for _ in range(depth):
                layers.append(DenseLayer(c, width))
                c += width
            if block < 2:
                layers.append(Transition(c, c // 2, pool=size >= 2))
                size //= 2 if size >= 2 else 1
                c //= 2
        layers += [nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)).flatten(1))

"""CIFAR-style ResNets (3x3 stem, no max-pool), He et al. 2016; ``width`` is the first
stage's channel count (64 in the paper)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from .architectures import register_arch


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class CifarResNet(nn.Module):
    blocks: tuple[int, int, int, int] = (2, 2, 2, 2)

    def __init__(self, *, num_classes: int, input_shape: tuple[int, int, int], width: int = 64, depth: int = 4) -> None:
        super().__init__()
        if not 1 <= depth <= 4:
            raise ValueError("depth (number of stages) must be 1..4")
        self.stem = nn.Sequential(
            nn.Conv2d(input_shape[0], width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)
        )
        stages, c_in = [], width
        for i, n in enumerate(self.blocks[:depth]):
            c_out = width * 2**i
            for j in range(n):
                stages.append(BasicBlock(c_in, c_out, 2 if (i > 0 and j == 0) else 1))
                c_in = c_out
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x):
        return self.fc(self.pool(self.stages(self.stem(x))).flatten(1))


@register_arch("resnet18")
class ResNet18(CifarResNet):
    """ResNet-18 (He et al. 2016), CIFAR style: 3x3 stem, no max-pool, [2, 2, 2, 2] basic blocks.

    Arguments:
        width (int): first stage's channels, 64. depth (int): stages, 4.

    Shape: input (N, C, H, W), logits (N, num_classes).

    Example::

        net = create_arch("resnet18", num_classes=10, input_shape=(3, 32, 32), width=16)
    """

    blocks = (2, 2, 2, 2)


@register_arch("resnet34")
class ResNet34(CifarResNet):
    """ResNet-34 (He et al. 2016), CIFAR style: 3x3 stem, no max-pool, [3, 4, 6, 3] basic blocks.

    Arguments:
        width (int): first stage's channels, 64. depth (int): stages, 4.

    Shape: input (N, C, H, W), logits (N, num_classes).

    Example::

        net = create_arch("resnet34", num_classes=10, input_shape=(3, 32, 32), width=16)
    """

    blocks = (3, 4, 6, 3)

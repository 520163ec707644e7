"""MobileNetV2 (Sandler et al. 2018), CIFAR strides; ``width`` is the width multiplier.

``stem_stride=2`` restores the ImageNet stem's stride: a quarter of the compute on 28-32 px
inputs, where the full-resolution depthwise layers dominate CPU training time.
"""

from __future__ import annotations

from typing import ClassVar

from torch import nn

from .architectures import register_arch

# (expansion t, channels c, repeats n, stride s); strides of the first stages are 1 for 32 px.
_SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


class InvertedResidual(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, t: int) -> None:
        super().__init__()
        hidden = c_in * t
        layers: list[nn.Module] = []
        if t != 1:
            layers += [nn.Conv2d(c_in, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True)]
        layers += [
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out),
        ]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x):
        return x + self.body(x) if self.residual else self.body(x)


@register_arch("mobilenetv2")
class MobileNetV2(nn.Module):
    """MobileNetV2 (Sandler et al. 2018) with CIFAR strides.

    Arguments:
        width (float): width multiplier, 1.0. depth (int): inverted-residual stages, 7.
        stem_stride (int): 1 (2: the ImageNet stem).

    Shape: input (N, C, H, W), logits (N, num_classes).

    Example::

        net = create_arch("mobilenetv2", num_classes=10, input_shape=(3, 32, 32), width=0.5)
    """

    limits: ClassVar[dict[str, tuple[float, float]]] = {"width": (0.05, 16.0), "depth": (1, 7)}

    def __init__(
        self,
        *,
        num_classes: int,
        input_shape: tuple[int, int, int],
        width: float = 1.0,
        depth: int = 7,
        stem_stride: int = 1,
    ) -> None:
        super().__init__()

        def ch(c: int) -> int:
            return max(8, int(round(c * width / 8)) * 8)

        if stem_stride not in (1, 2):
            raise ValueError(f"stem_stride must be 1 (CIFAR) or 2 (ImageNet), got {stem_stride}")
        c_in, size = ch(32), input_shape[1] // stem_stride
        layers: list[nn.Module] = [
            nn.Conv2d(input_shape[0], c_in, 3, stem_stride, 1, bias=False),
            nn.BatchNorm2d(c_in),
            nn.ReLU6(inplace=True),
        ]
        for t, c, n, s in _SETTINGS[:depth]:
            for i in range(n):
                stride = s if (i == 0 and size >= 2) else 1
                size = size // stride
                layers.append(InvertedResidual(c_in, ch(c), stride, t))
                c_in = ch(c)
        last = ch(1280) if width > 1 else 1280
        layers += [nn.Conv2d(c_in, last, 1, bias=False), nn.BatchNorm2d(last), nn.ReLU6(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(last, num_classes)

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)).flatten(1))

"""A small VGG-like CNN: ``depth`` conv-BN-ReLU blocks, pooling after each of the first
three, widths doubling from ``width``."""

from __future__ import annotations

from torch import nn

from .architectures import register_arch


@register_arch("cnn")
class SmallCNN(nn.Module):
    """A small VGG-like CNN: ``depth`` conv-BN-ReLU blocks, widths doubling from ``width``.

    Arguments:
        width (int): first block's channels, 32. depth (int): blocks, 3. batch_norm (bool): True.

    Shape: input (N, C, H, W), logits (N, num_classes).

    Example::

        net = create_arch("cnn", num_classes=10, input_shape=(1, 16, 16), width=16)
    """

    def __init__(
        self,
        *,
        num_classes: int,
        input_shape: tuple[int, int, int],
        width: int = 32,
        depth: int = 3,
        batch_norm: bool = True,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in, size = input_shape[0], input_shape[1]
        for i in range(depth):
            c_out = width * 2 ** min(i, 2)
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=not batch_norm)]
            layers += [nn.BatchNorm2d(c_out)] if batch_norm else []
            layers += [nn.ReLU(inplace=True)]
            if i < 3 and size >= 4:
                layers.append(nn.MaxPool2d(2))
                size //= 2
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_in, num_classes)

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)).flatten(1))

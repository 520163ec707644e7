"""VGG with batch norm (Simonyan & Zisserman 2015), CIFAR head. ``width`` scales every
layer (64 = the paper's widths); pooling stops once the map is 1x1 so small inputs fit."""

from __future__ import annotations

from torch import nn

from .architectures import register_arch

_CONFIGS = {
    "vgg11": [1, "M", 2, "M", 4, 4, "M", 8, 8, "M", 8, 8, "M"],
    "vgg13": [1, 1, "M", 2, 2, "M", 4, 4, "M", 8, 8, "M", 8, 8, "M"],
    "vgg16": [1, 1, "M", 2, 2, "M", 4, 4, 4, "M", 8, 8, 8, "M", 8, 8, 8, "M"],
}


class VGG(nn.Module):
    config = "vgg11"

    def __init__(self, *, num_classes: int, input_shape: tuple[int, int, int], width: int = 64) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in, size = input_shape[0], input_shape[1]
        for item in _CONFIGS[self.config]:
            if item == "M":
                if size >= 2:
                    layers.append(nn.MaxPool2d(2))
                    size //= 2
                continue
            c_out = width * item
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_in, num_classes)

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)).flatten(1))


@register_arch("vgg11")
class VGG11(VGG):
    """VGG-11 with batch norm (Simonyan & Zisserman 2015), CIFAR head.

    Arguments:
        width (int): scales every layer, 64 = the paper's widths.

    Shape: input (N, C, H, W), logits (N, num_classes).

    Example::

        net = create_arch("vgg11", num_classes=10, input_shape=(3, 32, 32), width=16)
    """

    config = "vgg11"


@register_arch("vgg13")
class VGG13(VGG):
    """VGG-13 with batch norm (Simonyan & Zisserman 2015), CIFAR head.

    Arguments:
        width (int): scales every layer, 64 = the paper's widths.

    Shape: input (N, C, H, W), logits (N, num_classes).

    Example::

        net = create_arch("vgg13", num_classes=10, input_shape=(3, 32, 32), width=16)
    """

    config = "vgg13"


@register_arch("vgg16")
class VGG16(VGG):
    """VGG-16 with batch norm (Simonyan & Zisserman 2015), CIFAR head.

    Arguments:
        width (int): scales every layer, 64 = the paper's widths.

    Shape: input (N, C, H, W), logits (N, num_classes).

    Example::

        net = create_arch("vgg16", num_classes=10, input_shape=(3, 32, 32), width=16)
    """

    config = "vgg16"

"""Real-size architectures, defined as a user would define their own (modelprint registers no
224-pixel networks): brought in through the user-model path ``scale_models:ResNet50`` and
``scale_models:ViTS16``, the same way ``--arch MODULE:ATTR`` and ``--trust-arch`` take a
user's module. Random weights are enough to measure cost.

``ResNet50``: He et al. 2016, ImageNet stem (7x7 stride 2, max-pool), bottleneck blocks
[3, 4, 6, 3], widths 64-512 (x4 expansion), 25.6 M parameters at 1000 classes.
``ViTS16``: the size of ViT-S/16 (Touvron et al. 2021): patch 16, width 384, depth 12, 6 heads,
MLP 1536, class token, 22 M parameters at 1000 classes.
"""

from __future__ import annotations

import torch
from torch import nn


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        cout = width * self.expansion
        self.body = nn.Sequential(
            nn.Conv2d(cin, width, 1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, stride, 1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        )
        self.skip = (
            nn.Identity()
            if stride == 1 and cin == cout
            else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.skip(x))


class ResNet50(nn.Module):
    """ResNet-50 for 3 x 224 x 224 images in [0, 1]; returns logits."""

    def __init__(self, num_classes: int = 1000, in_channels: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, 1),
        ]
        cin = 64
        for width, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
            for i in range(blocks):
                layers.append(Bottleneck(cin, width, stride if i == 0 else 1))
                cin = width * Bottleneck.expansion
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class ViTS16(nn.Module):
    """A ViT of ViT-S/16's size for 3 x 224 x 224 images in [0, 1]; returns logits."""

    def __init__(
        self,
        num_classes: int = 1000,
        image_size: int = 224,
        patch: int = 16,
        width: int = 384,
        depth: int = 12,
        heads: int = 6,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        self.patches = nn.Conv2d(in_channels, width, patch, patch)
        tokens = (image_size // patch) ** 2 + 1
        self.cls = nn.Parameter(torch.zeros(1, 1, width))
        self.position = nn.Parameter(torch.randn(1, tokens, width) * 0.02)
        layer = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=0.0, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.patches(x).flatten(2).transpose(1, 2)
        # z.shape[0], not len(z): a traced graph (TorchScript export) keeps len() as a constant batch size
        z = torch.cat([self.cls.expand(z.shape[0], -1, -1), z], dim=1) + self.position
        return self.head(self.norm(self.encoder(z))[:, 0])

"""VGG-16 with BatchNorm for CIFAR-sized inputs."""
from __future__ import annotations

import torch
from torch import nn

from rank_search.models import register_model

VGG16_CFG: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M",
)


def _make_features(
    cfg: tuple[int | str, ...], *, in_channels: int, image_size: int
) -> nn.Sequential:
    """Conv-BN-ReLU stack; a max-pool is skipped once the feature map is already 1x1.

    Skipping (rather than ``ceil_mode``) keeps the standard layout for 32x32 inputs (five
    pools down to 1x1) while 28x28 uses ceil-free pools 28->14->7->3->1 and drops the fifth.
    Pools are also skipped for tiny inputs such as 8x8, so the spatial size never hits 0.
    """
    layers: list[nn.Module] = []
    channels, side = in_channels, image_size
    for v in cfg:
        if v == "M":
            if side >= 2:
                layers.append(nn.MaxPool2d(2))
                side //= 2
            continue
        layers += [
            nn.Conv2d(channels, int(v), 3, padding=1, bias=False),
            nn.BatchNorm2d(int(v)),
            nn.ReLU(inplace=True),
        ]
        channels = int(v)
    return nn.Sequential(*layers)


class VGGCifar(nn.Module):
    """VGG with BatchNorm, global average pooling and a 512-512-classes classifier."""

    def __init__(
        self, cfg: tuple[int | str, ...], *, in_channels: int, num_classes: int, image_size: int
    ) -> None:
        super().__init__()
        self.features = _make_features(cfg, in_channels=in_channels, image_size=image_size)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Linear(512, 512),
            nn.ReLU(inplace=True),
            nn.Linear(512, num_classes),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


@register_model("vgg16_cifar")
def vgg16_cifar(*, in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    """VGG-16-BN for CIFAR: 13 conv layers, GAP, Linear(512, 512)-ReLU-Linear(512, classes)."""
    return VGGCifar(
        VGG16_CFG, in_channels=in_channels, num_classes=num_classes, image_size=image_size
    )

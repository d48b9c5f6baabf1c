"""LeNet-5 and a wider LeNet variant for MNIST-sized inputs."""
from __future__ import annotations

import torch
from torch import nn

from rank_search.errors import RankSearchError
from rank_search.models import register_model


def _lenet_flat_side(image_size: int) -> int:
    """Spatial side after conv(p2)-pool2-conv(5, no pad)-pool2, or 0 if the input is too small."""
    side = image_size // 2  # conv1 keeps the size (padding 2), pool halves it
    side = side - 4  # conv2, kernel 5, no padding
    return side // 2 if side >= 2 else 0


class LeNet5(nn.Module):
    """Classic LeNet-5 (ReLU + max-pool variant).

    The flatten size follows from ``image_size`` (16*5*5 = 400 for 28x28, 16*6*6 for 32x32).
    Inputs too small for the unpadded 5x5 second convolution (below 12x12, e.g. 8x8) use
    ``padding=2`` there too, so an 8x8 input flattens to 16*2*2. Inputs must be >= 4x4.
    """

    def __init__(self, *, in_channels: int, num_classes: int, image_size: int) -> None:
        super().__init__()
        if image_size < 4:
            raise RankSearchError(f"lenet5 needs image_size >= 4, got {image_size}")
        side = _lenet_flat_side(image_size)
        conv2_pad = 0
        if side == 0:  # too small for the unpadded conv: keep the size through conv2
            conv2_pad = 2
            side = image_size // 4
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5, padding=conv2_pad),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * side * side, 120),
            nn.ReLU(inplace=True),
            nn.Linear(120, 84),
            nn.ReLU(inplace=True),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class LeNet5Wide(nn.Module):
    """A wider LeNet with three convolutions (BatchNorm) and three Linear layers (~12 M MACs per
    28x28 image): four eligible layers (two convs, two hidden Linear), enough for compression to
    hurt and for per-layer rank search to matter.

    The last feature map is adaptively average-pooled to 4x4, so any input >= 4x4 works.
    """

    def __init__(self, *, in_channels: int, num_classes: int, image_size: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 32, 5, padding=2, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
            nn.Conv2d(64, 64, 3, padding=1, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(4),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64 * 4 * 4, 256),
            nn.ReLU(inplace=True),
            nn.Linear(256, 128),
            nn.ReLU(inplace=True),
            nn.Linear(128, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@register_model("lenet5")
def lenet5(*, in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    """Classic LeNet-5 (conv 6 -> conv 16 -> fc 120 -> fc 84 -> fc classes)."""
    return LeNet5(in_channels=in_channels, num_classes=num_classes, image_size=image_size)


@register_model("lenet5_wide")
def lenet5_wide(*, in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    """Wider LeNet: conv 32/64/64 with BatchNorm, fc 256 (4 eligible layers + classifier)."""
    return LeNet5Wide(in_channels=in_channels, num_classes=num_classes, image_size=image_size)


# *our choice*: its nested model diverged at 0.05 and above and was best at 0.01 (docs/nested.md)
lenet5_wide.nested_lr = 0.01  # type: ignore[attr-defined]

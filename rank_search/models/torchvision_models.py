"""ImageNet ResNets from torchvision (randomly initialised; weights are never downloaded)."""
from __future__ import annotations

from typing import Callable

import torchvision
from torch import nn

from rank_search.models import register_model


def _build(
    factory: Callable[..., nn.Module], *, in_channels: int, num_classes: int
) -> nn.Module:
    model = factory(weights=None, num_classes=num_classes)
    if in_channels != 3:
        old = model.conv1
        model.conv1 = nn.Conv2d(
            in_channels,
            old.out_channels,
            kernel_size=old.kernel_size,
            stride=old.stride,
            padding=old.padding,
            bias=old.bias is not None,
        )
        nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    return model


@register_model("resnet18")
def resnet18(*, in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    """torchvision ResNet-18 (adaptive average pooling: any input >= 32x32 works)."""
    del image_size
    return _build(torchvision.models.resnet18, in_channels=in_channels, num_classes=num_classes)


@register_model("resnet50")
def resnet50(*, in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    """torchvision ResNet-50 (adaptive average pooling: any input >= 32x32 works)."""
    del image_size
    return _build(torchvision.models.resnet50, in_channels=in_channels, num_classes=num_classes)

"""ImageNet ResNets from torchvision (randomly initialised; weights are never downloaded).

torchvision is imported when one of them is built, not with the registry: importing it pulls in
torch._dynamo (3.6 s of a 17 s mnist5k trial here), which a process building another model
never needs.
"""
from __future__ import annotations

from typing import Callable

from torch import nn

from rank_search.models import register_model


def _torchvision_models():
    import torchvision.models

    return torchvision.models


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
    return _build(_torchvision_models().resnet18, in_channels=in_channels, num_classes=num_classes)


@register_model("resnet50")
def resnet50(*, in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    """torchvision ResNet-50 (adaptive average pooling: any input >= 32x32 works)."""
    del image_size
    return _build(_torchvision_models().resnet50, in_channels=in_channels, num_classes=num_classes)

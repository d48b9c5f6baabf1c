"""Builders "of your own" for the tests: imported by path as ``own_net:tiny_convnet`` (the test
modules put this folder on sys.path, and on PYTHONPATH for Ray's workers)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

NOT_CALLABLE = 3


class TinyConvNet(nn.Module):
    """conv-BN-ReLU twice, then a conv whose output also skips its BatchNorm (so that BatchNorm
    cannot be folded), global average pooling and a Linear head."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.stem = nn.Conv2d(in_channels, 8, 3, padding=1, bias=False)
        self.stem_bn = nn.BatchNorm2d(8)
        self.body = nn.Conv2d(8, 16, 3, padding=1, bias=False)
        self.body_bn = nn.BatchNorm2d(16)
        self.mix = nn.Conv2d(16, 16, 3, padding=1)
        self.mix_bn = nn.BatchNorm2d(16)
        self.head = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem_bn(self.stem(x)))
        x = F.relu(self.body_bn(self.body(x)))
        y = self.mix(x)
        x = F.relu(self.mix_bn(y) + y)
        return self.head(x.mean(dim=(2, 3)))


def tiny_convnet(*, in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    del image_size  # global average pooling: any size
    return TinyConvNet(in_channels, num_classes)


def not_a_module(*, in_channels: int, num_classes: int, image_size: int):
    return {"in_channels": in_channels}


def without_image_size(*, in_channels: int, num_classes: int) -> nn.Module:
    return TinyConvNet(in_channels, num_classes)


class DataDependent(nn.Module):
    """A forward whose control flow depends on the input's values: torch.export cannot capture it."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 8, 3, padding=1)
        self.head = nn.Linear(8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if x.sum() > 0:
            x = -x
        return self.head(x.mean(dim=(2, 3)))


def data_dependent(*, in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    return DataDependent(in_channels, num_classes)

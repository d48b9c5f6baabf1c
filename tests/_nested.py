"""A tiny BatchNorm net and a learnable data set the nested-rank tests make themselves."""
from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import nn

from rank_search.methods._nested_model import set_truncation

#: every candidate layer of ``tiny_net`` nested, both schemes and a Linear among them
SCHEMES = {"0": "channel", "3": "tucker2", "6": "channel", "11": "channel", "13": "channel"}
#: the same with the convolutions in the spatial scheme (the Linear layers fall back to channel)
SPATIAL = {"0": "spatial", "3": "spatial", "6": "spatial", "11": "channel", "13": "channel"}
CLASSES = 4


def tiny_net(**builder_args) -> nn.Module:
    """The net (also an own-model builder: ``_nested:tiny_net``; its arguments are not used)."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 12, 3, padding=1, stride=2), nn.BatchNorm2d(12), nn.ReLU(),
        nn.Conv2d(12, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, CLASSES))


def blobs(n: int, *, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` 3x8x8 images: a fixed pattern per class (the same for every seed) plus noise."""
    patterns = torch.randn(CLASSES, 3, 8, 8, generator=torch.Generator().manual_seed(123))
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, CLASSES, (n,), generator=g)
    return patterns[y] + 0.8 * torch.randn(n, 3, 8, 8, generator=g), y


def batches(x: torch.Tensor, y: torch.Tensor, size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x[i:i + size], y[i:i + size]) for i in range(0, len(y), size)]


def splits(*, train: int = 256, val: int = 128, batch: int = 32) -> SimpleNamespace:
    """``train``/``val`` lists of batches: what BatchNorm re-estimation and ``evaluate`` iterate."""
    return SimpleNamespace(train=batches(*blobs(train, seed=1), batch), val=batches(*blobs(val, seed=2), batch))


def nested_training(model: nn.Module, sampler, data, *, epochs: int, lr: float = 0.05) -> nn.Module:
    """``epochs`` epochs of SGD on ``data.train``, each step at ``sampler``'s truncation; returns
    ``model`` at full rank."""
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    step = 0
    for _ in range(epochs):
        for x, y in data.train:
            set_truncation(model, sampler.draw(step)[1])
            loss = nn.functional.cross_entropy(model.train()(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
    set_truncation(model, None)
    return model

"""Rank groups: which eligible layers share one searched rank ratio."""
from __future__ import annotations

from torch import nn

from ..plan import eligible_layers


def layer_groups(model: nn.Module, grouping: str) -> dict[str, str]:
    """Map every eligible layer to its group name.

    ``uniform``: one group ``all``. ``per_layer``: each layer its own group (its name).
    ``per_stage``: layers with the same top-level parent and the same output width form a stage
    (``layer2`` of a ResNet, the 128-channel block of VGG's ``features``, ...), named
    ``<parent>-<width>``.
    """
    layers = eligible_layers(model)
    if grouping == "uniform":
        return {name: "all" for name in layers}
    if grouping == "per_layer":
        return {name: name for name in layers}
    if grouping == "per_stage":
        return {name: f"{name.split('.')[0]}-{layer.weight.shape[0]}" for name, layer in layers.items()}
    raise ValueError(f"grouping must be uniform, per_stage or per_layer, got {grouping!r}")


def group_names(model: nn.Module, grouping: str) -> list[str]:
    """Distinct group names in layer order."""
    return list(dict.fromkeys(layer_groups(model, grouping).values()))

"""Rank groups: which eligible layers share one searched rank ratio, and ``GroupRatios``, the
rank spec of a trial (one ratio per group), resolved against the model into a plan.

Groups are computed here and nowhere else; a run record stores the resolved layer -> group map
so analysis reads it instead of working it out again.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from torch import nn

from .decomp.policies import RankPolicy
from .errors import RankSearchError
from .plan import RankPlan, eligible_layers, plan_from_mapping, scheme_for
from .schema import GROUPINGS, UNIFORM_GROUP


def layer_groups(model: nn.Module, grouping: str) -> dict[str, str]:
    """Map every eligible layer to its group name.

    ``uniform``: one group ``all``. ``per_layer``: each layer its own group (its name).
    ``per_stage``: layers with the same top-level parent and the same output width form a stage
    (``layer2`` of a ResNet, the 128-channel block of VGG's ``features``, ...), named
    ``<parent>-<width>``.
    """
    layers = eligible_layers(model)
    if grouping == "uniform":
        return {name: UNIFORM_GROUP for name in layers}
    if grouping == "per_layer":
        return {name: name for name in layers}
    if grouping == "per_stage":
        return {name: f"{name.split('.')[0]}-{layer.weight.shape[0]}" for name, layer in layers.items()}
    raise RankSearchError(f"grouping must be one of {', '.join(GROUPINGS)}, got {grouping!r}")


def group_names(model: nn.Module, grouping: str) -> list[str]:
    """Distinct group names in layer order."""
    return list(dict.fromkeys(layer_groups(model, grouping).values()))


@dataclass(frozen=True)
class GroupRatios:
    """One rank ratio (of each layer's max rank) per rank group: what a trial samples.

    Written in a run config as ``ranks: {grouping: per_stage, ratios: {layer1-16: 0.3, ...}}``.
    """

    grouping: str
    ratios: Mapping[str, float] = field(default_factory=dict)

    KEYS = ("grouping", "ratios")

    def __post_init__(self) -> None:
        if self.grouping not in GROUPINGS:
            raise RankSearchError(f"ranks.grouping must be one of {', '.join(GROUPINGS)}, got {self.grouping!r}")
        for group, ratio in self.ratios.items():
            if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio <= 1:
                raise RankSearchError(f"rank ratio of group {group!r} must be a number in (0, 1], got {ratio!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"grouping": self.grouping, "ratios": {g: float(r) for g, r in self.ratios.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "GroupRatios":
        ratios = data.get("ratios")
        if not isinstance(ratios, Mapping):
            raise RankSearchError(f"ranks.ratios must map rank group -> ratio, got {type(ratios).__name__}")
        return cls(str(data.get("grouping")), dict(ratios))

    @staticmethod
    def is_dict(data: Any) -> bool:
        """Whether a parsed config value is written in this form."""
        return isinstance(data, Mapping) and set(data) == set(GroupRatios.KEYS)

    def resolve(self, model: nn.Module, *, scheme: str) -> RankPlan:
        """The integer plan: each eligible layer at its group's ratio, in ``scheme`` where the
        layer supports it (else the channel scheme, as a uniform plan does)."""
        entries = {}
        for layer_name, group in layer_groups(model, self.grouping).items():
            if group not in self.ratios:
                raise RankSearchError(f"no rank ratio for group {group!r} (grouping {self.grouping}); "
                                      f"given groups: {', '.join(self.ratios) or '(none)'}")
            layer = model.get_submodule(layer_name)
            entries[layer_name] = {"scheme": scheme_for(layer, scheme),
                                   "rank": RankPolicy("ratio", float(self.ratios[group]))}
        return plan_from_mapping(model, {"layers": entries}, scheme=scheme)

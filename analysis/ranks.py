"""Per-layer ranks of a trial, read from its config (rank ratios per group) and its checkpoint's
run record (integer ranks per layer), without building the model."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

RANK_COLUMN_PREFIX = "config/rank."  # "config/" + search_spaces.RANK_PREFIX
GROUPING_COLUMN = "config/space.grouping"
UNIFORM_GROUP = "all"


def rank_groups(row: Mapping[str, Any]) -> list[str]:
    """Rank-group names of a trial (its ``config/rank.<group>`` keys with a value), in order."""
    return [k[len(RANK_COLUMN_PREFIX):] for k, v in row.items()
            if isinstance(k, str) and k.startswith(RANK_COLUMN_PREFIX) and isinstance(v, (int, float))
            and v == v]


def record_layers(record: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """``{layer: {scheme, rank}}`` of a run record in model order; ``{}`` for a dense run
    (no plan); ``None`` when there is no record."""
    if record is None:
        return None
    ranks = record.get("ranks")
    if not isinstance(ranks, Mapping):
        return {}
    layers = ranks.get("layers")
    return dict(layers) if isinstance(layers, Mapping) else {}


def map_layers_to_groups(layers: Sequence[str], groups: Sequence[str], grouping: str | None, *,
                         explicit: Mapping[str, str] | None = None) -> dict[str, str | None]:
    """The rank group of each layer (``None`` where it cannot be told without the model).

    ``uniform``: every layer in group ``all``. ``per_layer``: the group is the layer name.
    ``per_stage``: groups are ``<top-level parent>-<output width>``; a layer goes to the only
    group of its parent, and is ambiguous when its parent has several widths (pass
    ``explicit``, computed from the model, for those).
    """
    out: dict[str, str | None] = {}
    group_set = set(groups)
    for layer in layers:
        if explicit and layer in explicit:
            out[layer] = explicit[layer]
        elif grouping == "uniform" or (grouping is None and list(groups) == [UNIFORM_GROUP]):
            out[layer] = UNIFORM_GROUP if UNIFORM_GROUP in group_set else None
        elif layer in group_set:
            out[layer] = layer
        elif grouping == "per_stage":
            parent = layer.split(".")[0]
            candidates = [g for g in groups if g.rsplit("-", 1)[0] == parent]
            out[layer] = candidates[0] if len(candidates) == 1 else None
        else:
            out[layer] = None
    return out


def rank_text(rank: Any) -> str:
    """``29`` or ``9×4`` (Tucker-2) for a run record's rank entry."""
    if isinstance(rank, (list, tuple)):
        return "×".join(str(r) for r in rank)
    return "" if rank is None else str(rank)


def needs_model(layers: Sequence[str], groups: Sequence[str], grouping: str | None) -> bool:
    """Whether some layer's group can only be found by building the model."""
    return any(g is None for g in map_layers_to_groups(layers, groups, grouping).values())

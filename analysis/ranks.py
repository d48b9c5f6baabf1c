"""Per-layer ranks of a trial, read from its config (rank ratios per group) and its checkpoint's
run record (integer ranks per layer and the layer -> rank group map the trial resolved), without
building the model."""
from __future__ import annotations

from typing import Any, Mapping

from rank_search import schema

RANK_COLUMN_PREFIX = schema.CONFIG_COLUMN_PREFIX + schema.RANK_PREFIX


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


def record_groups(record: Mapping[str, Any] | None) -> dict[str, str]:
    """``{layer: rank group}`` the trial wrote into its run record (``{}`` when it has none: a
    dense run, or a record written before groups were recorded)."""
    groups = (record or {}).get(schema.GROUPS_KEY)
    layers = groups.get("layers") if isinstance(groups, Mapping) else None
    return {str(k): str(v) for k, v in layers.items()} if isinstance(layers, Mapping) else {}


def rank_text(rank: Any) -> str:
    """``29`` or ``9×4`` (Tucker-2) for a run record's rank entry."""
    if isinstance(rank, (list, tuple)):
        return "×".join(str(r) for r in rank)
    return "" if rank is None else str(rank)

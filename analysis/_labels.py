"""Human labels (with units) and value formats for metric names, shared by plots and reports."""
from __future__ import annotations

import math
import re
from typing import Any, Mapping, Sequence

from rank_search import schema

FRACTION_METRICS = frozenset({schema.VAL_ACCURACY, schema.TEST_ACCURACY, "best/" + schema.VAL_ACCURACY})
RATIO_METRICS = frozenset({schema.MACS_COMPRESSION, schema.PARAMS_COMPRESSION, schema.LATENCY_SPEEDUP})

_LABELS = {
    schema.VAL_ACCURACY: "validation accuracy (%)",
    "best/" + schema.VAL_ACCURACY: "best validation accuracy (%)",
    schema.TEST_ACCURACY: "test accuracy (%)",
    schema.MACS_COMPRESSION: "MACs compression (×, dense / compact)",
    schema.PARAMS_COMPRESSION: "parameter compression (×, dense / compact)",
    schema.COMPACT_MACS: "compact model MACs (multiply-adds per image)",
    schema.COMPACT_PARAMS: "compact model parameters (count)",
    schema.DENSE_MACS: "dense model MACs (multiply-adds per image)",
    schema.DENSE_PARAMS: "dense model parameters (count)",
    schema.VAL_LOSS: "validation loss (cross-entropy)",
    schema.TRAIN_LOSS: "training loss (cross-entropy)",
    schema.WALL_SECONDS: "wall time (s)",
    schema.LATENCY_SPEEDUP: "measured speed-up (×, dense / compact latency)",
    schema.LATENCY_MS: "compact model latency (ms per batch)",
    schema.DENSE_LATENCY_MS: "dense model latency (ms per batch)",
}

_SHORT = {
    schema.VAL_ACCURACY: "val. accuracy",
    "best/" + schema.VAL_ACCURACY: "best val. accuracy",
    schema.TEST_ACCURACY: "test accuracy",
    schema.MACS_COMPRESSION: "MACs compression",
    schema.PARAMS_COMPRESSION: "param. compression",
    schema.COMPACT_MACS: "compact MACs",
    schema.COMPACT_PARAMS: "compact params",
    schema.DENSE_MACS: "dense MACs",
    schema.DENSE_PARAMS: "dense params",
    schema.VAL_LOSS: "val. loss",
    schema.TRAIN_LOSS: "train loss",
    schema.WALL_SECONDS: "wall time",
    schema.LATENCY_SPEEDUP: "speed-up",
    schema.LATENCY_MS: "latency",
    schema.DENSE_LATENCY_MS: "dense latency",
}

# the unit of a metric's raw value (accuracies are stored as fractions, shown as percent)
_UNITS = {
    schema.VAL_ACCURACY: "fraction 0-1",
    "best/" + schema.VAL_ACCURACY: "fraction 0-1",
    schema.TEST_ACCURACY: "fraction 0-1",
    schema.MACS_COMPRESSION: "×",
    schema.PARAMS_COMPRESSION: "×",
    schema.COMPACT_MACS: "multiply-adds",
    schema.DENSE_MACS: "multiply-adds",
    schema.COMPACT_PARAMS: "parameters",
    schema.DENSE_PARAMS: "parameters",
    schema.VAL_LOSS: "nats",
    schema.TRAIN_LOSS: "nats",
    schema.WALL_SECONDS: "s",
    schema.LATENCY_SPEEDUP: "×",
    schema.LATENCY_MS: "ms",
    schema.DENSE_LATENCY_MS: "ms",
}


def metric_label(metric: str) -> str:
    """Axis label with units, e.g. ``validation accuracy (%)``; unknown metrics as they are."""
    return _LABELS.get(metric, metric)


def short_label(metric: str) -> str:
    return _SHORT.get(metric, metric)


def metric_unit(metric: str) -> str | None:
    """The unit of the metric's raw value (``fraction 0-1`` for accuracies), ``None`` if unknown."""
    return _UNITS.get(metric)


def hypervolume_unit(metrics: Sequence[str]) -> str:
    """The hypervolume's unit: the product of the objectives' units, in raw values
    (``val. accuracy (fraction 0-1) × MACs compression (×)``)."""
    parts = []
    for m in metrics:
        unit = metric_unit(m)
        parts.append(f"{short_label(m)} ({unit})" if unit else short_label(m))
    return " × ".join(parts)


def format_value(metric: str, value) -> str:
    """``97.3%`` for accuracies, ``4.21×`` for compression ratios, ``1.2e+06`` for big counts."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if not isinstance(value, (int, float)):
        return str(value)
    if metric in FRACTION_METRICS:
        return f"{100 * value:.1f}%"
    if metric in RATIO_METRICS:
        return f"{value:.2f}×"
    if isinstance(value, int) or float(value).is_integer():
        return f"{int(value):,}" if abs(value) < 1e7 else f"{value:.3g}"
    return f"{value:.4g}"


def slug(label: str) -> str:
    """A file-name-safe form of a sweep label."""
    text = re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("._")
    return text or "sweep"


# -- a search space's dimensions and rank mode, as its record spells them (Dim.to_plain()) --


def _plain_num(value: Any) -> str:
    return f"{value:g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def dim_text(plain: Any, *, unit: str = "") -> str:
    """A searched dimension in words: ``LOW-HIGH (log)``, ``one of so, dso``, or the fixed value.

    Args:
        plain: the dimension as the space's YAML writes it (a value, a list of choices, or
            ``{float|int: [low, high], log: bool, step: s}``).
        unit: appended to each number (``x`` for a compression).
    """
    if isinstance(plain, Mapping):
        kind = next((k for k in ("float", "int") if k in plain), None)
        bounds = plain.get(kind) if kind else None
        if isinstance(bounds, (list, tuple)) and len(bounds) == 2:
            text = f"{_plain_num(bounds[0])}-{_plain_num(bounds[1])}{unit}"
            extras = [e for e in ("log" if plain.get("log") else "",
                                  f"step {_plain_num(plain['step'])}" if plain.get("step") is not None else "") if e]
            return text + (f" ({', '.join(extras)})" if extras else "")
        return ", ".join(f"{k} {v}" for k, v in plain.items())
    if isinstance(plain, (list, tuple)):
        return "one of " + ", ".join(f"{_plain_num(v)}{unit}" if isinstance(v, (int, float)) else str(v) for v in plain)
    return f"{_plain_num(plain)}{unit}"


def ranks_text(ranks: Any) -> str:
    """A space's rank mode in words, e.g. ``sensitivity allocation, macs target LOW-HIGHx (log), proxy bn``
    or ``per_stage ratios LOW-HIGH``; ``"ranks not recorded"`` for a record without them."""
    if not isinstance(ranks, Mapping) or not ranks:
        return "ranks not recorded"
    if "target" in ranks or ranks.get("allocation") in ("sensitivity", "uniform"):
        allocations = [str(a) for a in (ranks.get("allocations") or [ranks.get("allocation") or "sensitivity"])]
        how = (f"{' or '.join(allocations)} allocation" if allocations != ["uniform"]
               else "one uniform ratio per trial")
        text = f"{how}, {ranks.get('budget') or 'macs'} target {dim_text(ranks.get('target'), unit='x')}"
        return text + (f", proxy {ranks['proxy']}" if ranks.get("proxy") and "sensitivity" in allocations else "")
    grouping = ranks.get("grouping") or "uniform"
    ratio = dim_text(ranks["ratio"]) if "ratio" in ranks else "?"
    return f"one ratio for every layer, {ratio}" if grouping == "uniform" else f"{grouping} ratios {ratio}"

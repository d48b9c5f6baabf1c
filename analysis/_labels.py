"""Human labels (with units) and value formats for metric names, shared by plots and reports."""
from __future__ import annotations

import math
import re

from rank_search import schema

FRACTION_METRICS = frozenset({schema.VAL_ACCURACY, schema.TEST_ACCURACY, "best/" + schema.VAL_ACCURACY})
RATIO_METRICS = frozenset({schema.MACS_COMPRESSION, schema.PARAMS_COMPRESSION})

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
}

_SHORT = {
    schema.VAL_ACCURACY: "val. accuracy",
    schema.TEST_ACCURACY: "test accuracy",
    schema.MACS_COMPRESSION: "MACs compression",
    schema.PARAMS_COMPRESSION: "param. compression",
}


def metric_label(metric: str) -> str:
    """Axis label with units, e.g. ``validation accuracy (%)``; unknown metrics as they are."""
    return _LABELS.get(metric, metric)


def short_label(metric: str) -> str:
    return _SHORT.get(metric, metric)


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

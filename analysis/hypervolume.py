"""Exact hypervolume (the volume a front dominates, bounded by a reference point).

Algorithms (all exact, in float arithmetic):

* 2 objectives: a sweep over the points sorted by the first objective, O(n log n).
* d >= 3 objectives: HSO, "hypervolume by slicing objectives" (While et al., IEEE TEC 2006):
  sort by the last objective and cut the dominated region into slabs between consecutive
  values; each slab's volume is its thickness times the (d-1)-objective hypervolume of the
  points above it. Dominated points are dropped before each recursion. O(n^(d-1) log n) in
  the worst case: instant for the tens to hundreds of trials of a sweep up to 4-5 objectives.

A point counts only where it is strictly better than the reference in every objective.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from rank_search import schema

from .pareto import as_matrix, nondominated

# Natural "worst useful" values: a model at zero accuracy, or no smaller than the dense one.
ZERO_IS_WORST = (schema.VAL_ACCURACY, schema.TEST_ACCURACY)
DENSE_IS_WORST_RATIO = (schema.MACS_COMPRESSION, schema.PARAMS_COMPRESSION, schema.LATENCY_SPEEDUP)
DENSE_COUNT = {schema.COMPACT_MACS: schema.DENSE_MACS, schema.COMPACT_PARAMS: schema.DENSE_PARAMS}
NADIR_MARGIN = 0.1


def default_reference(objectives: Sequence[tuple[str, str]], trials: pd.DataFrame | None = None) -> np.ndarray:
    """The reference point used when the user gives none.

    Per objective: ``val_accuracy``/``test_accuracy`` (max) -> 0 (a useless model);
    ``macs_compression``/``params_compression`` (max) -> 1.0 (the dense model: no compression);
    ``compact_macs``/``compact_params`` (min) -> the dense model's count (``dense_macs`` /
    ``dense_params`` of the trials). So the hypervolume is the accuracy-weighted gain over the
    dense model, comparable between sweeps of the same model. Any other objective -> the worst
    value in ``trials`` pushed out by 10% of its range (so the extreme points still count);
    compare such hypervolumes only under the same explicit reference.
    """
    ref = []
    for metric, mode in objectives:
        if mode == "max" and metric in ZERO_IS_WORST:
            ref.append(0.0)
        elif mode == "max" and metric in DENSE_IS_WORST_RATIO:
            ref.append(1.0)
        elif mode == "min" and metric in DENSE_COUNT and trials is not None \
                and DENSE_COUNT[metric] in trials and trials[DENSE_COUNT[metric]].notna().any():
            ref.append(float(trials[DENSE_COUNT[metric]].max()))
        else:
            values = pd.to_numeric(trials[metric], errors="coerce").dropna() if trials is not None \
                and metric in trials else pd.Series(dtype=float)
            if values.empty:
                raise ValueError(f"no reference point for objective {metric!r}: no trial reported it; "
                                 "give the reference explicitly")
            lo, hi = float(values.min()), float(values.max())
            margin = NADIR_MARGIN * (hi - lo) if hi > lo else NADIR_MARGIN * max(abs(hi), 1.0)
            ref.append(lo - margin if mode == "max" else hi + margin)
    return np.array(ref, dtype=float)


def _shift(points: np.ndarray, directions: Sequence[str], reference: Sequence[float]) -> np.ndarray:
    """Points relative to the reference, larger is better; rows not strictly better than the
    reference in every objective (or with NaN) are dropped."""
    p = as_matrix(points, directions)
    r = np.asarray(reference, dtype=float)
    if r.shape != (len(directions),) or np.isnan(r).any():
        raise ValueError(f"reference point must have {len(directions)} finite values, got {list(r.ravel())}")
    signs = np.array([1.0 if d == "max" else -1.0 for d in directions])
    q = (p - r) * signs
    with np.errstate(invalid="ignore"):
        keep = (q > 0).all(axis=1)
    return q[keep]


def _hv_2d(q: np.ndarray) -> float:
    order = np.argsort(-q[:, 0], kind="stable")
    total, top = 0.0, 0.0
    for x, y in q[order]:
        if y > top:
            total += x * (y - top)
            top = y
    return total


def _hv(q: np.ndarray) -> float:
    """Hypervolume of ``q`` (maximised, all rows > 0) against the origin."""
    n, d = q.shape
    if n == 0:
        return 0.0
    if d == 1:
        return float(q[:, 0].max())
    if d == 2:
        return _hv_2d(q)
    q = q[nondominated(q)]
    q = q[np.argsort(-q[:, -1], kind="stable")]
    total = 0.0
    for i in range(len(q)):
        below = q[i + 1, -1] if i + 1 < len(q) else 0.0
        depth = q[i, -1] - below
        if depth > 0:
            total += depth * _hv(q[: i + 1, :-1])
    return total


def hypervolume(points: Sequence[Sequence[float]] | np.ndarray, directions: Sequence[str],
                reference: Sequence[float]) -> float:
    """Exact hypervolume of ``points`` (rows, one column per objective) against ``reference``.

    Rows with NaN, and rows not strictly better than the reference in every objective, add
    nothing. Duplicates and dominated rows are allowed.
    """
    return float(_hv(_shift(points, directions, reference)))


def hypervolume_progress(points_in_trial_order: Sequence[Sequence[float]] | np.ndarray,
                         directions: Sequence[str], reference: Sequence[float]) -> np.ndarray:
    """``out[k-1]`` = hypervolume of the first ``k`` points, for every ``k``.

    A row with NaN (a trial that reported nothing usable) counts as a trial and adds nothing.
    Only the current front is kept, and the volume is recomputed only when a new point
    enlarges it.
    """
    p = as_matrix(points_in_trial_order, directions)
    r = np.asarray(reference, dtype=float)
    _shift(p[:0], directions, r)  # validate the reference once
    signs = np.array([1.0 if d == "max" else -1.0 for d in directions])
    q_all = (p - r) * signs
    out = np.zeros(len(p))
    front = np.zeros((0, p.shape[1]))
    current = 0.0
    for k, q in enumerate(q_all):
        with np.errstate(invalid="ignore"):
            usable = bool((q > 0).all())
        if usable and not (front >= q).all(axis=1).any():
            front = np.vstack([front[~(front <= q).all(axis=1)], q])
            current = _hv(front)
        out[k] = current
    return out


def reference_text(objectives: Sequence[tuple[str, str]], reference: Sequence[float]) -> str:
    """``val_accuracy=0, macs_compression=1`` (for labels and reports)."""
    def fmt(v: float) -> str:
        return f"{v:g}" if math.isfinite(v) and abs(v) < 1e6 else f"{v:.4g}"

    return ", ".join(f"{m}={fmt(float(v))}" for (m, _), v in zip(objectives, reference))


def parse_reference(text: str, n_objectives: int | None = None) -> np.ndarray:
    """``"0,1"`` -> array (the CLI's ``--reference``); ``n_objectives`` checks the length."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise ValueError(f"reference point must be comma-separated numbers, got {text!r}") from None
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"reference point values must be finite, got {text!r}")
    if n_objectives is not None and len(values) != n_objectives:
        raise ValueError(f"reference point needs {n_objectives} values (one per objective), got {text!r}")
    return np.array(values)


__all__ = ["default_reference", "hypervolume", "hypervolume_progress", "parse_reference", "reference_text"]

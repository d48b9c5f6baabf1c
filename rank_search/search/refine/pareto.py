"""Pareto fronts, hypervolume contributions, and the view of a study's objectives that every
part of ``refine`` reads values through (directions, log ratio objectives, floors)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial


def dominance(values: np.ndarray) -> np.ndarray:
    """``d[i, j]``: row ``i`` of ``values`` dominates row ``j`` (every column maximised): at least
    as good in every column and better in one."""
    v = np.asarray(values, dtype=float)
    return np.all(v[:, None] >= v[None], axis=2) & np.any(v[:, None] > v[None], axis=2)


def front(values: np.ndarray) -> list[int]:
    """Indices of the non-dominated rows of ``values`` (every column maximised)."""
    return [int(i) for i in np.flatnonzero(~dominance(values).any(axis=0))]


def contributions(points: np.ndarray, ref: Sequence[float | None] = (None, None)) -> np.ndarray:
    """Exclusive hypervolume contribution of each point of a two-objective front (both maximised),
    against the reference point ``ref``; an objective whose reference is None takes its minimum
    over the front less a tenth of its span (so the extremes count too)."""
    n = len(points)
    if n == 1:
        return np.ones(1)
    span = points.max(axis=0) - points.min(axis=0)
    span[span == 0] = 1.0
    ref = np.array([points[:, i].min() - 0.1 * span[i] if r is None else float(r) for i, r in enumerate(ref)])
    order = np.argsort(points[:, 0])  # first objective ascending: second descending along a front
    p = (points[order] - ref) / span
    out = np.empty(n)
    for k in range(n):
        left = p[k - 1, 0] if k > 0 else 0.0
        below = p[k + 1, 1] if k + 1 < n else 0.0
        out[order[k]] = max(p[k, 0] - left, 0.0) * max(p[k, 1] - below, 0.0)
    return out


@dataclass(frozen=True)
class ObjectiveView:
    """How ``refine`` reads objective values.

    Attributes:
        signs: per objective, 1.0 where it is maximised and -1.0 where it is minimised.
        log_objectives: indices of ratio objectives, read in log space.
        floors: objective index -> its least useful value, in the objective's own units.
    """

    signs: tuple[float, ...]
    log_objectives: tuple[int, ...] = ()
    floors: Mapping[int, float] = field(default_factory=dict)

    @classmethod
    def of(cls, study, *, log_objectives: Sequence[int] = (),
           floors: Mapping[int, float] | None = None) -> ObjectiveView:
        """The view of ``study``'s directions with the given log objectives and floors."""
        signs = tuple(1.0 if d == StudyDirection.MAXIMIZE else -1.0 for d in study.directions)
        return cls(signs, tuple(log_objectives), dict(floors or {}))

    def oriented(self, raw: np.ndarray) -> np.ndarray:
        """``raw`` objective values (one row per trial) as fronts are taken: ratio objectives in
        log space, every column maximised."""
        values = raw.copy()
        for i in self.log_objectives:
            values[:, i] = np.log(np.maximum(values[:, i], 1e-12))
        return values * np.array(self.signs)

    def floored(self, done: Sequence[FrozenTrial], *, strict: bool = False) -> tuple[list[FrozenTrial], np.ndarray]:
        """``done`` (finished trials) with finite values, and their raw values, kept to the trials
        reaching every floor while any does (``strict``: even when none does)."""
        signs = np.array(self.signs)
        raw = np.array([t.values for t in done], dtype=float).reshape(len(done), len(signs))
        ok = np.all(np.isfinite(raw), axis=1)
        done, raw = [t for t, k in zip(done, ok) if k], raw[ok]
        if self.floors and done:
            useful = np.all([raw[:, i] * signs[i] >= v * signs[i] for i, v in self.floors.items()], axis=0)
            if useful.any() or strict:  # else every trial is below a floor: the whole front, as without floors
                done, raw = [t for t, k in zip(done, useful) if k], raw[useful]
        return done, raw

    def reference(self) -> list[float | None]:
        """The hypervolume reference point, oriented as ``oriented``: an objective's floor, a
        maximised log ratio objective's ratio 1 (no compression), else None (below the front)."""
        ref: list[float | None] = []
        for i, sign in enumerate(self.signs):
            if i in self.floors:
                floor = self.floors[i]
                ref.append(sign * (math.log(max(floor, 1e-12)) if i in self.log_objectives else floor))
            else:
                ref.append(0.0 if i in self.log_objectives and sign > 0 else None)
        return ref

"""Pareto fronts for any number of objectives with max/min directions, and the knee point."""
from __future__ import annotations

from typing import Sequence

import numpy as np


def _as_max(points: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    """Flip ``min`` objectives so that larger is better everywhere."""
    signs = np.array([1.0 if d == "max" else -1.0 for d in directions])
    if points.ndim != 2 or points.shape[1] != len(directions):
        raise ValueError(f"points must be [n, {len(directions)}], got shape {points.shape}")
    return points * signs


def pareto_mask(points: Sequence[Sequence[float]], directions: Sequence[str]) -> np.ndarray:
    """Boolean mask of the non-dominated points.

    A point is dominated when another is at least as good in every objective and strictly
    better in one. Duplicates of a non-dominated point are all kept (none dominates the other);
    rows with NaN are never on the front.
    """
    p = _as_max(np.asarray(points, dtype=float), directions)
    n = len(p)
    valid = ~np.isnan(p).any(axis=1)
    mask = valid.copy()
    for i in np.flatnonzero(valid):
        others = p[valid]
        ge = (others >= p[i]).all(axis=1)
        gt = (others > p[i]).any(axis=1)
        if (ge & gt).any():
            mask[i] = False
    return mask if n else np.zeros(0, dtype=bool)


def knee_index(points: Sequence[Sequence[float]], directions: Sequence[str]) -> int:
    """Index (into ``points``) of the knee of the front.

    Objectives are min-max normalised over the front to [0, 1] (1 = best). In 2-D the knee is
    the front point farthest from the straight line through the two extreme points; in more
    dimensions, the point closest to the ideal point (all ones). A front of one or two points
    returns the most balanced one (largest minimum normalised objective).
    """
    p = np.asarray(points, dtype=float)
    front = np.flatnonzero(pareto_mask(p, directions))
    if len(front) == 0:
        raise ValueError("no valid point to pick a knee from")
    q = _as_max(p[front], directions)
    lo, hi = q.min(axis=0), q.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    z = (q - lo) / span
    if len(front) <= 2:
        return int(front[int(np.argmax(z.min(axis=1)))])
    if z.shape[1] == 2:
        a, b = z[np.argmax(z[:, 0])], z[np.argmax(z[:, 1])]
        direction = b - a
        norm = np.linalg.norm(direction)
        if norm == 0:
            return int(front[0])
        def cross(pts: np.ndarray) -> np.ndarray:
            return direction[0] * (pts[..., 1] - a[1]) - direction[1] * (pts[..., 0] - a[0])

        # signed distance to the chord, positive on the side of the ideal point (1, 1)
        toward_ideal = np.sign(cross(np.ones(2))) or 1.0
        dist = toward_ideal * cross(z) / norm
        return int(front[int(np.argmax(dist))])
    return int(front[int(np.argmin(np.linalg.norm(1.0 - z, axis=1)))])

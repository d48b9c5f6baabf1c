"""Pareto fronts for any number of objectives with max/min directions, and the knee point."""
from __future__ import annotations

from typing import Sequence

import numpy as np

DIRECTIONS = ("max", "min")


def as_matrix(points: Sequence[Sequence[float]] | np.ndarray, directions: Sequence[str]) -> np.ndarray:
    """``points`` as a float ``[n, d]`` array, checked against ``directions`` (one per column)."""
    for d in directions:
        if d not in DIRECTIONS:
            raise ValueError(f"objective direction must be 'max' or 'min', got {d!r}")
    if not directions:
        raise ValueError("at least one objective direction is needed")
    p = np.asarray(points, dtype=float)
    if p.size == 0:
        return p.reshape(0, len(directions))
    if p.ndim != 2 or p.shape[1] != len(directions):
        raise ValueError(f"points must be [n, {len(directions)}] (one column per direction), got shape {p.shape}")
    return p


def as_max(points: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    """Flip ``min`` objectives so that larger is better everywhere."""
    p = as_matrix(points, directions)
    signs = np.array([1.0 if d == "max" else -1.0 for d in directions])
    return p * signs


_as_max = as_max  # older private name


def nondominated(q: np.ndarray) -> np.ndarray:
    """Mask of the rows of ``q`` (all objectives maximised, no NaN) that no other row dominates."""
    n = len(q)
    mask = np.ones(n, dtype=bool)
    # Sorting lexicographically (best first) means a row can only be dominated by earlier rows,
    # and each row is compared against the kept rows only: O(n * front * d).
    order = np.lexsort(q.T[::-1])[::-1]
    kept: list[int] = []
    for i in order:
        if kept:
            k = q[kept]
            if ((k >= q[i]).all(axis=1) & (k > q[i]).any(axis=1)).any():
                mask[i] = False
                continue
        kept.append(i)
    return mask


def pareto_mask(points: Sequence[Sequence[float]], directions: Sequence[str]) -> np.ndarray:
    """Boolean mask of the non-dominated points.

    A point is dominated when another is at least as good in every objective and strictly
    better in one. Duplicates of a non-dominated point are all kept (none dominates the other);
    rows with NaN are never on the front.
    """
    p = as_max(points, directions)
    valid = ~np.isnan(p).any(axis=1)
    mask = np.zeros(len(p), dtype=bool)
    idx = np.flatnonzero(valid)
    mask[idx] = nondominated(p[idx])
    return mask


def log_scaled(metrics: Sequence[str]) -> list[bool]:
    """Which objectives are ratios (``*_compression``): their knee is found in log space, where
    2x -> 4x counts as much as 4x -> 8x."""
    return [m.endswith("_compression") for m in metrics]


def knee_index(points: Sequence[Sequence[float]], directions: Sequence[str],
               log: Sequence[bool] | None = None) -> int:
    """Index (into ``points``) of the knee of the front.

    Objectives flagged in ``log`` (positive ratios such as compression) are taken in log
    space first. Objectives are then min-max normalised over the front to [0, 1] (1 = best). In 2-D the knee is
    the front point farthest from the straight line through the two extreme points; in more
    dimensions, the point closest to the ideal point (all ones). A front of one or two points
    returns the most balanced one: largest minimum objective, normalised between the worst
    valid point and the front's best (over the front alone two points always tie). Ties go to
    the earliest index.
    """
    p = as_matrix(points, directions)
    if log is not None and any(log):
        p = p.copy()
        for j, flag in enumerate(log):
            if flag:
                col = p[:, j]
                if np.any(col[~np.isnan(col)] <= 0):
                    raise ValueError(f"objective {j} must be positive to be taken in log space")
                p[:, j] = np.log(col)
    front = np.flatnonzero(pareto_mask(p, directions))
    if len(front) == 0:
        raise ValueError("no valid point to pick a knee from")
    q = as_max(p[front], directions)
    lo, hi = q.min(axis=0), q.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    z = (q - lo) / span
    if len(front) <= 2:
        valid = as_max(p[~np.isnan(p).any(axis=1)], directions)
        lo = valid.min(axis=0)
        span = np.where(hi > lo, hi - lo, 1.0)
        return int(front[int(np.argmax(((q - lo) / span).min(axis=1)))])
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


def front_path(points: Sequence[Sequence[float]], directions: Sequence[str]) -> list[tuple[float, float]]:
    """Vertices of the 2-D front's staircase (the border of the region it dominates).

    Columns are (x, y). The front is ordered from its best-y end to its best-x end; between two
    neighbours the path first moves along y to the next point's level, then along x, so it
    never crosses the dominated region. Duplicates appear once.
    """
    p = as_matrix(points, directions)
    if p.shape[1] != 2:
        raise ValueError(f"a front path needs exactly 2 objectives, got {p.shape[1]}")
    front = np.unique(p[pareto_mask(p, directions)], axis=0)
    if len(front) == 0:
        return []
    q = as_max(front, directions)
    front = front[np.argsort(q[:, 0], kind="stable")]  # best y first: y falls as x improves
    path = [(float(front[0, 0]), float(front[0, 1]))]
    for (x0, _), (x1, y1) in zip(front[:-1], front[1:]):
        path += [(float(x0), float(y1)), (float(x1), float(y1))]
    return path

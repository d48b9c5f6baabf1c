"""The first trials of every sweep (enqueued in the Optuna study): every method of the space,
at targets spread over the space's compression range, with uniform and profile allocations,
all at the space's central train settings (each searched ``train.*`` at its midpoint, the
settings the dense reference trains with).

Optuna fixes the parameters a point names and samples the rest (method knobs) as usual; the
sampler then continues from these results. The train settings are fixed because with short
fine-tuning the learning rate decides a trial as much as its ranks (docs/refine.md).
"""
from __future__ import annotations

import math
from typing import Any

from search_spaces import encode_point


def warm_start_size(num_samples: int, methods: int) -> int:
    """Half the budget, and one point per method at least (so every method is on the plot).

    Half, not two per method: with few methods two points each leave most of the compression
    range to the search, which refines near the front (docs/refine.md, warm start)."""
    return min(num_samples, max(methods, num_samples // 2))


def _spread(low: float, high: float, n: int, *, log: bool) -> list[float]:
    if n == 1:
        return [math.sqrt(low * high) if log else (low + high) / 2]
    if log:
        return [low * (high / low) ** (i / (n - 1)) for i in range(n)]
    return [low + (high - low) * i / (n - 1) for i in range(n)]


def planned_methods(space) -> list[str]:
    """The space's methods that train a plan (every method but ``full``), in the space's order."""
    from ..methods import METHODS

    return [m for m in space.methods if METHODS.get(m).uses_plan]


def _interleaved(n: int) -> list[int]:
    """0, 2, 4, ... then the odd indices downwards: low and high values alternate over the rounds."""
    return sorted(range(n), key=lambda i: (i % 2, i if i % 2 == 0 else -i))


def warm_start_points(space, groups: list[str], num_samples: int, size: int | None = None, *,
                      by_results: bool = False) -> list[dict[str, Any]]:
    """The points to enqueue, in order: one per method without a plan (``full``), then the
    methods with a plan, at targets spread over the range (log-spaced) and alternating between
    the uniform and the sensitivity allocation (a budget-driven space), or at uniform ratios,
    every group the same, spread over the ratio range (a per-group space); every point at the
    central train settings.

    How the planned methods share the points: in turn, each meeting low and high targets; or,
    with ``by_results`` (the ``refine`` searcher, which picks the open method, see
    ``refine.method_share``) when the warm start is not the whole sweep and has at least two points
    per method, in two rounds: every method once at the range's least compressed end (one
    allocation, a head-to-head where every method is usable and the front's most accurate model
    lies), then the other points with the method left open, so it is chosen when the trial
    starts, by how the methods did so far. With fewer points the methods take them in turn (a
    head-to-head would take most of them to one target: the ``demo`` space's 5 methods in 8
    points), every method at least one. Either way, with ``by_results`` the most compressed end
    is asked last with its method open, so it is chosen with the most results in, and takes the
    uniform allocation (as the least compressed end does: both ends are what a hand sweep of
    uniform ratios has). Why two rounds and the end last: docs/refine.md, warm start."""
    methods = list(space.methods)
    # the searched train settings at their midpoints (the dense reference's settings)
    central = encode_point(space, groups, train={k: d.midpoint() for k, d in space.train.items()})
    planned = planned_methods(space)
    n = warm_start_size(num_samples, len(methods)) if size is None else size
    points: list[dict[str, Any]] = [encode_point(space, groups, method=m) for m in methods if m not in planned][:n]
    n_plan = n - len(points) if planned else 0
    if n_plan <= 0:
        return [{**p, **central} for p in points]
    if space.rank_mode == "sensitivity":
        t = space.target
        low, high = space.target_bounds()
        log = t.kind != "fixed" and (t.log or t.kind == "categorical")
        allocations = list(space.allocations)
    else:
        r = space.ratio
        low, high = (r.value, r.value) if r.kind == "fixed" else \
            ((min(r.choices), max(r.choices)) if r.kind == "categorical" else (r.low, r.high))
        log = r.kind != "fixed" and r.log
        allocations = [None]

    def point(method: str | None, value: float, allocation: str | None) -> dict[str, Any]:
        value = float(value)  # a categorical dimension takes its nearest choice as it is
        if space.rank_mode == "sensitivity":
            if t.kind == "categorical":
                value = min(t.choices, key=lambda c: abs(math.log(c / value)))
            return encode_point(space, groups, method=method, target=value, allocation=allocation)
        if space.ratio.kind == "categorical":
            value = min(space.ratio.choices, key=lambda c: abs(c - value))
        return encode_point(space, groups, method=method, ratio=value)

    head = "uniform" if "uniform" in allocations else allocations[0]
    shared = by_results and n < num_samples and len(planned) > 1
    if shared and n_plan >= 2 * len(planned):
        values = _spread(low, high, n_plan - len(planned) + 1, log=log)
        if space.rank_mode != "sensitivity":
            values.reverse()  # a rank ratio: the largest one compresses least
        least, top = values.pop(0), values[-1]
        points += [point(m, least, head) for m in planned]
        points += [point(None, values[i], allocations[k % len(allocations)])
                   for k, i in enumerate(_interleaved(len(values))) if i < len(values) - 1]
    else:
        values = _spread(low, high, n_plan, log=log)
        # with a searcher that chooses open methods, the most compressed end is left open too,
        # once every method has a point of its own
        top_index = (n_plan - 1 if space.rank_mode == "sensitivity" else 0) \
            if shared and n_plan > len(planned) else None
        top = None if top_index is None else values[top_index]
        order = [i for i in _interleaved(n_plan) if i != top_index]
        for k, i in enumerate(order):  # each method meets every allocation as the rounds go on
            allocation = allocations[(k % len(planned) + k // len(planned)) % len(allocations)]
            points.append(point(planned[k % len(planned)], values[i], allocation))
    if top is not None:
        # the most compressed end, asked last (so its method is chosen with the most results in),
        # at the uniform allocation: both ends are the uniform points a hand sweep has, so the
        # search can only add to them
        points.append(point(None, top, head))
    return [{**p, **central} for p in points]

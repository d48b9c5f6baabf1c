"""Gap fill: a child at the middle of the front's widest gap along the objective a parameter sets
(a searched target compression), so the front is nowhere much sparser than a uniform grid."""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from .attrs import ENQUEUED_KEY, FILL_KEY, PARENT_KEY
from .mutation import inside, snap
from .pareto import ObjectiveView, front
from .settings import FillSettings


def fill_turn(trials: Sequence[FrozenTrial]) -> bool:
    """Whether the next searched trial fills a gap: every other one, the first one included.

    ``trials`` are the study's trials; a searched one is a trial this sampler began (it has a
    ``PARENT_KEY``) that was not enqueued."""
    searched = [t for t in trials if PARENT_KEY in t.system_attrs and ENQUEUED_KEY not in t.system_attrs]
    fills = sum(1 for t in searched if t.system_attrs.get(FILL_KEY))
    return fills <= len(searched) - fills


def fill_child(trials: Sequence[FrozenTrial], view: ObjectiveView,
               fill: FillSettings) -> tuple[FrozenTrial, dict[str, Any]] | None:
    """(parent, child) for the widest gap worth filling, or None when no gap is wider than
    ``fill.spacing``.

    Args:
        trials: the study's trials (finished ones make the front; running trials and earlier
            fills cover their targets; every asked trial's parameters count as tried).
        view: how objective values are read; its floors are not used (the whole front).
        fill: the parameter, its objective and the spacing.

    Returns:
        The gaps are the stretches between the front's values of the objective, the running
        trials' and earlier fills' parameter values and the parameter's bounds (in log space for
        a log-scaled parameter). The widest gap whose child would not repeat an asked trial (the
        same other parameters, the parameter within half the spacing) gets a child at its middle,
        copied from the front trial just below it (the more accurate neighbour), with the values
        ``fill.fixed`` names. None also for a non-numeric or non-positive parameter.
    """
    name, j, spacing = fill.param, fill.objective, fill.spacing
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.values is not None and name in t.params
            and np.all(np.isfinite(t.values)) and t.values[j] > 0]
    if not done:
        return None
    dist = done[0].distributions[name]
    if not isinstance(dist, (FloatDistribution, IntDistribution)) or dist.low <= 0:
        return None
    to_axis = (lambda v: math.log(v)) if dist.log else float
    on_front = [done[i] for i in front(view.oriented(np.array([t.values for t in done], dtype=float)))]
    covered = [to_axis(t.values[j]) for t in on_front]
    covered += [to_axis(t.params[name]) for t in trials if name in t.params and t.params[name] > 0
                and (t.state == TrialState.RUNNING or t.system_attrs.get(FILL_KEY))]
    covered += [to_axis(dist.low), to_axis(dist.high)]
    axis = sorted(set(min(max(c, to_axis(dist.low)), to_axis(dist.high)) for c in covered))
    gaps = sorted(((b - a, a, b) for a, b in zip(axis, axis[1:])), reverse=True)
    asked = [t.params for t in trials if t.params]
    for width, a, b in gaps:
        if width <= spacing:
            return None
        mid = (a + b) / 2
        below = [t for t in on_front if to_axis(t.values[j]) <= mid]
        parent = max(below, key=lambda t: t.values[j]) if below else min(on_front, key=lambda t: t.values[j])
        child = dict(parent.params)
        child[name] = snap(math.exp(mid) if dist.log else mid, dist)
        child.update({k: v for k, v in fill.fixed.items() if k in child and inside(v, parent.distributions[k])})
        # a trial below the front leaves its gap open; a child that is that trial again would repeat it
        if not any(p.keys() == child.keys() and all(p[k] == v for k, v in child.items() if k != name)
                   and abs(to_axis(p[name]) - to_axis(child[name])) <= spacing / 2 for p in asked):
            return parent, child
    return None

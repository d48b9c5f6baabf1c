"""Parent selection: one trial of the current Pareto front, drawn by its hypervolume contribution."""
from __future__ import annotations

from typing import Sequence

import numpy as np
from optuna.trial import FrozenTrial

from .pareto import ObjectiveView, contributions, front


def select_parent(done: Sequence[FrozenTrial], view: ObjectiveView, rng: np.random.RandomState, *,
                  explore: float, weighted: bool = True) -> FrozenTrial | None:
    """A parent for the next child, or None for a trial drawn from the priors.

    Args:
        done: the finished trials that have values, in trial order.
        view: how their values are read (floors, log objectives, directions).
        rng: the sampler's generator; one ``rand`` when ``done`` is not empty, then one ``choice``.
        explore: probability of None (a draw from the priors) when ``done`` is not empty.
        weighted: False draws the parent uniformly from the front.

    Returns:
        A trial on the front of ``done`` (kept to the trials reaching every floor while any
        does), drawn half uniformly and half in proportion to its exclusive hypervolume
        contribution from ``view.reference()`` (two objectives; uniformly with more). A
        reference that the front does not clear is not used. None when ``done`` is empty.
    """
    if not done or rng.rand() < explore:
        return None
    done, raw = view.floored(done)
    if not done:
        return None
    values = view.oriented(raw)
    idx = front(values)
    pts = values[idx]
    weights = np.full(len(idx), 1.0 / len(idx))
    if weighted and pts.shape[1] == 2:
        ref = [r if r is not None and pts[:, k].min() >= r else None for k, r in enumerate(view.reference())]
        c = contributions(pts, ref)
        if c.sum() > 0:
            weights = 0.5 * weights + 0.5 * c / c.sum()
    return done[idx[rng.choice(len(idx), p=weights)]]

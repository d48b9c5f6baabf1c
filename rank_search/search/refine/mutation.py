"""Mutation: a child is its parent's parameters, each moved by a small random step, never a
configuration already asked while retries last."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial

RETRIES = 10  # mutations, then draws from the priors, tried before a repeated child is kept

# (parent, mutated child) -> the child to keep: the method share's gate on a switched method
Gate = Callable[[FrozenTrial, dict[str, Any]], dict[str, Any]]


def reflect(x: float, lo: float, hi: float) -> float:
    """``x`` folded back into ``[lo, hi]`` (``lo < hi``) by the distance it overshot a bound, as
    often as it takes: a step past a bound lands inside, not on the bound."""
    span = hi - lo
    y = (x - lo) % (2 * span)
    return lo + (y if y <= span else 2 * span - y)


def inside(value: Any, dist: BaseDistribution) -> bool:
    """Whether ``value`` is a value of ``dist`` (a knob may share a name with another method's)."""
    if isinstance(dist, CategoricalDistribution):
        return value in dist.choices
    if isinstance(dist, (FloatDistribution, IntDistribution)):
        return isinstance(value, (int, float)) and dist.low <= value <= dist.high
    return False


def snap(v: float, dist: FloatDistribution | IntDistribution) -> Any:
    """``v`` on the distribution's grid (int, stepped float) and inside its bounds."""
    if isinstance(dist, IntDistribution):
        v = round((v - dist.low) / dist.step) * dist.step + dist.low
        return int(min(max(v, dist.low), dist.high))
    if dist.step is not None:
        v = round((v - dist.low) / dist.step) * dist.step + dist.low
    return float(min(max(v, dist.low), dist.high))


def prior(dist: BaseDistribution, rng: np.random.RandomState) -> Any:
    """A value drawn uniformly from ``dist`` (in log space for a log-scaled one)."""
    if isinstance(dist, CategoricalDistribution):
        return dist.choices[rng.randint(len(dist.choices))]
    if isinstance(dist, (FloatDistribution, IntDistribution)):
        low, high = float(dist.low), float(dist.high)
        if dist.log:
            return snap(math.exp(rng.uniform(math.log(low), math.log(high))), dist)
        return snap(rng.uniform(low, high), dist)
    raise TypeError(f"refine: unsupported distribution {dist!r}")


@dataclass(frozen=True)
class Mutation:
    """Gaussian steps for numbers, random switches for categories.

    Attributes:
        step: a number's step has standard deviation ``step`` times its range (log range for
            a log-scaled one); a step past a bound is reflected back inside (``reflect``).
        switch: probability that a categorical parameter changes to another choice.
    """

    step: float
    switch: float

    def mutate(self, value: Any, dist: BaseDistribution, rng: np.random.RandomState) -> Any:
        """``value`` moved once within ``dist``."""
        if isinstance(dist, CategoricalDistribution):
            others = [c for c in dist.choices if c != value]
            if others and rng.rand() < self.switch:
                return others[rng.randint(len(others))]
            return value
        if isinstance(dist, (FloatDistribution, IntDistribution)):
            low, high = float(dist.low), float(dist.high)
            if high <= low:
                return dist.low
            lo, hi = (math.log(low), math.log(high)) if dist.log else (low, high)
            x = math.log(value) if dist.log else float(value)
            x = reflect(x + rng.normal(0.0, self.step * (hi - lo)), lo, hi)
            return snap(math.exp(x) if dist.log else x, dist)
        return value

    def __call__(self, parent: FrozenTrial, seen: Sequence[dict[str, Any]], rng: np.random.RandomState, *,
                 gate: Gate | None = None) -> dict[str, Any]:
        """A child of ``parent``: its parameters mutated (then passed through ``gate``); a child
        in ``seen`` (the parameters of every trial asked) is mutated again, ``RETRIES`` times,
        then drawn from the priors as often, then kept."""
        dists = parent.distributions
        child: dict[str, Any] = {}
        for attempt in range(2 * RETRIES + 1):
            if attempt < RETRIES:
                child = {k: self.mutate(v, dists[k], rng) for k, v in parent.params.items()}
                if gate is not None:
                    child = gate(parent, child)
            elif attempt < 2 * RETRIES:
                child = {k: prior(dists[k], rng) for k in parent.params}
            if child not in seen:
                break
        return child

"""`nested`: one factorized model whose every per-layer truncation is usable (issue 31).

The layers a uniform plan may name (and any other layer the rank spec names) are nested at full
rank from the weights the run starts from (the dense reference with ``init: dense``), components
in descending singular value (``_nested_model``). Each training step runs one truncation, drawn
by ``TruncationSampler`` from (seed, step) alone, so a resumed run draws the same ones:
- with probability ``p_full`` every layer at full rank,
- with probability ``p_min`` every layer at its smallest rank, ``ceil(min_ratio * max)`` (>= 1)
  or the plan's rank where that is lower (so the compact model of record is a trained truncation),
- otherwise a random truncation, by ``draw``: ``independent`` (default): each layer (each
  Tucker-2 mode) uniform over [smallest, full]; or ``shared``: as the one-shot search draws its
  allocations (``shared_ratios``).
*Our choice*: the sandwich rule (largest, smallest, random widths) at its usual 1:1:2 share, one
truncation per step, so a step costs one ordinary step (what each draw gave: docs/nested.md).
The compact model of record is the truncation to the resolved plan (energy/value specs resolve
on the starting weights), layers outside it dense at full rank, with its BatchNorm statistics
re-estimated on ``bn_images`` training images (0: the running statistics of training).

With ``weights`` (a trained nested model's state_dict, e.g. a one-shot sweep's ``nested.pt``) the
run instead fine-tunes that model's truncation to the plan: the model trained is the compact
model ``export_truncation`` makes of it, BatchNorm re-estimated as above, trained like any other
model (no truncation is drawn). The nested model must have this run's structure (same model,
scheme and nested layers).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
from torch import nn

from ..engine.batchnorm import reestimate_batchnorm
from ..errors import RankSearchError
from ..layers import Rank, get_scheme
from ..plan import RankPlan, eligible_layers, scheme_for
from ._nested_model import export_truncation, nest, nested_layers, set_truncation
from ._registry import register_method
from .base import Method, check_init

KINDS = ("full", "min", "random")
DRAWS = ("shared", "independent")
SPREAD = 0.5  # the standard deviation of a layer's log rank ratio around the shared one (our choice)


def shared_ratios(rng: np.random.Generator, names: Sequence[str], lowest: float,
                  spread: float = SPREAD) -> dict[str, float]:
    """Per layer of ``names`` a rank ratio in (0, 1]: exp(t + noise) capped at 1, t one log ratio
    uniform in [log ``lowest``, 0], noise Gaussian (``spread``) per layer. The random draws of
    both the training sampler and the one-shot search (``search.oneshot.sample_allocations``)."""
    t = rng.uniform(math.log(lowest), 0.0)
    noise = rng.normal(0.0, spread, size=len(names))
    return {n: math.exp(min(0.0, t + e)) for n, e in zip(names, noise)}


def rank_at(ratio: float, full: Rank, low: Rank) -> Rank:
    """``round(ratio * full)`` clamped to [``low``, ``full``] (per mode for Tucker-2's pair)."""
    if isinstance(full, tuple):
        return tuple(min(f, max(lo, round(ratio * f))) for f, lo in zip(full, low))
    return min(full, max(low, round(ratio * full)))


def smallest_ratio(low: Mapping[str, Rank], high: Mapping[str, Rank]) -> float:
    """The smallest of ``low[n] / high[n]`` over layers and Tucker-2 modes."""
    def ratio(lo: Rank, full: Rank) -> float:
        return min(a / b for a, b in zip(lo, full)) if isinstance(full, tuple) else lo / full

    return min(ratio(low[n], high[n]) for n in low)


@dataclass(frozen=True)
class NestedKnobs:
    """Attributes:
    p_full: probability that a step trains every nested layer at full rank.
    p_min: probability that a step trains every nested layer at its smallest rank.
    min_ratio: a layer's smallest trained rank as a fraction of its full rank (rounded up, >= 1).
    bn_images: training images the compact model's BatchNorm statistics are re-estimated on
        (0: keep the running statistics of training, a mixture over truncations).
    draw: how a random step's truncation is drawn: ``shared`` or ``independent`` (module docstring).
    init: ``dense``: a sweep's trials start from the dense reference; ``scratch``: from a fresh one.
    weights: a trained nested model's weights file: fine-tune its truncation to the plan instead
        of training a nested model (None: train one).
    """

    p_full: float = 0.25
    p_min: float = 0.25
    min_ratio: float = 0.05
    bn_images: int = 256  # as the sensitivity profile (profile.DEFAULT_BN_IMAGES)
    draw: str = "independent"
    init: str = "dense"
    weights: str | None = None

    def __post_init__(self) -> None:
        check_init("nested", self.init)
        if self.weights is not None and (not isinstance(self.weights, str) or not self.weights):
            raise RankSearchError(f"nested.weights must be the path of a nested model's weights file, "
                                  f"got {self.weights!r}")
        for knob in ("p_full", "p_min"):
            value = getattr(self, knob)
            if not 0.0 <= value <= 1.0:
                raise RankSearchError(f"nested.{knob} must be in [0, 1], got {value}")
        if self.p_full + self.p_min > 1.0:
            raise RankSearchError(f"nested.p_full + nested.p_min must be <= 1, got {self.p_full + self.p_min}")
        if not 0.0 < self.min_ratio <= 1.0:
            raise RankSearchError(f"nested.min_ratio must be in (0, 1], got {self.min_ratio}")
        if self.draw not in DRAWS:
            raise RankSearchError(f"nested.draw must be one of {', '.join(DRAWS)}, got {self.draw!r}")
        if self.bn_images < 0:
            raise RankSearchError(f"nested.bn_images must be >= 0, got {self.bn_images}")


def smallest_rank(max_rank: Rank, min_ratio: float) -> Rank:
    """``ceil(min_ratio * max_rank)``, at least 1 (per mode for Tucker-2's pair)."""
    if isinstance(max_rank, tuple):
        return tuple(max(1, math.ceil(min_ratio * m)) for m in max_rank)
    return max(1, math.ceil(min_ratio * max_rank))


def _lowest(a: Rank, b: Rank) -> Rank:
    return tuple(min(x, y) for x, y in zip(a, b)) if isinstance(a, tuple) else min(a, b)


@dataclass(frozen=True)
class TruncationSampler:
    """The per-layer truncation of each training step (the distribution of the module docstring).

    Attributes:
        low, high: per nested layer, its smallest and its full rank (ints or (out, in) pairs).
        p_full, p_min: the probabilities of an all-full and an all-smallest step.
        seed: with the step, all a draw depends on.
        random_draw: how a random step's truncation is drawn, one of ``DRAWS``.
    """

    low: Mapping[str, Rank]
    high: Mapping[str, Rank]
    p_full: float
    p_min: float
    seed: int
    random_draw: str = "independent"

    @classmethod
    def for_model(cls, model: nn.Module, knobs: NestedKnobs, seed: int,
                  plan: RankPlan | None = None) -> "TruncationSampler":
        """The sampler over ``model``'s nested layers with ``knobs``' probabilities and smallest
        ranks, each lowered to ``plan``'s rank of the layer where that is lower."""
        layers = nested_layers(model)
        low = {n: smallest_rank(m.max_rank, knobs.min_ratio) for n, m in layers.items()}
        for name, lp in (plan.items() if plan is not None else ()):
            low[name] = _lowest(low[name], lp.rank)
        return cls(low, {n: m.max_rank for n, m in layers.items()}, knobs.p_full, knobs.p_min, seed, knobs.draw)

    def draw(self, step: int) -> tuple[str, dict[str, Rank]]:
        """(kind, ranks) of step ``step``: kind is one of ``KINDS``; ranks hold every layer."""
        rng = np.random.default_rng([self.seed, step])
        u = rng.random()
        if u < self.p_full:
            return "full", dict(self.high)
        if u < self.p_full + self.p_min:
            return "min", dict(self.low)
        if self.random_draw == "shared":
            ratios = shared_ratios(rng, list(self.low), smallest_ratio(self.low, self.high))
            return "random", {n: rank_at(ratios[n], self.high[n], low) for n, low in self.low.items()}
        ranks: dict[str, Rank] = {}
        for name, low in self.low.items():
            high = self.high[name]
            if isinstance(low, tuple):
                ranks[name] = tuple(int(rng.integers(lo, hi + 1)) for lo, hi in zip(low, high))
            else:
                ranks[name] = int(rng.integers(low, high + 1))
        return "random", ranks


@register_method
class Nested(Method):
    name = "nested"
    Knobs = NestedKnobs
    supported_schemes = ("channel", "spatial", "tucker2")

    def __init__(self, knobs=None, *, ranks=None, scheme=None) -> None:
        super().__init__(knobs, ranks=ranks, scheme=scheme)
        self._sampler: TruncationSampler | None = None

    def nested_schemes(self, dense: nn.Module, plan: RankPlan) -> dict[str, str]:
        """Layer -> scheme of every layer to nest: the plan's layers with their schemes, and every
        other layer a uniform plan may name, in the run's scheme (channel where Tucker-2 cannot)."""
        schemes = {name: lp.scheme for name, lp in plan.items()}
        for name, layer in eligible_layers(dense).items():
            scheme = scheme_for(layer, self.scheme)
            if name not in schemes and get_scheme(scheme).unsupported_reason(layer) is None:
                schemes[name] = scheme
        order = [n for n, _ in dense.named_modules()]
        return dict(sorted(schemes.items(), key=lambda item: order.index(item[0])))

    def build_model(self, dense, trainer):
        self.plan = self.current_plan(dense)
        model = nest(dense, self.nested_schemes(dense, self.plan))
        if self.knobs.weights is None:
            return model
        from ..weights import load_weights

        load_weights(model, self.knobs.weights, what="nested.weights")
        compact = export_truncation(model, self.plan).to(trainer.device)
        if self.knobs.bn_images:
            reestimate_batchnorm(compact, trainer.data.train, images=self.knobs.bn_images, device=trainer.device)
        return compact

    def before_forward(self, trainer) -> None:
        if self.knobs.weights is not None:
            return  # fine-tuning a truncation: the model is compact already
        if self._sampler is None:
            self._sampler = TruncationSampler.for_model(trainer.model, self.knobs, trainer.seed, self.plan)
        set_truncation(trainer.model, self._sampler.draw(trainer.global_step)[1])

    def finalize(self, trainer) -> None:
        set_truncation(trainer.model, None)

    def compact_model(self, trainer):
        if self.knobs.weights is not None:
            return trainer.model
        compact = export_truncation(trainer.model, self.plan)
        if self.knobs.bn_images:
            reestimate_batchnorm(compact, trainer.data.train, images=self.knobs.bn_images, device=trainer.device)
        return compact

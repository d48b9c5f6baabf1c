"""One-shot search on a trained nested model (issue 31): many per-layer allocations, each
evaluated by truncation, BatchNorm re-estimation and validation; their front under MACs.

Contract:
- An allocation is a ``RankPlan`` over the nested layers a uniform plan may name; a nested layer
  outside it runs (and exports) dense at full rank. Ranks are never below the smallest rank the
  nested training used, nor at or above break-even (``cost.stays_dense``: such a layer is dense).
- ``sample_allocations`` draws ``count`` distinct allocations from a seed (*our choice*): a
  shared log rank ratio uniform between the smallest trained ratio and 1, each layer's log
  ratio that plus Gaussian noise (``spread``), so both near-uniform and uneven allocations
  appear at every compression; the uniform ones of ``uniform_points`` ratios come first.
- ``evaluate_truncation`` and ``compact_of`` leave the model they are given as it was (they work
  on a copy); ``compact_of``'s model computes what ``evaluate_truncation`` evaluated.
- ``oneshot_search`` returns every evaluated point (optionally screened first with fewer
  BatchNorm images, only the near-front ones evaluated in full); ``front`` keeps those no other
  point beats in both validation accuracy (higher) and MACs (lower), cheapest first.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ..allocation import LayerMacs
from ..cost import stays_dense
from ..engine import evaluate
from ..engine.batchnorm import has_batchnorm, reestimate_batchnorm
from ..errors import RankSearchError
from ..layers import Rank
from ..methods._nested_model import export_truncation, nested_layers, set_truncation, truncation_of
from ..methods.nested import SPREAD, rank_at, shared_ratios, smallest_ratio
from ..plan import LayerPlan, RankPlan


@dataclass(frozen=True)
class OneShotPoint:
    """One evaluated allocation: its plan, MACs, MACs compression, validation metrics and the
    training images its BatchNorm statistics were re-estimated on."""

    plan: RankPlan
    macs: int
    compression: float
    val_accuracy: float
    val_loss: float
    bn_images: int = 0


class TruncationSpace:
    """The searchable nested layers of ``model``, their rank bounds and the exact MACs of a plan.

    Args:
        model: a nested model (``methods.nested``).
        input_shape: one sample's shape.
        low: per nested layer, the smallest rank trained (``TruncationSampler.low``).
    """

    def __init__(self, model: nn.Module, input_shape: tuple[int, ...], low: Mapping[str, Rank]) -> None:
        self.macs = LayerMacs(export_truncation(model, RankPlan()), input_shape)
        nested = nested_layers(model)
        self.layers = {n: m for n, m in nested.items() if n in self.macs.layers}
        self.low = {n: low[n] for n in self.layers}

    def cost(self, plan: RankPlan) -> int:
        """The MACs of the model truncated to ``plan`` and exported."""
        saved = sum(self.macs.dense[n] - self.macs.factorized(n, lp.scheme, lp.rank) for n, lp in plan.items())
        return self.macs.total - saved

    def plan(self, ratios: Mapping[str, float]) -> RankPlan:
        """Per layer rank ``ratio * full`` (rounded, clamped to [smallest, full]); a layer at or
        above break-even left out (dense)."""
        entries = []
        for name, layer in self.layers.items():
            rank = rank_at(ratios[name], layer.max_rank, self.low[name])
            dense = self.macs.dense[name]
            measured = (dense, self.macs.factorized(name, layer.scheme, rank))
            if not stays_dense(self.macs.layers[name], layer.scheme, rank, measured=measured):
                entries.append((name, LayerPlan(layer.scheme, rank)))
        return RankPlan(tuple(entries))


def sample_allocations(space: TruncationSpace, count: int, *, seed: int = 0, spread: float = SPREAD,
                       uniform_points: int = 16) -> list[RankPlan]:
    """``count`` distinct allocations (fewer when the space has fewer), drawn as the module
    docstring says; deterministic in ``seed``."""
    if count < 1:
        raise RankSearchError(f"the one-shot search needs count >= 1 allocations, got {count}")
    if spread < 0:
        raise RankSearchError(f"the one-shot spread must be >= 0, got {spread}")
    lowest = smallest_ratio(space.low, {n: m.max_rank for n, m in space.layers.items()})
    rng = np.random.default_rng(seed)
    names = list(space.layers)
    seen: dict[RankPlan, None] = {}
    for t in np.linspace(math.log(lowest), 0.0, max(uniform_points, 1)):
        seen.setdefault(space.plan({n: math.exp(t) for n in names}), None)
    tries = 0
    while len(seen) < count and tries < 20 * count:
        tries += 1
        seen.setdefault(space.plan(shared_ratios(rng, names, lowest, spread)), None)
    return list(seen)[:count]


def evaluate_truncation(model: nn.Module, plan: RankPlan, data, *, bn_images: int = 512,
                        device: torch.device | None = None) -> tuple[float, float]:
    """(validation accuracy, loss) of ``model`` truncated to ``plan``, its BatchNorm statistics
    re-estimated on ``bn_images`` training images first (0: as they are)."""
    work = copy.deepcopy(model)
    return _evaluate_in_place(work, plan, data, bn_images=bn_images, device=device)


def compact_of(model: nn.Module, plan: RankPlan, data, *, bn_images: int = 512,
               device: torch.device | None = None) -> nn.Module:
    """The ordinary compact model of ``model`` truncated to ``plan`` (``export_truncation``), with
    the BatchNorm statistics ``evaluate_truncation`` re-estimates."""
    work = copy.deepcopy(model)
    _truncate(work, plan, data, bn_images=bn_images, device=device)
    return export_truncation(work, plan)


def _truncate(work: nn.Module, plan: RankPlan, data, *, bn_images: int, device) -> torch.device:
    device = device or next(work.parameters()).device
    set_truncation(work, truncation_of(plan))
    if bn_images:
        reestimate_batchnorm(work, data.train, images=bn_images, device=device)
    return device


def _evaluate_in_place(work: nn.Module, plan: RankPlan, data, *, bn_images: int, device) -> tuple[float, float]:
    return evaluate(work, data.val, _truncate(work, plan, data, bn_images=bn_images, device=device))


def oneshot_search(model: nn.Module, data, space: TruncationSpace, plans: Sequence[RankPlan], *,
                   bn_images: int = 512, screen_images: int = 0, margin: float = 0.02,
                   device: torch.device | None = None) -> list[OneShotPoint]:
    """Every plan of ``plans`` evaluated on ``model`` (left as it was), in order.

    With ``screen_images`` > 0 every plan is first screened with that many BatchNorm images, and
    only the plans within ``margin`` validation accuracy of the best screened plan of no more
    MACs are evaluated again with ``bn_images``; the others keep their screened metrics (each
    point records its ``bn_images``). A model without BatchNorm is never screened: a second pass
    would repeat the first.
    """
    if screen_images < 0 or not 0.0 <= margin <= 1.0:
        raise RankSearchError(f"the one-shot screen needs screen_images >= 0 and margin in [0, 1], "
                              f"got {screen_images} and {margin}")
    work = copy.deepcopy(model)

    def point(plan: RankPlan, images: int) -> OneShotPoint:
        accuracy, loss = _evaluate_in_place(work, plan, data, bn_images=images, device=device)
        macs = space.cost(plan)
        return OneShotPoint(plan, macs, space.macs.total / macs, accuracy, loss, images)

    if not screen_images or not has_batchnorm(work):
        return [point(plan, bn_images) for plan in plans]
    points = [point(plan, screen_images) for plan in plans]
    return [point(p.plan, bn_images) if near else p for p, near in zip(points, _near_front(points, margin))]


def _near_front(points: Sequence[OneShotPoint], margin: float) -> list[bool]:
    """Per point: within ``margin`` accuracy of the best point of no more MACs."""
    near = [False] * len(points)
    best = -math.inf
    for i in sorted(range(len(points)), key=lambda i: (points[i].macs, -points[i].val_accuracy)):
        best = max(best, points[i].val_accuracy)
        near[i] = points[i].val_accuracy >= best - margin
    return near


def front(points: Sequence[OneShotPoint]) -> list[OneShotPoint]:
    """The points no other point beats in validation accuracy and MACs, cheapest first."""
    kept: list[OneShotPoint] = []
    for p in sorted(points, key=lambda p: (p.macs, -p.val_accuracy)):
        if not kept or p.val_accuracy > kept[-1].val_accuracy:
            kept.append(p)
    return kept

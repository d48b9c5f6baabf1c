"""One-shot search on a nested model (issue 31): allocations, their MACs, evaluation, the front."""
from __future__ import annotations

import copy

import pytest
import torch

from rank_search.cost import count_macs, stays_dense
from rank_search.engine import evaluate
from rank_search.errors import RankSearchError
from rank_search.methods import create_method
from rank_search.methods._nested_model import nest, nested_layers
from rank_search.methods.nested import TruncationSampler
from rank_search.plan import eligible_layers
from rank_search.search.oneshot import (OneShotPoint, TruncationSpace, compact_of, evaluate_truncation, front,
                                        oneshot_search, sample_allocations)

from _nested import SCHEMES, nested_training, splits, tiny_net

SHAPE = (3, 8, 8)


@pytest.fixture(scope="module")
def trained():
    """A nested tiny net after a few epochs of nested training, its sampler and its data."""
    data = splits()
    model = nest(tiny_net(), SCHEMES)
    sampler = TruncationSampler.for_model(model, create_method("nested", {"min_ratio": 0.2}).knobs, seed=0)
    nested_training(model, sampler, data, epochs=4)
    return model, sampler, data


@pytest.fixture(scope="module")
def space(trained):
    model, sampler, _ = trained
    return TruncationSpace(model, SHAPE, sampler.low)


def test_the_space_is_the_eligible_nested_layers_and_its_macs_are_exact(trained, space) -> None:
    model, _, data = trained
    assert list(space.layers) == list(eligible_layers(tiny_net())) == ["3", "6", "11"]
    for plan in sample_allocations(space, 12, seed=3):
        compact = compact_of(model, plan, data, bn_images=0)
        assert space.cost(plan) == count_macs(compact, SHAPE)[0]


def test_allocations_are_distinct_seeded_trained_and_below_break_even(space) -> None:
    plans = sample_allocations(space, 60, seed=0)
    assert len(plans) == len(set(plans)) == 60
    assert plans == sample_allocations(space, 60, seed=0) and plans != sample_allocations(space, 60, seed=1)
    for plan in plans:
        for name, lp in plan.items():
            low, full = space.low[name], space.layers[name].max_rank
            pairs = zip(lp.rank, low, full) if isinstance(full, tuple) else [(lp.rank, low, full)]
            assert all(lo <= r <= f for r, lo, f in pairs), (name, lp.rank)
            assert not stays_dense(space.macs.layers[name], lp.scheme, lp.rank)
    costs = [space.cost(p) for p in plans]
    assert max(costs) / min(costs) > 2  # from about dense to the smallest trained ranks
    # the uniform allocations come first: one shared ratio, so ranks grow together
    ranks = [plans[i]["6"].rank if "6" in plans[i] else 16 for i in range(4)]
    assert ranks == sorted(ranks)


def test_evaluation_re_estimates_batchnorm_and_matches_the_exported_compact_model(trained, space) -> None:
    model, _, data = trained
    before = copy.deepcopy(model.state_dict())
    plan = sample_allocations(space, 5, seed=2)[-1]
    accuracy, loss = evaluate_truncation(model, plan, data, bn_images=64)
    compact = compact_of(model, plan, data, bn_images=64)
    assert not nested_layers(compact)
    compact_accuracy, compact_loss = evaluate(compact, data.val, torch.device("cpu"))
    assert compact_accuracy == accuracy and compact_loss == pytest.approx(loss, abs=1e-5)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # statistics of the given model untouched
    assert all(layer.active is None for layer in nested_layers(model).values())
    stale = evaluate_truncation(model, plan, data, bn_images=0)
    assert stale != (accuracy, loss)  # the running statistics of nested training differ


def test_the_search_evaluates_every_plan_and_keeps_the_non_dominated_ones(trained, space) -> None:
    model, _, data = trained
    plans = sample_allocations(space, 30, seed=0)
    points = oneshot_search(model, data, space, plans, bn_images=64)
    assert [p.plan for p in points] == plans
    assert all(p.compression == pytest.approx(space.macs.total / p.macs) for p in points)
    kept = front(points)
    assert [p.macs for p in kept] == sorted(p.macs for p in kept)
    assert [p.val_accuracy for p in kept] == sorted(p.val_accuracy for p in kept)
    for p in points:  # every point is on the front or beaten by a front point in both objectives
        assert p in kept or any(k.macs <= p.macs and k.val_accuracy >= p.val_accuracy for k in kept)
    assert max(p.val_accuracy for p in kept) == max(p.val_accuracy for p in points) > 0.5


def test_screening_re_evaluates_exactly_the_near_front_plans(trained, space) -> None:
    model, _, data = trained
    plans = sample_allocations(space, 30, seed=0)
    screened = oneshot_search(model, data, space, plans, bn_images=32)
    points = oneshot_search(model, data, space, plans, bn_images=64, screen_images=32, margin=0.05)
    full = {p.plan: p for p in oneshot_search(model, data, space, plans, bn_images=64)}
    again = [p for p in points if p.bn_images == 64]
    assert 0 < len(again) < len(points) and [p.plan for p in points] == plans
    for s, p in zip(screened, points):
        best = max(q.val_accuracy for q in screened if q.macs <= s.macs)
        near = s.val_accuracy >= best - 0.05
        assert p == (full[p.plan] if near else s)
    with pytest.raises(RankSearchError, match=r"screen_images >= 0 and margin in \[0, 1\], got 8 and 1.5"):
        oneshot_search(model, data, space, plans, screen_images=8, margin=1.5)


def test_front_breaks_ties_towards_the_cheaper_point() -> None:
    def point(macs: int, accuracy: float) -> OneShotPoint:
        return OneShotPoint(plan=None, macs=macs, compression=100 / macs, val_accuracy=accuracy, val_loss=0.0)

    points = [point(50, 0.9), point(40, 0.9), point(60, 0.95), point(70, 0.8), point(30, 0.5)]
    assert [(p.macs, p.val_accuracy) for p in front(points)] == [(30, 0.5), (40, 0.9), (60, 0.95)]


def test_bad_search_settings_are_refused_in_one_line(space) -> None:
    with pytest.raises(RankSearchError, match=r"the one-shot search needs count >= 1 allocations, got 0"):
        sample_allocations(space, 0)
    with pytest.raises(RankSearchError, match=r"the one-shot spread must be >= 0, got -1"):
        sample_allocations(space, 5, spread=-1)


def test_a_model_without_batchnorm_is_evaluated_once_per_plan(monkeypatch) -> None:
    import rank_search.search.oneshot as oneshot

    data = splits()
    net = tiny_net()
    for i, m in enumerate(net):
        if isinstance(m, torch.nn.BatchNorm2d):
            net[i] = torch.nn.Identity()
    model = nest(net, SCHEMES)
    space = TruncationSpace(model, SHAPE, TruncationSampler.for_model(model, create_method("nested").knobs, 0).low)
    plans = sample_allocations(space, 12, seed=0)
    calls = []
    real = oneshot._evaluate_in_place
    monkeypatch.setattr(oneshot, "_evaluate_in_place", lambda *a, **k: calls.append(k["bn_images"]) or real(*a, **k))
    points = oneshot_search(model, data, space, plans, bn_images=64, screen_images=32, margin=1.0)
    assert calls == [64] * len(plans)  # no screening pass: it would repeat the full one
    assert [p.bn_images for p in points] == [64] * len(plans)
    assert points == oneshot_search(model, data, space, plans, bn_images=64)

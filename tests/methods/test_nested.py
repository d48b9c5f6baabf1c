"""The nested-rank method (issue 31): nested layers, truncation, export, the step sampler."""
from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch
from torch import nn

from rank_search.checkpoint import load_compact, save_compact
from rank_search.errors import RankSearchError
from rank_search.layers import ChannelFactorized, SpatialFactorized, Tucker2Factorized
from rank_search.methods import create_method
from rank_search.methods._nested_model import (COMPOSE_SHARE, NestedChannel, NestedSpatial, NestedTucker2, export_truncation, nest,
                                               nested_layers, set_truncation, truncation_of)
from rank_search.methods.nested import TruncationSampler, smallest_rank
from rank_search.plan import LayerPlan, RankPlan

from _nested import SCHEMES, SPATIAL, nested_training, splits, tiny_net

X = torch.randn(6, 3, 8, 8, generator=torch.Generator().manual_seed(7))


def _out(model: nn.Module, x: torch.Tensor = X) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(x)


@pytest.fixture
def pair():
    dense = tiny_net().eval()
    return dense, nest(dense, SCHEMES).eval()


def test_nested_layers_hold_full_rank_in_descending_importance(pair) -> None:
    dense, model = pair
    layers = nested_layers(model)
    assert list(layers) == list(SCHEMES) and isinstance(layers["3"], NestedTucker2)
    assert isinstance(layers["0"], NestedChannel) and layers["0"].max_rank == 8  # min(8, 3*3*3)
    assert layers["3"].max_rank == (12, 8) and layers["11"].max_rank == 16
    for name, layer in layers.items():
        weight = dense.get_submodule(name).weight
        assert torch.allclose(layer.to_dense().weight, weight, atol=1e-5), name
    # channel: component norms |reduce_i| |expand_i| = s_i, descending
    s = layers["6"].reduce.weight.flatten(1).norm(dim=1) * layers["6"].expand.weight.flatten(1).norm(dim=0)
    assert torch.all(s[:-1] >= s[1:] - 1e-6)
    assert torch.allclose(s, torch.linalg.svdvals(dense[6].weight.flatten(1)), atol=1e-5)


def test_full_rank_truncation_equals_the_untruncated_model_and_the_dense_one(pair) -> None:
    dense, model = pair
    untruncated = _out(model)
    set_truncation(model, {n: m.max_rank for n, m in nested_layers(model).items()})
    assert torch.equal(_out(model), untruncated)
    assert torch.allclose(untruncated, _out(dense), atol=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_truncation_exports_to_the_compact_model_of_the_same_output(pair, seed: int, tmp_path) -> None:
    _, model = pair
    sampler = TruncationSampler.for_model(model, create_method("nested").knobs, seed)
    ranks = sampler.draw(3)[1] if seed else {"3": (2, 5), "6": 1, "13": 3}  # a partial one: the rest full
    plan = RankPlan(tuple((n, LayerPlan(SCHEMES[n], r)) for n, r in ranks.items()))
    model.train()
    set_truncation(model, truncation_of(plan))
    for x, _ in splits().train:  # BatchNorm statistics of this truncation
        model(x)
    compact = export_truncation(model, plan)
    assert isinstance(compact[3], Tucker2Factorized) and compact[3].rank == tuple(ranks["3"])
    assert isinstance(compact[6], ChannelFactorized) and compact[6].rank == ranks["6"]
    assert all(type(compact[i]) is nn.Conv2d for i in ([0] if "0" not in ranks else []))
    assert not nested_layers(compact)
    assert torch.allclose(_out(compact), _out(model), atol=1e-5)
    # the compact checkpoint rebuilds it as any compact model of the project (export, deploy)
    path = str(tmp_path / "compact.pt")
    save_compact(path, compact, plan=plan, model="_nested:tiny_net", dataset="blobs", method="nested",
                 in_channels=3, num_classes=4, image_size=8)
    assert torch.equal(_out(load_compact(path)), _out(compact))


def test_truncation_and_export_refuse_what_the_model_cannot_run(pair) -> None:
    _, model = pair
    with pytest.raises(RankSearchError, match=r"nested rank for layer '6' must be in \[1, 16\], got 17"):
        set_truncation(model, {"6": 17})
    with pytest.raises(RankSearchError, match=r"layer '3' must be in \[1, 12\] x \[1, 8\] \(out, in\), got \[3, 9\]"):
        set_truncation(model, {"3": (3, 9)})
    with pytest.raises(RankSearchError, match=r"a truncation names layers that are not nested: 7, 9"):
        set_truncation(model, {"9": 1, "7": 2})
    with pytest.raises(RankSearchError, match=r"plan layer '6' has scheme 'tucker2', the nested layer 'channel'"):
        export_truncation(model, RankPlan((("6", LayerPlan("tucker2", (2, 2))),)))


def test_a_truncation_slices_without_copying_and_trains_only_the_prefix(pair) -> None:
    _, model = pair
    layer = nested_layers(model)["6"]
    set_truncation(model, {"6": 5})
    storage = layer.reduce.weight.data_ptr()
    model.train()(X).square().mean().backward()
    assert layer.reduce.weight.data_ptr() == storage
    grad = layer.reduce.weight.grad.flatten(1).abs().sum(1)
    assert torch.all(grad[:5] > 0) and torch.all(grad[5:] == 0)
    assert torch.all(layer.expand.weight.grad[:, 5:] == 0)


@pytest.mark.parametrize("schemes", [SCHEMES, SPATIAL], ids=["channel-tucker2", "spatial"])
def test_the_composed_dense_form_computes_the_factors_at_every_rank_and_runs_where_it_is_cheaper(schemes) -> None:
    model = nest(tiny_net(), schemes).train()
    composed = []
    for name, layer in nested_layers(model).items():
        x = model[:int(name)](X).detach() if name != "0" else X
        full = layer.max_rank
        ranks = [(o, i) for o in range(1, full[0] + 1, 3) for i in range(1, full[1] + 1, 4)] + [full] \
            if isinstance(full, tuple) else list(range(1, full + 1))
        for rank in ranks:
            layer.active = rank
            outs, grads = [], []
            for form in (layer.factor_forward, layer.forward):
                layer.zero_grad()
                out = form(x, rank) if form == layer.factor_forward else form(x)
                out.square().sum().backward()
                outs.append(out.detach())
                grads.append([p.grad.clone() for p in layer.parameters()])
            assert torch.allclose(outs[0], outs[1], atol=1e-5), (name, rank)
            assert all(torch.allclose(a, b, atol=1e-4) for a, b in zip(*grads)), (name, rank)
        # the rule: the composed form where the factors' MACs reach COMPOSE_SHARE of its own
        low = (1, 1) if isinstance(full, tuple) else 1
        positions = x.shape[0] * (x[0, 0].numel() // math.prod(layer.dense_geometry()["stride"]) if x.dim() == 4 else 1)
        rule = {r: positions * layer.factor_macs(r) >= COMPOSE_SHARE * (positions * layer.dense_macs()
                                                                        + layer.compose_macs(r)) for r in (low, full)}
        calls = []
        layer.factor_forward = lambda x, rank: calls.append(rank) or x
        for rank in (low, full):
            layer.active = rank
            layer(x)
        assert calls == [r for r in (low, full) if not rule[r]], name
        composed.append(rule == {low: False, full: True})
    assert sum(composed) >= 3  # the convolutions of the tiny net switch between its ranks


@pytest.mark.parametrize("seed", [0, 1])
def test_the_spatial_scheme_nests_exactly_and_exports_the_truncation_it_runs(seed: int, tmp_path) -> None:
    dense = tiny_net().eval()
    model = nest(dense, SPATIAL).eval()
    layers = nested_layers(model)
    assert [type(layers[n]) for n in ("0", "3", "6", "11")] == [NestedSpatial] * 3 + [NestedChannel]
    assert [layers[n].max_rank for n in ("0", "3", "6")] == [9, 24, 36]  # min(c * kh, n * kw)
    for name in ("0", "3", "6"):
        conv, back = dense.get_submodule(name), layers[name].to_dense()
        assert torch.allclose(back.weight, conv.weight, atol=1e-5) and back.stride == conv.stride, name
    # components in descending singular value of the spatial matrix
    layer = layers["3"]
    s = layer.vertical.weight.flatten(1).norm(dim=1) * layer.horizontal.weight.transpose(0, 1).flatten(1).norm(dim=1)
    assert torch.allclose(s, torch.linalg.svdvals(SpatialFactorized.matrix(dense[3].weight)), atol=1e-5)
    full = _out(model)
    assert torch.allclose(full, _out(dense), atol=1e-5)
    set_truncation(model, {n: m.max_rank for n, m in layers.items()})
    assert torch.equal(_out(model), full)
    # a drawn truncation: its compact model computes the same (1e-5) and saves as any compact model
    ranks = TruncationSampler.for_model(model, create_method("nested").knobs, seed).draw(3 + seed)[1]
    plan = RankPlan(tuple((n, LayerPlan(SPATIAL[n], r)) for n, r in ranks.items()))
    model.train()
    set_truncation(model, truncation_of(plan))
    for x, _ in splits().train:
        model(x)
    compact = export_truncation(model, plan)
    assert isinstance(compact[3], SpatialFactorized) and compact[3].rank == ranks["3"]
    assert torch.allclose(_out(compact), _out(model), atol=1e-5)
    path = str(tmp_path / "compact.pt")
    save_compact(path, compact, plan=plan, model="_nested:tiny_net", dataset="blobs", method="nested",
                 in_channels=3, num_classes=4, image_size=8)
    assert torch.equal(_out(load_compact(path)), _out(compact))
    # the gradient of a truncated step reaches the prefix only
    set_truncation(model, {"3": 5})
    model.zero_grad()
    model.train()(X).square().mean().backward()
    grad = layer.vertical.weight.grad.flatten(1).abs().sum(1)
    assert torch.all(grad[:5] > 0) and torch.all(grad[5:] == 0) and torch.all(layer.horizontal.weight.grad[:, 5:] == 0)


# ---- the step sampler: the distribution nested.py's docstring states ----

def test_smallest_rank_rounds_up_and_is_at_least_one() -> None:
    assert smallest_rank(64, 0.05) == 4 and smallest_rank(8, 0.05) == 1 and smallest_rank((12, 8), 0.25) == (3, 2)


def test_the_plan_of_record_is_a_trained_truncation(pair) -> None:
    _, model = pair
    knobs = create_method("nested", {"min_ratio": 0.5}).knobs
    plan = RankPlan((("3", LayerPlan("tucker2", (2, 7))), ("6", LayerPlan("channel", 3))))
    sampler = TruncationSampler.for_model(model, knobs, seed=0, plan=plan)
    assert sampler.low == {"0": 4, "3": (2, 4), "6": 3, "11": 8, "13": 2}


def _random_draws(model, draw: str, n: int = 4000):
    knobs = create_method("nested", {"min_ratio": 0.2, "draw": draw}).knobs
    sampler = TruncationSampler.for_model(model, knobs, seed=0)
    assert sampler.low == {"0": 2, "3": (3, 2), "6": 4, "11": 4, "13": 1}
    assert sampler.draw(11) == sampler.draw(11) and sampler.draw(11) != sampler.draw(12)
    draws = [sampler.draw(step) for step in range(n)]
    kinds = Counter(kind for kind, _ in draws)
    for kind, p in (("full", 0.25), ("min", 0.25), ("random", 0.5)):
        assert abs(kinds[kind] / n - p) < 4 * math.sqrt(p * (1 - p) / n), (kind, kinds)
    assert all(r == sampler.high for k, r in draws if k == "full")
    assert all(r == sampler.low for k, r in draws if k == "min")
    return sampler, [r for k, r in draws if k == "random"]


def test_the_shared_draw_is_the_documented_distribution(pair) -> None:
    sampler, random = _random_draws(pair[1], "shared")
    # the documented law, simulated here on its own: a shared log ratio t ~ U(log lowest, 0), per
    # layer t + N(0, 0.5) capped at 0, rank = round(ratio * full) within [smallest, full]
    rng = np.random.default_rng(99)
    lowest = min(np.min(np.divide(sampler.low[n], sampler.high[n])) for n in sampler.low)
    t = rng.uniform(math.log(lowest), 0.0, size=len(random))
    for name in ("11", "13"):
        full, low = sampler.high[name], sampler.low[name]
        ratio = np.exp(np.minimum(0.0, t + rng.normal(0.0, 0.5, size=len(random))))
        expected = Counter(np.clip(np.round(ratio * full), low, full).astype(int).tolist())
        drawn = Counter(r[name] for r in random)
        distance = sum(abs(drawn[v] - expected[v]) for v in set(drawn) | set(expected)) / (2 * len(random))
        assert distance < 0.06, (name, drawn, expected)  # total variation between the two samples
    # one shared ratio per step: the layers' ranks move together
    r6, r11 = (np.array([r[n] for r in random], float) for n in ("6", "11"))
    assert np.corrcoef(r6, r11)[0, 1] > 0.25  # about 0.4 here; independent draws give about 0


def test_the_independent_draw_is_the_documented_distribution(pair) -> None:
    sampler, random = _random_draws(pair[1], "independent")
    assert create_method("nested").knobs.draw == "independent"  # the default
    # each layer (each Tucker-2 mode) uniform over [smallest, full], independently of the others
    for name, index in (("6", None), ("13", None), ("3", 0), ("3", 1)):
        values = [r[name] if index is None else r[name][index] for r in random]
        low = sampler.low[name] if index is None else sampler.low[name][index]
        high = sampler.high[name] if index is None else sampler.high[name][index]
        counts = Counter(values)
        assert set(counts) == set(range(low, high + 1)), name
        expected = len(values) / (high - low + 1)
        chi2 = sum((counts[v] - expected) ** 2 / expected for v in counts)
        assert chi2 < (high - low) + 5 * math.sqrt(2 * (high - low)), (name, chi2)  # mean + 5 sd of chi2(dof)
    pairs = Counter((r["6"] > 10, r["11"] > 10) for r in random)
    share = {k: v / len(random) for k, v in pairs.items()}
    p6, p11 = 6 / 13, 6 / 13
    assert abs(share[(True, True)] - p6 * p11) < 0.04


@pytest.mark.parametrize("knob,value,rule", [
    ("p_full", 1.5, r"nested.p_full must be in \[0, 1\], got 1.5"),
    ("p_min", -0.1, r"nested.p_min must be in \[0, 1\], got -0.1"),
    ("min_ratio", 0.0, r"nested.min_ratio must be in \(0, 1\], got 0.0"),
    ("bn_images", -1, r"nested.bn_images must be >= 0, got -1"),
    ("init", "warm", r"nested.init must be one of scratch, dense, got 'warm'"),
    ("draw", "both", r"nested.draw must be one of shared, independent, got 'both'"),
])
def test_knobs_are_checked_in_one_line(knob: str, value, rule: str) -> None:
    with pytest.raises(RankSearchError, match=rule):
        create_method("nested", {knob: value})
    with pytest.raises(RankSearchError, match=r"nested.p_full \+ nested.p_min must be <= 1, got 1.2"):
        create_method("nested", {"p_full": 0.6, "p_min": 0.6})


# ---- training: every sampled prefix learns ----

def _loss_at(model: nn.Module, ranks, data) -> float:
    """Mean training-mode loss (batch statistics) of ``model`` at truncation ``ranks``."""
    set_truncation(model, ranks)
    model.train()
    with torch.no_grad():
        losses = [nn.functional.cross_entropy(model(x), y).item() for x, y in data.val]
    return sum(losses) / len(losses)


def test_a_short_nested_training_reduces_the_loss_of_several_truncations() -> None:
    data = splits()
    model = nest(tiny_net(), SCHEMES)
    sampler = TruncationSampler.for_model(model, create_method("nested").knobs, seed=0)
    mixed = next(r for k, r in map(sampler.draw, range(100, 200)) if k == "random")
    truncations = {"full": sampler.high, "min": sampler.low, "mixed": mixed,
                   "half": {n: tuple(max(1, m // 2) for m in hi) if isinstance(hi, tuple) else max(1, hi // 2)
                            for n, hi in sampler.high.items()}}
    before = {k: _loss_at(model, r, data) for k, r in truncations.items()}
    nested_training(model, sampler, data, epochs=10)
    after = {k: _loss_at(model, r, data) for k, r in truncations.items()}
    assert all(after[k] < 0.75 * before[k] for k in truncations), (before, after)

"""Budget-driven rank allocation: every shipped space's model reaches its targets within 5%,
the sensitivity allocation spends the budget where the profile says it is cheapest, errors."""
from __future__ import annotations

import math

import pytest
import torch

from rank_search.allocation import (BudgetRanks, LayerMacs, Profile, max_compression, sensitivity_allocation,
                                    uniform_allocation)
from rank_search.cost import count_macs
from rank_search.data import dataset_info
from rank_search.errors import RankSearchError
from rank_search.groups import GroupRatios
from rank_search.models import create_model_for
from rank_search.plan import build_plan, eligible_layers, resolve_rank
from rank_search.profile import layer_spectra, spectral
from rank_search.decomp.policies import RankPolicy
from rank_search.surgery import compress
from search_spaces import get_space, list_spaces

RATIOS = (0.05, 0.1, 0.2, 0.4, 0.7, 1.0)


def energy_profile(model, input_shape, scheme: str = "channel") -> Profile:
    """A profile with only the evaluation-free proxy (no data needed)."""
    from rank_search.plan import scheme_for

    rows = []
    for name, layer in eligible_layers(model).items():
        s = scheme_for(layer, scheme)
        spectra = layer_spectra(s, layer)
        for ratio in RATIOS:
            rank = resolve_rank(name, layer, s, RankPolicy("ratio", ratio))
            energy, opnorm = spectral(spectra, rank)
            rows.append({"layer": name, "scheme": s, "ratio": ratio, "rank": rank, "energy": energy,
                         "opnorm_error": opnorm})
    return Profile(tuple(rows), {"input_shape": list(input_shape)})


def achieved(model, plan, input_shape) -> float:
    dense = count_macs(model, input_shape)[0]
    return dense / count_macs(compress(model, plan, decompose=False), input_shape)[0]


@pytest.mark.parametrize("space_name", list_spaces())
def test_allocation_meets_its_target_within_5_percent(space_name: str) -> None:
    space = get_space(space_name)
    info = dataset_info(space.dataset)
    torch.manual_seed(0)
    model = create_model_for(space.model, info)
    shape = (info.in_channels, info.image_size, info.image_size)
    reachable = max_compression(model, shape, scheme="channel")
    low, high = space.target_bounds() if space.rank_mode == "sensitivity" else (1.5, 0.9 * reachable)
    profile = energy_profile(model, shape)
    macs = LayerMacs(model, shape)
    for target in (low, math.sqrt(low * high), high):
        for plan in (uniform_allocation(macs, target, scheme="channel"),
                     sensitivity_allocation(macs, target, profile, scheme="channel", proxy="energy")):
            got = achieved(model, plan, shape)
            assert abs(got / target - 1) <= 0.05, (space.model, target, got)


def test_sensitivity_allocation_compresses_the_insensitive_layers(lenet5) -> None:
    shape = (1, 8, 8)
    names = list(eligible_layers(lenet5))
    # the first layer is very sensitive, every other one free to compress
    rows = [{"layer": n, "scheme": "channel", "ratio": r, "rank": 1, "val_loss": 1.0 + (5.0 * (1 - r) if i == 0 else 0.0)}
            for i, n in enumerate(names) for r in RATIOS]
    profile = Profile(tuple(rows), {"input_shape": list(shape), "dense_val_loss": 1.0})
    plan = sensitivity_allocation(LayerMacs(lenet5, shape), 1.3, profile, scheme="channel", proxy="bn")
    assert names[0] not in plan  # the sensitive layer stays dense
    assert abs(achieved(lenet5, plan, shape) / 1.3 - 1) <= 0.05


def test_budget_ranks_resolve_through_build_plan(lenet5) -> None:
    shape = [1, 8, 8]
    ranks = BudgetRanks(2.0, "uniform", "energy", energy_profile(lenet5, shape))
    plan = build_plan(lenet5, ranks, scheme="channel")
    assert abs(achieved(lenet5, plan, tuple(shape)) / 2.0 - 1) <= 0.05
    assert ranks.to_dict() == {"target": 2.0, "allocation": "uniform", "proxy": "energy", "profile": None}
    # the uniform grouping of one ratio is the same plan as a uniform policy
    assert build_plan(lenet5, GroupRatios("uniform", {"all": 0.5})) == build_plan(lenet5, "ratio:0.5")


@pytest.mark.parametrize("kwargs, match", [
    ({"target": 0.5}, r"target MACs compression must be a number >= 1, got 0.5"),
    ({"target": 2.0, "allocation": "greedy"}, r"allocation must be one of uniform, sensitivity, got 'greedy'"),
    ({"target": 2.0, "proxy": "fisher"}, r"profile proxy must be one of bn, finetune, energy, got 'fisher'"),
    ({"target": 2.0, "allocation": "sensitivity"}, r"the sensitivity allocation needs a profile"),
])
def test_budget_ranks_errors(kwargs, match) -> None:
    with pytest.raises(RankSearchError, match=match):
        BudgetRanks(**kwargs)


def test_profile_csv_round_trip_and_missing_proxy(lenet5) -> None:
    profile = energy_profile(lenet5, (1, 8, 8))
    back = Profile.from_csv(profile.to_csv(), profile.meta)
    assert [r["layer"] for r in back.rows] == [r["layer"] for r in profile.rows]
    assert [r["energy"] for r in back.rows] == pytest.approx([r["energy"] for r in profile.rows])
    with pytest.raises(RankSearchError, match="the profile has no 'val_loss' values: it was measured without proxy 'bn'"):
        back.curve(back.rows[0]["layer"], "channel", "bn")
    xs, ys = back.curve(back.rows[0]["layer"], "channel", "energy")
    assert xs == sorted(xs) and all(a >= b for a, b in zip(ys, ys[1:]))  # never cheaper when smaller

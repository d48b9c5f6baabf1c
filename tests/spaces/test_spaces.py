"""Search-space schema, shipped spaces and the define-by-run sampler (no Ray)."""
from __future__ import annotations

import math

import optuna
import pytest

from rank_search.search.check import check_space
from rank_search.groups import group_names, layer_groups
from search_spaces import SpaceError, SpaceSampler, get_space, list_spaces, space_from_mapping

BASE = {"model": "lenet5_wide", "dataset": "mnist5k", "epochs": 2, "methods": {"posthoc": {}}}


@pytest.mark.parametrize("name", list_spaces())
def test_shipped_spaces_validate_and_build(name: str) -> None:
    space = get_space(name)
    groups = check_space(space)
    # every shipped space searches ranks: one ratio per group, or a budget-driven target
    assert groups or (space.rank_mode == "sensitivity" and space.target.kind != "fixed")


def test_demo_space_searches_a_compression_target() -> None:
    space = get_space("demo")
    assert space.dataset == "mnist5k" and space.rank_mode == "sensitivity"
    low, high = space.target_bounds()
    assert low <= 2 and high >= 8 and space.target.log  # the range covers 2x-8x, sampled in log scale
    assert set(space.allocations) == {"uniform", "sensitivity"}
    assert check_space(space) == []  # no per-group ratios: the target is the rank dimension


@pytest.mark.parametrize("patch, match", [
    ({"epochs": 0}, "epochs must be an integer >= 1"),
    ({"methods": {}}, "at least one method"),
    ({"ranks": {"grouping": "per_block"}}, "grouping must be one of"),
    ({"ranks": {"ratio": {"float": [0.0, 2.0]}}}, r"ratio range must lie in \(0, 1\]"),
    ({"train": {"lr": {"float": [0.1, 0.01]}}}, "low must be < high"),
    ({"train": {"lr": {"float": [0.0, 0.1], "log": True}}}, "log range needs low > 0"),
    ({"train": {"lr": {"uniform": [0.01, 0.1]}}}, "a range must be"),
    ({"methodz": {}}, "unknown key"),
    ({"ranks": {"allocation": "sensitivity", "target": 2.0, "budget": "flops"}},
     "ranks.budget must be one of macs, latency, got 'flops'"),
])
def test_schema_errors_name_the_rule(patch: dict, match: str) -> None:
    with pytest.raises(SpaceError, match=match):
        space_from_mapping({**BASE, **patch}, name="bad")


@pytest.mark.parametrize("patch, match", [
    ({"methods": {"nosuch": {}}}, "unknown method 'nosuch'"),
    ({"methods": {"trp": {"interval": [0]}}}, "trp.interval"),
    ({"methods": {"posthoc": {"nope": 1}}}, "unknown setting 'posthoc.nope'"),
    ({"train": {"momentum": 2.0}}, "train.momentum"),
    ({"model": "resnet1000"}, "unknown model"),
])
def test_check_space_rejects_what_cannot_build(patch: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        check_space(space_from_mapping({**BASE, **patch}, name="bad"))


def test_unknown_space_lists_the_shipped_ones() -> None:
    with pytest.raises(SpaceError, match="valid choices: demo"):
        get_space("nosuch")


def test_rank_groupings_on_resnet20() -> None:
    from rank_search.models import create_model

    model = create_model("resnet20", in_channels=3, num_classes=10, image_size=32)
    assert group_names(model, "uniform") == ["all"]
    stages = group_names(model, "per_stage")
    assert stages == ["layer1-16", "layer2-32", "layer3-64"]
    per_layer = layer_groups(model, "per_layer")
    assert len(per_layer) == 18 and all(k == v for k, v in per_layer.items())


def test_sampler_is_conditional_and_complete() -> None:
    space = space_from_mapping({**BASE, "methods": {"trp": {"interval": {"int": [1, 9]}}, "posthoc": {}},
                                "train": {"lr": {"float": [0.01, 0.1], "log": True}, "batch_size": 32},
                                "ranks": {"grouping": "per_layer", "ratio": {"float": [0.1, 0.5]}}}, name="s")
    groups = check_space(space)
    sampler = SpaceSampler(space, groups)
    study = optuna.create_study(directions=["maximize", "maximize"], sampler=optuna.samplers.RandomSampler(seed=1))
    seen = set()
    for _ in range(12):
        trial = study.ask()
        fixed = sampler(trial)
        config = {**trial.params, **fixed}
        seen.add(config["method"])
        assert ("trp.interval" in config) == (config["method"] == "trp")
        assert 1 <= config.get("trp.interval", 1) <= 9
        assert config["train.batch_size"] == 32 and 0.01 <= config["train.lr"] <= 0.1
        assert all(0.1 <= config[f"rank.{g}"] <= 0.5 for g in groups)
        assert config["space.model"] == "lenet5_wide" and config["space.epochs"] == 2
        study.tell(trial, [0.5, 1.0])
    assert seen == {"trp", "posthoc"}


def test_trial_config_becomes_a_run_with_integer_plan() -> None:
    from rank_search.models import create_model
    from rank_search.plan import build_plan
    from rank_search.search.trial import spec_from_config

    model = create_model("lenet5_wide", in_channels=1, num_classes=10, image_size=28)
    groups = group_names(model, "per_layer")
    config = {"method": "posthoc", "posthoc.finetune_epochs": 1, "train.lr": 0.02,
              **{f"rank.{g}": 0.25 for g in groups},
              "space.model": "lenet5_wide", "space.dataset": "mnist5k", "space.epochs": 2, "space.seed": 3,
              "space.grouping": "per_layer", "space.data_root": None}
    spec = spec_from_config(config)
    assert spec.method == "posthoc" and spec.seed == 3 and spec.epochs == 2
    assert spec.settings == {"posthoc.finetune_epochs": 1, "train.lr": 0.02}
    plan = build_plan(model, spec.ranks)
    assert list(plan) == groups
    modules = dict(model.named_modules())
    for name, lp in plan.items():
        w = modules[name].weight
        max_rank = min(w.shape[0], w[0].numel())  # channel scheme (posthoc's default)
        assert lp.scheme == "channel" and lp.rank == math.ceil(0.25 * max_rank)


def test_a_latency_budget_round_trips_and_is_a_sweep_constant() -> None:
    ranks = {"allocation": "sensitivity", "target": {"float": [1.1, 2.0]}, "budget": "latency"}
    space = space_from_mapping({**BASE, "ranks": ranks}, name="lat")
    assert space.budget == "latency" and space_from_mapping(space.to_plain(), name="lat").budget == "latency"
    assert "budget" not in space_from_mapping({**BASE, "ranks": {**ranks, "budget": "macs"}}, name="m").ranks_plain()
    check_space(space)  # a latency target's reach is only known once the layers are timed: no MACs check
    trial = optuna.create_study().ask()
    fixed = SpaceSampler(space, [])(trial)  # the constants; the searched target is a trial parameter
    assert fixed["space.budget"] == "latency" and 1.1 <= trial.params["budget.target"] <= 2.0

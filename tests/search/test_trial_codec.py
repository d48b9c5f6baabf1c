"""The trial codec (``search_spaces._codec``): every shipped space's sampled trials decode and
re-encode to the same config; the defaults of a budget-driven space; the plain spelling of a
uniform allocation; the trainable reads its config through the codec only."""
from __future__ import annotations

import ast
import math
from pathlib import Path

import optuna
import pytest
import yaml

from rank_search import schema
from rank_search.errors import RankSearchError
from search_spaces import (BudgetTarget, GroupRanks, SpaceSampler, TrialSpec, decode_trial, load_space_file,
                           reference_constants, space_from_mapping)

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "search_spaces" / "spaces").glob("*.yaml")) + \
    sorted((ROOT / "benchmarks").glob("**/spaces/*.yaml"))
GROUPS = ["g0", "g1", "g2"]  # rank-group names stand-in: the codec takes them from the launcher
BUDGET = {"model": "lenet5", "dataset": "synthetic", "epochs": 1, "methods": {"posthoc": {}, "factorized": {}},
          "train": {"lr": {"float": [0.02, 0.1], "log": True}}}


def _sample(space, n: int, *, seed: int = 0, constants=None) -> list[tuple[dict, dict]]:
    """(searched params, the trial's whole flat config) of ``n`` trials, as Tune merges them."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    sampler = SpaceSampler(space, GROUPS, constants)
    out = []
    for _ in range(n):
        trial = study.ask()
        fixed = sampler(trial)
        out.append((dict(trial.params), {**trial.params, **fixed}))
        study.tell(trial, 0.0)
    return out


def test_the_shipped_spaces_are_all_here() -> None:
    assert len(SHIPPED) >= 6 and any(p.parent.parent.name == "benchmarks" for p in SHIPPED)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_sampled_trials_decode_and_encode_back_to_the_same_params(path: Path) -> None:
    space = load_space_file(str(path))
    refs = reference_constants(dense="/exp/dense.pt", profile="/exp") if space.rank_mode == "sensitivity" else {}
    for params, config in _sample(space, 8, constants=refs):
        trial = decode_trial(config)
        again = trial.to_config()
        assert again == config
        assert {k: again[k] for k in params} == params  # the searched parameters, value for value
        assert decode_trial(again) == trial
        assert trial.method in space.methods and trial.epochs == space.epochs and trial.space == space.name
        if space.rank_mode == "sensitivity":
            assert isinstance(trial.ranks, BudgetTarget) and trial.ranks.proxy == space.proxy
            assert trial.target_report() == {trial.ranks.metric: trial.ranks.target}
        else:
            assert isinstance(trial.ranks, GroupRanks) and set(trial.ranks.ratios) == set(GROUPS)
            assert trial.target_report() == {}


def test_a_decoded_trial_is_typed_and_frozen() -> None:
    space = space_from_mapping({**BUDGET, "ranks": {"allocation": "sensitivity", "target": 3.0, "budget": "latency"}})
    (_, config), = _sample(space, 1, constants=reference_constants(dense="s3://b/exp/dense.pt", profile="s3://b/exp"))
    trial = decode_trial(config)
    assert trial.ranks == BudgetTarget(3.0, config[schema.ALLOCATION_KEY], "bn", "latency")
    assert trial.target_report() == {schema.TARGET_LATENCY_SPEEDUP: 3.0}
    assert isinstance(trial.train["lr"], float) and trial.knobs == {}
    with pytest.raises(AttributeError):
        trial.method = "full"  # type: ignore[misc]
    moved = trial.moved_to("/here")
    assert (moved.dense, moved.profile) == ("/here/dense.pt", "/here")
    given = TrialSpec(method="full", model="lenet5", dataset="synthetic", epochs=1, dense="/mine/weights.pt")
    assert given.moved_to("/here").dense == "/mine/weights.pt"  # a --dense file kept in place stays


@pytest.mark.parametrize("config, match", [
    ({"space.model": "m", "space.dataset": "d", "space.epochs": 1}, "a trial config needs method"),
    ({"method": "full", "space.model": "m", "space.dataset": "d", "space.epochs": 1,
      schema.LATENCY_BATCH_SIZE_KEY: 0}, "space.latency_batch_size must be an integer >= 1, got 0"),
])
def test_a_bad_config_is_refused_in_one_line(config, match) -> None:
    with pytest.raises(RankSearchError, match=match):
        decode_trial(config)


def test_a_budget_space_without_proxy_uses_the_documented_default_bn() -> None:
    from rank_search.allocation import BudgetRanks

    space = space_from_mapping({**BUDGET, "ranks": {"allocation": "sensitivity", "target": 2.0}})
    assert space.proxy == schema.DEFAULT_PROXY == "bn"
    (_, config), = _sample(space, 1)
    assert config["space.proxy"] == "bn" and decode_trial(config).ranks.proxy == "bn"
    bare = {k: v for k, v in config.items() if k != "space.proxy"}  # a config of an older sweep
    assert decode_trial(bare).ranks.proxy == "bn"
    assert BudgetRanks(2.0, "uniform").proxy == "bn"
    assert BudgetRanks.from_dict({"target": 2.0, "allocation": "uniform"}).proxy == "bn"


def test_allocation_uniform_is_the_plain_spelling_of_a_uniform_allocation() -> None:
    target = {"float": [1.5, 4.0], "log": True}
    plain = space_from_mapping({**BUDGET, "ranks": {"allocation": "uniform", "target": target}}, name="u")
    old = space_from_mapping({**BUDGET, "ranks": {"allocation": "sensitivity", "target": target,
                                                  "allocations": ["uniform"]}}, name="u")
    assert plain == old and not plain.needs_profile and old.needs_profile is False
    assert space_from_mapping(plain.to_plain(), name="u") == plain  # the sweep record reads back
    assert [c for _, c in _sample(plain, 5, seed=4)] == [c for _, c in _sample(old, 5, seed=4)]
    for _, config in _sample(plain, 3):
        assert decode_trial(config).ranks.allocation == "uniform"
    with pytest.raises(RankSearchError, match="allocation uniform needs a 'target'"):
        space_from_mapping({**BUDGET, "ranks": {"allocation": "uniform"}})
    with pytest.raises(RankSearchError, match="may only hold 'allocation', 'target', 'budget'"):
        space_from_mapping({**BUDGET, "ranks": {"allocation": "uniform", "target": 2.0,
                                                "allocations": ["sensitivity"]}})


def test_a_uniform_trial_needs_no_profile_and_lands_on_its_target() -> None:
    from rank_search.cost import model_cost
    from rank_search.run import prepare
    from rank_search.search.trial import run_spec

    space = space_from_mapping({**BUDGET, "methods": {"factorized": {}},
                                "ranks": {"allocation": "uniform", "target": 2.5}}, name="u")
    (_, config), = _sample(space, 1, constants=reference_constants(dense=None, profile=None))
    spec = run_spec(decode_trial(config))
    assert spec.ranks.allocation == "uniform" and spec.ranks.profile is None
    trainer = prepare(spec)
    dense, compact = (model_cost(m, trainer.input_shape).macs for m in (trainer.dense, trainer.compact_model()))
    assert abs(dense / compact / 2.5 - 1) <= 0.05
    sensitivity = {**config, schema.ALLOCATION_KEY: "sensitivity"}
    with pytest.raises(RankSearchError, match="needs the sweep's profile"):
        run_spec(decode_trial(sensitivity))


def test_the_trainable_reads_its_config_only_through_the_codec() -> None:
    source = (ROOT / "rank_search" / "search" / "trainable.py").read_text(encoding="utf-8")
    reads = [node for node in ast.walk(ast.parse(source))
             if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == "config"
             or isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "config"]
    assert reads == [] and "decode_trial(config)" in source


@pytest.mark.slow
@pytest.mark.ray
def test_a_sweep_of_allocation_uniform_launches_without_a_profile(private_ray, tmp_path) -> None:
    from rank_search.search import LaunchConfig
    from rank_search.search.sweep import launch

    space = tmp_path / "uniform.yaml"
    space.write_text(yaml.safe_dump({**BUDGET, "methods": {"factorized": {}},
                                     "ranks": {"allocation": "uniform", "target": {"float": [1.5, 3.0]}}}))
    out = launch(LaunchConfig(space=str(space), storage=str(tmp_path), name="u", num_samples=2, seed=0))
    assert out.complete and out.counts == {"TERMINATED": 2}
    assert not (Path(out.path) / schema.PROFILE_FILE).exists()  # nothing measured a profile
    from analysis.loading import load_experiment

    trials = load_experiment(out.path).trials
    ratio = trials["macs_compression"] / trials[f"config/{schema.TARGET_KEY}"]
    assert all(math.isclose(r, 1, abs_tol=0.05) for r in ratio)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_a_warm_start_point_fixes_the_parameters_it_names(path: Path) -> None:
    from rank_search.search.warm_start import warm_start_points

    space = load_space_file(str(path))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    sampler = SpaceSampler(space, GROUPS)
    points = warm_start_points(space, GROUPS, 8)
    assert points
    for point in points:
        study.enqueue_trial(point)
        trial = study.ask()
        fixed = sampler(trial)
        config = {**trial.params, **fixed}
        assert set(point) <= set(trial.params)  # only searched parameters, under the sampler's names
        assert {k: config[k] for k in point} == point
        study.tell(trial, 0.0)

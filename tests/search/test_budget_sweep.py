"""A budget-driven sweep end to end on a private Ray: the dense reference and profile made once,
the warm start first and covering every method, every trial at its target MACs compression, the
study on disk, export -> train reproducing a trial from the dense reference."""
from __future__ import annotations

import json
import math
import os

import pytest
import torch
import yaml

from analysis.loading import epoch_history, in_trial_order, load_experiment
from rank_search import schema
from rank_search.cli import main

pytestmark = pytest.mark.ray

SPACE = {
    "model": "lenet5", "dataset": "synthetic", "epochs": 2,
    "methods": {"posthoc": {}, "factorized": {}, "full": {}},
    "train": {"lr": {"float": [0.05, 0.2], "log": True}},
    "ranks": {"allocation": "sensitivity", "target": {"float": [1.5, 4.0], "log": True}, "proxy": "bn"},
}


@pytest.fixture(scope="module")
def sweep(private_ray, tmp_path_factory):
    from rank_search.search import LaunchConfig
    from rank_search.search.sweep import launch

    root = tmp_path_factory.mktemp("budget")
    space = root / "budget.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    out = launch(LaunchConfig(space=str(space), storage=str(root), name="b", num_samples=7, seed=3))
    assert out.complete and out.counts == {"TERMINATED": 7}
    return out.path, str(space)


def test_references_and_study_live_in_the_experiment(sweep) -> None:
    path, _ = sweep
    for name in (schema.DENSE_WEIGHTS_FILE, schema.DENSE_RECORD_FILE, schema.PROFILE_FILE, schema.PROFILE_META_FILE,
                 schema.STUDY_FILE):
        assert os.path.isfile(os.path.join(path, name)), name
    record = yaml.safe_load(open(os.path.join(path, schema.DENSE_RECORD_FILE)))
    assert record["source"] == "trained" and 0 <= record[schema.VAL_ACCURACY] <= 1
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(os.path.join(path, schema.STUDY_FILE)))
    study = optuna.load_study(study_name="rank_search", storage=storage)
    assert len([t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]) == 7


def test_the_profile_measured_in_parallel_parts_is_the_one_a_single_measurement_gives(sweep) -> None:
    from rank_search.allocation import load_profile
    from rank_search.data import dataset_info, load_dataset
    from rank_search.models import create_model_for
    from rank_search.profile import measure_profile
    from rank_search.search.reference import _space_schemes
    from search_spaces import get_space

    path, space_file = sweep
    record = yaml.safe_load(open(os.path.join(path, schema.DENSE_RECORD_FILE)))
    assert 0 < record["profile_seconds"] <= record["seconds_total"] and record["profile_task_seconds"] > 0
    # the loaders the reference trained on (the space sets no batch size: the data set's default)
    data = load_dataset("synthetic", seed=0, batch_size=dataset_info("synthetic").batch_size)
    model = create_model_for("lenet5", data)
    model.load_state_dict(torch.load(os.path.join(path, schema.DENSE_WEIGHTS_FILE), weights_only=True))
    alone = measure_profile(model, data, schemes=_space_schemes(get_space(space_file)), proxies=("bn", "energy"))
    saved = load_profile(path)
    assert len(saved.rows) == len(alone.rows) and len({r["layer"] for r in saved.rows}) >= 2
    for a, b in zip(saved.rows, alone.rows):
        assert [str(a[k]) for k in ("layer", "scheme", "rank")] == [str(b[k]) for k in ("layer", "scheme", "rank")]
        for key in ("ratio", "val_accuracy", "val_loss", "macs", "energy"):
            assert float(a[key]) == pytest.approx(float(b[key]), rel=1e-9, abs=1e-12), (a["layer"], key)


def test_warm_start_trials_come_first_and_cover_every_method(sweep) -> None:
    from search_spaces import get_space

    from rank_search.search.warm_start import warm_start_points

    path, space_file = sweep
    points = warm_start_points(get_space(space_file), [], 7, by_results=True)  # the sweep's searcher: refine
    assert {p["method"] for p in points} == set(SPACE["methods"])
    trials = in_trial_order(load_experiment(path).trials)
    for point, (_, row) in zip(points, trials.iterrows()):
        for key, value in point.items():
            assert row[f"config/{key}"] == pytest.approx(value) if isinstance(value, float) else \
                row[f"config/{key}"] == value


def test_every_trial_reaches_its_target(sweep) -> None:
    path, _ = sweep
    trials = load_experiment(path).trials
    planned = trials[trials["config/method"] != "full"]
    assert len(planned) >= 2  # the warm start alone has one per planned method
    for _, row in planned.iterrows():
        assert row[schema.TARGET_MACS_COMPRESSION] == pytest.approx(row[f"config/{schema.TARGET_KEY}"])
        assert abs(row[schema.MACS_COMPRESSION] / row[schema.TARGET_MACS_COMPRESSION] - 1) <= 0.05
    assert set(planned[f"config/{schema.ALLOCATION_KEY}"]) == {"uniform", "sensitivity"}


def test_exported_trial_from_the_dense_reference_retrains_identically(sweep, tmp_path) -> None:
    path, _ = sweep
    trials = load_experiment(path).trials
    posthoc = trials[trials["config/method"] == "posthoc"].sort_values(schema.VAL_ACCURACY).iloc[-1]
    record = yaml.safe_load(open(os.path.join(path, posthoc["folder"], posthoc["checkpoint"], schema.RUN_FILE)))["run"]
    assert record["init"] == os.path.join(path, schema.DENSE_WEIGHTS_FILE)
    assert schema.RANK_RATIOS_KEY in record and record["ranks"]["layers"]
    best = tmp_path / "best.yaml"
    assert main(["export", path, "--pick", "max-accuracy", "--min-accuracy", str(posthoc[schema.VAL_ACCURACY]),
                 "--out", str(best)]) == 0
    exported = yaml.safe_load(best.read_text())
    out = tmp_path / "retrain"
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # a plain `train` on this machine; the trial ran with 1 (its run record says so)
    try:
        assert main(["train", "--config", str(best), "--out", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    metrics = json.loads((out / schema.METRICS_FILE).read_text())
    assert metrics[schema.VAL_ACCURACY] == exported["metrics"][schema.VAL_ACCURACY]
    assert len(epoch_history(path, posthoc["folder"])) == SPACE["epochs"]


def test_a_given_profile_is_copied_not_measured(sweep, tmp_path) -> None:
    """`launch --dense CKPT --profile DIR`: the profile of an earlier sweep (same weights) is used as
    it is; the trials allocate from it and reach their targets."""
    from rank_search.search import LaunchConfig
    from rank_search.search.sweep import launch

    path, space_file = sweep
    out = launch(LaunchConfig(space=space_file, storage=str(tmp_path), name="given", num_samples=3, seed=4,
                              dense=os.path.join(path, schema.DENSE_WEIGHTS_FILE), profile=path))
    assert out.complete and out.counts == {"TERMINATED": 3}
    for name in (schema.PROFILE_FILE, schema.PROFILE_META_FILE):
        with open(os.path.join(path, name), "rb") as a, open(os.path.join(out.path, name), "rb") as b:
            assert a.read() == b.read(), name
    record = yaml.safe_load(open(os.path.join(out.path, schema.DENSE_RECORD_FILE)))
    assert record["source"] == "given" and record["profile"] == f"given: {path}"
    planned = load_experiment(out.path).trials
    planned = planned[planned["config/method"] != "full"]
    assert len(planned) >= 1
    for _, row in planned.iterrows():
        assert abs(row[schema.MACS_COMPRESSION] / row[schema.TARGET_MACS_COMPRESSION] - 1) <= 0.05


@pytest.mark.parametrize("trials, methods, size", [(16, 2, 8), (16, 5, 8), (64, 2, 32), (4, 5, 4), (3, 1, 1)])
def test_warm_start_is_half_the_budget_with_every_method(trials, methods, size) -> None:
    from rank_search.search.warm_start import warm_start_size

    assert warm_start_size(trials, methods) == size


def test_warm_start_points_train_at_the_central_settings() -> None:
    """Every enqueued point fixes each searched train setting at its midpoint (the dense
    reference's settings): a warm start at drawn learning rates is a grid with noise."""
    from search_spaces import space_from_mapping

    from rank_search.search.reference import train_settings
    from rank_search.search.warm_start import warm_start_points

    space = space_from_mapping({**SPACE, "train": {"lr": {"float": [0.01, 0.04], "log": True}, "batch_size": 16}},
                               name="t")
    points = warm_start_points(space, [], 8)
    assert points and all(p["train.lr"] == pytest.approx(0.02) for p in points)
    assert all("train.batch_size" not in p for p in points)  # a fixed setting is no parameter
    assert train_settings(space)["train.lr"] == points[0]["train.lr"]


def test_two_methods_each_meet_four_targets_in_a_16_trial_warm_start() -> None:
    from search_spaces import space_from_mapping

    from rank_search.search.warm_start import warm_start_points

    space = space_from_mapping({**SPACE, "methods": {"posthoc": {}, "factorized": {}},
                                "ranks": {**SPACE["ranks"], "target": {"float": [2.0, 20.0], "log": True}}}, name="t")
    points = warm_start_points(space, [], 16)
    assert len(points) == 8
    for method in ("posthoc", "factorized"):
        targets = sorted(p[schema.TARGET_KEY] for p in points if p["method"] == method)
        assert len(targets) == 4 and targets[0] < 3 and targets[-1] > 10  # low and high ones, not two


def test_by_results_a_head_to_head_first_then_the_method_left_open() -> None:
    """For the refine searcher: every planned method once at the low end of the range (one
    allocation), then the other points at distinct targets over the whole range with no method
    (the sampler chooses it); a warm start that is the whole sweep (a grid) keeps the even share."""
    from search_spaces import space_from_mapping

    from rank_search.search.warm_start import warm_start_points

    space = space_from_mapping({**SPACE, "ranks": {**SPACE["ranks"], "target": {"float": [2.0, 20.0], "log": True}}},
                               name="t")
    points = warm_start_points(space, [], 16, by_results=True)
    assert len(points) == 8 and points[0]["method"] == "full"
    head, rest = points[1:3], points[3:]
    assert [p["method"] for p in head] == ["posthoc", "factorized"]
    # 7 planned points: a log grid of 6 targets over 2-20x, its lowest for the head-to-head
    assert [p[schema.TARGET_KEY] for p in head] == [pytest.approx(2.0)] * 2
    assert {p[schema.ALLOCATION_KEY] for p in head} == {"uniform"}
    assert all("method" not in p for p in rest) and len(rest) == 5
    targets = sorted(p[schema.TARGET_KEY] for p in rest)
    assert targets == pytest.approx([2.0 * 10 ** (k / 5) for k in range(1, 6)])  # the rest of the grid, up to 20x
    assert {p[schema.ALLOCATION_KEY] for p in rest} == {"uniform", "sensitivity"}
    # both ends of the range at the uniform allocation, as in a hand sweep of uniform ratios; the
    # most compressed end asked last, when the most results are in to choose its method
    assert rest[-1][schema.TARGET_KEY] == pytest.approx(20.0) and rest[-1][schema.ALLOCATION_KEY] == "uniform"
    assert all(p["train.lr"] == pytest.approx(math.sqrt(0.05 * 0.2)) for p in points)
    grid = warm_start_points(space, [], 16, 16, by_results=True)
    assert grid == warm_start_points(space, [], 16, 16) and all("method" in p for p in grid)
    # one planned method, or no more points than methods: nothing to share
    single = space_from_mapping({**SPACE, "methods": {"posthoc": {}}}, name="t")
    assert warm_start_points(single, [], 16, by_results=True) == warm_start_points(single, [], 16)
    assert warm_start_points(space, [], 6, by_results=True) == warm_start_points(space, [], 6)
    # fewer than two points per planned method (3 for 2 methods): the share in turn, but the most
    # compressed end left open and asked last, once every method has a point of its own
    turn, even = warm_start_points(space, [], 8, by_results=True), warm_start_points(space, [], 8)
    assert [p["method"] for p in turn[:3]] == ["full", "posthoc", "factorized"] and "method" not in turn[3]
    assert turn[3][schema.TARGET_KEY] == pytest.approx(20.0) == max(p[schema.TARGET_KEY] for p in even[1:])
    assert turn[3][schema.ALLOCATION_KEY] == "uniform"
    assert sorted(p[schema.TARGET_KEY] for p in turn[1:]) == pytest.approx(sorted(p[schema.TARGET_KEY] for p in even[1:]))
    # a per-group space: the head-to-head at the largest rank ratio (the least compressed end)
    ratios = space_from_mapping({**SPACE, "ranks": {"grouping": "uniform", "ratio": {"float": [0.1, 0.5]}}}, name="t")
    points = warm_start_points(ratios, ["a"], 16, by_results=True)
    assert [p[schema.RANK_PREFIX + "a"] for p in points[1:3]] == [pytest.approx(0.5)] * 2 and points[1]["method"] == "posthoc"
    assert sorted(p[schema.RANK_PREFIX + "a"] for p in points[3:]) == pytest.approx([0.1 + 0.08 * k for k in range(5)])
    assert any("method" not in p for p in warm_start_points(space, [], 10, by_results=True))  # 4 points


def test_by_results_in_turn_every_method_keeps_a_point_and_the_most_compressed_end_is_open() -> None:
    """Too few points for two rounds (the ``demo`` space: 5 methods in 8 points): the methods
    take the points in turn, each at least one, except the most compressed end, which is asked
    last with its method open (on ``demo`` the turn gave it to ``elrt``, the weakest there, on
    every seed, while its front is flat enough that this end holds most of its hypervolume)."""
    from search_spaces import get_space, space_from_mapping

    from rank_search.search.warm_start import planned_methods, warm_start_points

    demo = get_space("demo")
    points = warm_start_points(demo, [], 16, by_results=True)
    assert len(points) == 8 and {p["method"] for p in points[:-1]} == set(planned_methods(demo))
    low, high = demo.target_bounds()
    assert "method" not in points[-1] and points[-1][schema.TARGET_KEY] == pytest.approx(high)
    assert points[-1][schema.ALLOCATION_KEY] == "uniform"
    assert max(p[schema.TARGET_KEY] for p in points[:-1]) < high
    # a per-group space: the most compressed end is the smallest rank ratio
    ratios = space_from_mapping({**SPACE, "ranks": {"grouping": "uniform", "ratio": {"float": [0.1, 0.5]}}}, name="t")
    points = warm_start_points(ratios, ["a"], 8, by_results=True)
    assert "method" not in points[-1] and points[-1][schema.RANK_PREFIX + "a"] == pytest.approx(0.1)
    assert all(p[schema.RANK_PREFIX + "a"] > 0.1 for p in points[1:-1])


def test_a_refine_searcher_chooses_the_open_methods_among_the_planned_ones() -> None:
    """The searcher a sweep builds, asked as Tune asks it (no Ray): the head-to-head first, then
    the open points take their target and allocation from the warm start and a planned method
    (never ``full``), mostly the one that won the head-to-head."""
    from search_spaces import SpaceSampler, space_from_mapping

    from rank_search.search import LaunchConfig
    from rank_search.search.front_sampler import SHARE_KEY
    from rank_search.search.searchers import SearchContext
    from rank_search.search.sweep import _searched_target
    from rank_search.search.tune_setup import make_searcher
    from rank_search.search.warm_start import planned_methods, warm_start_points

    space = space_from_mapping({**SPACE, "methods": {"posthoc": {}, "factorized": {}, "full": {}}}, name="t")
    wins = 0
    for seed in range(8):
        cfg = LaunchConfig(space="x", num_samples=16, seed=seed)
        points = warm_start_points(space, [], 16, by_results=True)
        context = SearchContext(cfg, target=_searched_target(space), allocations=tuple(space.allocations),
                                methods=tuple(planned_methods(space)))
        search = make_searcher(context, SpaceSampler(space, []), points=points)
        assert planned_methods(space) == ["posthoc", "factorized"]
        for k, point in enumerate(points):
            config = search.suggest(f"t{k}")
            for key, value in point.items():
                assert config[key] == value, (k, key)
            method = config["method"]
            if "method" not in point:
                assert method in ("posthoc", "factorized")
                wins += method == "posthoc"
            target = config.get(schema.TARGET_KEY, 1.0)
            accuracy = {"full": 0.99, "posthoc": 0.95, "factorized": 0.85}[method] - 0.05 * math.log(target)
            search.on_trial_complete(f"t{k}", {"val_accuracy": accuracy, "macs_compression": target})
        shared = [t for t in search._ot_study.trials if SHARE_KEY in t.system_attrs]
        assert len(shared) == sum("method" not in p for p in points) == 5
    assert wins >= 0.7 * 8 * 5  # half, were the open methods drawn from the prior

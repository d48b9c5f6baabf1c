"""The ``refine`` searcher's sampler (pure Optuna, no Ray)."""
from __future__ import annotations

import math

import numpy as np
import optuna
import pytest

from rank_search.search.refine import FILL_KEY, PARENT_KEY, SHARE_KEY, FillSettings, FrontSampler, ShareSettings
from rank_search.search.refine.gap_fill import fill_child
from rank_search.search.refine.mutation import Mutation
from rank_search.search.refine.mutation import inside as _inside
from rank_search.search.refine.parents import select_parent
from rank_search.search.refine.pareto import contributions, front

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_front_keeps_the_non_dominated_rows():
    v = np.array([[1.0, 5.0], [2.0, 4.0], [1.5, 3.0], [3.0, 1.0], [2.0, 4.0]])
    assert front(v) == [0, 1, 3, 4]  # [1.5, 3] is dominated by [2, 4]; equal rows both stay


def test_contributions_are_exclusive_areas():
    pts = np.array([[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]])
    c = contributions(pts)
    # span 1 on each axis, reference 0.1 below each minimum: the middle point owns 0.5 x 0.5,
    # each end the 0.1-wide strip beyond the reference times its 0.5 step
    assert c == pytest.approx([0.05, 0.25, 0.05])
    assert contributions(pts[:1]) == pytest.approx([1.0])


def test_contributions_from_a_given_reference_point():
    # the report's reference: no compression (log 1 = 0) and the accuracy floor 0.93
    pts = np.array([[math.log(2), 0.97], [math.log(3), 0.96], [math.log(4), 0.95]])
    c = contributions(pts, (0.0, 0.93))
    areas = [math.log(2) * 0.01, math.log(1.5) * 0.01, math.log(4 / 3) * 0.02]
    assert c / c.sum() == pytest.approx(np.array(areas) / sum(areas))
    # one objective given, the other below the front as before
    assert contributions(pts, (0.0, None)) / contributions(pts, (0.0, None)).sum() == pytest.approx(
        np.array([math.log(2) * 0.5, math.log(1.5) * 0.5, math.log(4 / 3) * 0.1]) / (math.log(2) * 0.5 + math.log(1.5) * 0.5 + math.log(4 / 3) * 0.1))


def test_parents_are_weighted_from_the_floor_and_from_no_compression():
    """The least compressed parent owns the strip from 1x, as in the report's log hypervolume: on
    resnet20 that strip (1x-2x) is the largest part of a sweep's hypervolume, and a reference a
    tenth of the front's span below it gave that parent a sliver."""
    def picks(sampler) -> float:
        study = optuna.create_study(directions=["maximize", "maximize"], sampler=sampler)
        for target, acc in ((2.0, 0.97), (3.0, 0.96), (4.0, 0.95)):
            study.add_trial(optuna.trial.create_trial(params={"target": target}, values=[acc, target],
                            distributions={"target": optuna.distributions.FloatDistribution(2.0, 20.0, log=True)}))
        done = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
        view = sampler._view(study)
        parents = [select_parent(done, view, sampler._rng, explore=sampler.settings.explore) for _ in range(600)]
        return sum(p is not None and p.params["target"] == 2.0 for p in parents) / 600

    with_ref = FrontSampler(seed=0, explore=0.0, floors={0: 0.93}, log_objectives=(1,))
    assert with_ref._view(optuna.create_study(directions=["maximize", "maximize"])).reference() == [0.93, 0.0]
    assert with_ref._view(optuna.create_study(directions=["minimize", "maximize"])).reference() == [-0.93, 0.0]
    areas = np.array([math.log(2) * 0.01, math.log(1.5) * 0.01, math.log(4 / 3) * 0.02])
    expected = 0.5 / 3 + 0.5 * areas[0] / areas.sum()  # half uniform, half by contribution: 0.37
    new = picks(with_ref)
    assert new == pytest.approx(expected, abs=0.05)
    # no floor, no log objective: the reference a tenth of the span below the front, where the
    # 2x parent owns 0.05 of 0.35 (normalised areas): 1/6 + 0.5 x 1/7 = 0.24
    old = picks(FrontSampler(seed=0, explore=0.0))
    assert old == pytest.approx(1 / 6 + 0.5 / 7, abs=0.05) and new > old + 0.1


def _objective(trial):
    method = trial.suggest_categorical("method", ["a", "b", "c"])
    if method == "a":
        trial.suggest_float("a.k", 0.0, 1.0)
    lr = trial.suggest_float("lr", 0.01, 0.05, log=True)
    epochs = trial.suggest_int("epochs", 1, 3)
    target = trial.suggest_float("target", 1.5, 10.0, log=True)
    quality = {"a": 0.97, "b": 0.95, "c": 0.90}[method] - 0.01 * math.log(target) - 0.02 * abs(math.log(lr / 0.02))
    return quality + 0.001 * epochs, target


def _study(seed: int, n: int = 20, warm: int = 4) -> optuna.Study:
    study = optuna.create_study(directions=["maximize", "maximize"], sampler=FrontSampler(seed=seed))
    for m, t in [("a", 1.5), ("b", 3.0), ("c", 6.0), ("a", 10.0)][:warm]:
        study.enqueue_trial({"method": m, "target": t})
    study.optimize(_objective, n_trials=n)
    return study


def test_warm_start_trials_sample_the_rest_from_the_priors_and_children_have_front_parents():
    study = _study(0)
    trials = study.trials
    assert [t.system_attrs[PARENT_KEY] for t in trials[:4]] == [-1] * 4
    assert [(t.params["method"], t.params["target"]) for t in trials[:4]] == [("a", 1.5), ("b", 3.0), ("c", 6.0), ("a", 10.0)]
    children = [t for t in trials[4:] if t.system_attrs[PARENT_KEY] >= 0]
    assert len(children) >= 12  # explore is 0.1: most trials refine a parent
    for child in children:
        before = [t for t in trials if t.number < child.number]
        parent = trials[child.system_attrs[PARENT_KEY]]
        values = np.array([t.values for t in before])
        assert before.index(parent) in front(values)  # the parent was on the front when the child was asked
        for name, dist in child.distributions.items():
            assert _inside(child.params[name], dist)


def test_children_stay_near_their_parent():
    study = _study(1, n=40)
    steps = []
    for child in study.trials[4:]:
        p = child.system_attrs[PARENT_KEY]
        if p >= 0 and child.params["method"] == study.trials[p].params["method"]:
            steps.append(abs(math.log(child.params["target"] / study.trials[p].params["target"])))
    # Gaussian steps of 0.15 x the log range (1.9): median |step| about 0.19, far below a random draw's 0.6
    assert steps and float(np.median(steps)) < 0.4


def test_a_step_past_a_bound_comes_back_inside_instead_of_stopping_on_it():
    mutation, rng = Mutation(step=0.15, switch=0.2), np.random.RandomState(0)
    target = optuna.distributions.FloatDistribution(2.0, 20.0, log=True)
    epochs = optuna.distributions.IntDistribution(1, 9)
    children = [mutation.mutate(2.0, target, rng) for _ in range(400)]
    assert all(2.0 <= c <= 20.0 for c in children)
    # clipped, about half the children of a parent at the bound were the bound itself
    assert sum(c == 2.0 for c in children) < 10
    # reflected: the median child about 0.67 of a step (0.15 x the log range) inside the bound, 2.5x
    assert 2.3 < float(np.median(children)) < 3.2
    assert all(2.0 < c < 20.0 for c in (mutation.mutate(20.0, target, rng) for _ in range(100)))
    ints = [mutation.mutate(9, epochs, rng) for _ in range(400)]
    assert all(1 <= i <= 9 for i in ints) and sum(i == 9 for i in ints) < 0.45 * len(ints)


def test_no_trial_repeats_an_earlier_configuration():
    def small(trial):  # a space so small that unchecked mutation would repeat configurations
        x = trial.suggest_int("x", 0, 3)
        y = trial.suggest_categorical("y", ["p", "q"])
        return float(x), float(y == "p")

    study = optuna.create_study(directions=["maximize", "maximize"], sampler=FrontSampler(seed=0))
    study.optimize(small, n_trials=6)
    configs = [tuple(sorted(t.params.items())) for t in study.trials]
    assert len(set(configs)) == len(configs)


def test_the_same_seed_gives_the_same_search():
    a, b = _study(3), _study(3)
    assert [t.params for t in a.trials] == [t.params for t in b.trials]
    assert [t.params for t in a.trials] != [t.params for t in _study(4).trials]


def test_three_objectives_and_one_objective_run():
    def three(trial):
        x = trial.suggest_float("x", 0.0, 1.0)
        return x, 1 - x, x * (1 - x)

    study = optuna.create_study(directions=["maximize", "minimize", "maximize"], sampler=FrontSampler(seed=0))
    study.optimize(three, n_trials=10)
    assert len(study.trials) == 10 and any(t.system_attrs[PARENT_KEY] >= 0 for t in study.trials)
    single = optuna.create_study(direction="minimize", sampler=FrontSampler(seed=0))
    single.optimize(lambda t: (t.suggest_float("x", -1.0, 1.0)) ** 2, n_trials=30)
    assert single.best_value < 0.01  # local refinement of the best trial converges on the minimum


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="step > 0"):
        FrontSampler(step=0.0)


def test_parents_stay_above_the_floor_when_a_trial_reaches_it():
    """With a floor on the first objective, every parent is a trial at or above it (once one
    exists); the front's low-accuracy extreme, which would otherwise be drawn, never is."""
    def objective(trial):
        target = trial.suggest_float("target", 1.5, 20.0, log=True)
        return (0.98 if target <= 4 else 0.98 - 0.1 * math.log(target)), target  # < 0.93 above 4x

    for floors in ({0: 0.93}, {}):
        sampler = FrontSampler(seed=1, floors=floors, log_objectives=(1,), explore=0.0)
        study = optuna.create_study(directions=["maximize", "maximize"], sampler=sampler)
        for t in (2.0, 20.0):
            study.enqueue_trial({"target": t})
        study.optimize(objective, n_trials=16)
        parents = [study.trials[t.system_attrs[PARENT_KEY]] for t in study.trials[2:]]
        low = [p for p in parents if p.values[0] < 0.93]
        if floors:
            assert parents and not low
        else:
            assert low  # without the floor the 20x extreme (far below it) is refined too


def test_below_every_floor_the_whole_front_is_used_and_log_objectives_need_positive_values():
    sampler = FrontSampler(seed=0, floors={0: 0.99}, log_objectives=(1,), explore=0.0)
    study = optuna.create_study(directions=["maximize", "maximize"], sampler=sampler)
    study.enqueue_trial({"target": 2.0})
    study.optimize(lambda t: (0.5, t.suggest_float("target", 1.5, 10.0, log=True)), n_trials=4)
    assert all(t.system_attrs[PARENT_KEY] >= 0 for t in study.trials[1:])  # no trial meets 0.99: parents anyway


def test_a_sampler_pickled_before_floors_existed_still_samples():
    import pickle

    old = FrontSampler.__new__(FrontSampler)  # an older version's state: settings as attributes, some missing
    old.__dict__.update(_rng=np.random.RandomState(0), _random=optuna.samplers.RandomSampler(seed=0), _children={},
                        step=0.15, switch=0.2, explore=0.1)
    sampler = pickle.loads(pickle.dumps(old))
    study = optuna.create_study(directions=["maximize", "maximize"], sampler=sampler)
    study.enqueue_trial({"target": 2.0})  # an open categorical in an enqueued trial: the prior, no share
    study.optimize(lambda t: (0.9 if t.suggest_categorical("m", ["a", "b"]) == "a" else 0.8,
                              t.suggest_float("target", 1.5, 10.0, log=True)), n_trials=4)
    assert len(study.trials) == 4


def test_a_sweep_gives_refine_the_dense_floor_and_its_ratio_objectives_in_log():
    from search_spaces import SpaceSampler, space_from_mapping

    from rank_search.search import LaunchConfig
    from rank_search.search.searchers import SearchContext, refine_settings
    from rank_search.search.tune_setup import make_searcher

    cfg = LaunchConfig(space="x", objectives=(("macs_compression", "max"), ("val_accuracy", "max"),
                                              ("latency_ms", "min")))
    s = refine_settings(SearchContext(cfg, 0.97))
    assert (s.floors, s.log_objectives, s.fill, s.share) == ({1: pytest.approx(0.92)}, (0,), None, None)
    s = refine_settings(SearchContext(cfg, None))
    assert (s.floors, s.log_objectives, s.fill, s.share) == ({}, (0,), None, None)
    # a searched target with MACs compression maximised: fills at a 16-trial grid's spacing, in log
    assert refine_settings(SearchContext(LaunchConfig(space="x", num_samples=16), None, (2.0, 20.0, True))).fill is None
    cfg16 = LaunchConfig(space="x", num_samples=16, refine_extras=("gap-fill",))  # opt-in
    fill = refine_settings(SearchContext(cfg16, None, (2.0, 20.0, True))).fill
    assert (fill.param, fill.objective, fill.spacing) == ("budget.target", 1, pytest.approx(math.log(10) / 15))
    assert refine_settings(SearchContext(cfg16, None, (2.0, 20.0, False))).fill.spacing == pytest.approx(18 / 15)
    assert refine_settings(SearchContext(cfg16, None, None)).fill is None
    # fills take the uniform allocation where the space searches it beside the profile's
    both = refine_settings(SearchContext(cfg16, None, (2.0, 20.0, True), ("sensitivity", "uniform")))
    assert both.fill.fixed == {"budget.allocation": "uniform"}
    assert refine_settings(SearchContext(cfg16, None, (2.0, 20.0, True), ("sensitivity",))).fill.fixed == {}
    latency = LaunchConfig(space="x", num_samples=16, objectives=(("val_accuracy", "max"), ("latency_speedup", "max")),
                           refine_extras=("gap-fill",))
    assert refine_settings(SearchContext(latency, None, (2.0, 20.0, True))).fill is None  # the target sets MACs, not speed
    space = space_from_mapping({"model": "lenet5", "dataset": "synthetic", "epochs": 1, "methods": {"posthoc": {}},
                                "ranks": {"grouping": "uniform", "ratio": {"float": [0.1, 0.5]}}}, name="t")
    search = make_searcher(SearchContext(LaunchConfig(space="x"), dense_accuracy=0.9), SpaceSampler(space, ["a"]))
    sampler = search._ot_study.sampler  # the study OptunaSearch built (see check_directions)
    assert isinstance(sampler, FrontSampler)
    assert sampler.settings.floors == {0: pytest.approx(0.85)} and sampler.settings.log_objectives == (1,)


def _cliff(trial):
    """Accuracy at the floor up to 4x, then falling: the refine parents all sit below 4x."""
    target = trial.suggest_float("target", 2.0, 20.0, log=True)
    lr = trial.suggest_float("lr", 0.01, 0.1, log=True)
    acc = 0.97 - 0.005 * math.log(target) if target <= 4 else 0.9 - 0.3 * math.log(target / 4)
    return acc - 0.01 * abs(math.log(lr / 0.03)), target


def _cliff_study(fill, n: int = 16) -> optuna.Study:
    sampler = FrontSampler(seed=0, floors={0: 0.92}, log_objectives=(1,), fill=fill)
    study = optuna.create_study(directions=["maximize", "maximize"], sampler=sampler)
    for t in (2.0, 5.4, 7.5, 20.0):  # the warm start resnet20's posthoc got (benchmarks/RESULTS.md)
        study.enqueue_trial({"target": t})
    study.optimize(_cliff, n_trials=n)
    return study


def test_fills_alternate_with_refinement_and_cover_the_gaps_the_floor_leaves():
    spacing = math.log(10) / 15  # a 16-point uniform grid over 2-20x
    study = _cliff_study(FillSettings("target", 1, spacing))
    searched = study.trials[4:]
    fills = [t for t in searched if t.system_attrs.get(FILL_KEY)]
    # every other searched trial, the first one included, while a gap is wider than the spacing
    assert [bool(t.system_attrs.get(FILL_KEY)) for t in searched[:6]] == [True, False] * 3
    first = fills[0]
    # the widest gap (2 -> 5.4x, just wider than 7.5 -> 20x) gets its middle, copied from the neighbour below
    assert first.params["target"] == pytest.approx(math.sqrt(2.0 * 5.4), rel=1e-6)
    assert study.trials[first.system_attrs[PARENT_KEY]].params["target"] == 2.0
    assert first.params["lr"] == study.trials[first.system_attrs[PARENT_KEY]].params["lr"]
    assert len({round(t.params["target"], 6) for t in fills}) == len(fills)  # no gap asked twice
    tried = sorted(math.log(t.params["target"]) for t in study.trials)
    assert max(b - a for a, b in zip(tried, tried[1:])) < 2.5 * spacing
    # without fills every searched trial refines a parent within the floor: a stretch of 8-20x
    # wider than 2.5 grid steps stays untried
    plain = sorted(math.log(t.params["target"]) for t in _cliff_study(None).trials)
    assert max(b - a for a, b in zip(plain, plain[1:])) > 2.5 * spacing
    assert sum(8 <= t.params["target"] <= 16 for t in study.trials) >= 2


def test_a_fill_counts_running_trials_and_stops_at_the_spacing():
    sampler = FrontSampler(seed=0, floors={0: 0.92}, log_objectives=(1,), fill=FillSettings("target", 1, 0.3))
    study = optuna.create_study(directions=["maximize", "maximize"], sampler=sampler)
    for t in (2.0, 20.0):
        study.enqueue_trial({"target": t})
    study.optimize(_cliff, n_trials=2)
    running = study.ask()  # a fill, not told yet: its target covers the middle while it runs
    assert study._storage.get_trial(running._trial_id).system_attrs[FILL_KEY]
    running.suggest_float("target", 2.0, 20.0, log=True)
    running.suggest_float("lr", 0.01, 0.1, log=True)
    assert running.params["target"] == pytest.approx(math.sqrt(40.0))
    _, child = fill_child(study.get_trials(deepcopy=False), sampler._view(study), sampler.settings.fill)
    assert abs(math.log(child["target"] / math.sqrt(40.0))) > 0.5  # a new gap, beside the running one
    # once no gap is wider than the spacing there is nothing to fill: the turn goes to refinement
    wide = FrontSampler(seed=0, fill=FillSettings("target", 1, 10.0))
    study = optuna.create_study(directions=["maximize", "maximize"], sampler=wide)
    study.optimize(_cliff, n_trials=6)
    assert not any(t.system_attrs.get(FILL_KEY) for t in study.trials)


def test_bad_fill_settings_are_refused():
    with pytest.raises(ValueError, match="fill must be"):
        FillSettings("target", 1, 0.0)


def test_a_budget_driven_sweep_gives_refine_its_target_range_to_fill():
    from search_spaces import SpaceSampler, space_from_mapping

    from rank_search.search import LaunchConfig
    from rank_search.search.sweep import _searched_target
    from rank_search.search.searchers import SearchContext
    from rank_search.search.tune_setup import make_searcher

    base = {"model": "lenet5", "dataset": "synthetic", "epochs": 1, "methods": {"posthoc": {}}}
    space = space_from_mapping({**base, "ranks": {"allocation": "sensitivity", "target": {"float": [1.5, 6.0], "log": True}}},
                               name="t")
    assert _searched_target(space) == (1.5, 6.0, True)
    context = SearchContext(LaunchConfig(space="x", num_samples=9, refine_extras=("gap-fill",)),
                            target=_searched_target(space),
                            allocations=tuple(space.allocations))
    fill = make_searcher(context, SpaceSampler(space, []))._ot_study.sampler.settings.fill
    assert (fill.param, fill.objective, fill.spacing) == ("budget.target", 1, pytest.approx(math.log(4) / 8))
    assert fill.fixed == {"budget.allocation": "uniform"}  # the default: both searched
    fixed = space_from_mapping({**base, "ranks": {"allocation": "sensitivity", "target": 3.0}}, name="t")
    uniform = space_from_mapping({**base, "ranks": {"grouping": "uniform", "ratio": {"float": [0.1, 0.5]}}}, name="t")
    assert _searched_target(fixed) is None and _searched_target(uniform) is None


def test_fill_children_take_the_fixed_values_and_keep_the_rest_of_their_parent():
    def objective(trial):
        target = trial.suggest_float("target", 2.0, 20.0, log=True)
        allocation = trial.suggest_categorical("allocation", ["sensitivity", "uniform"])
        return 0.97 - 0.1 * math.log(target) - (0.01 if allocation == "uniform" else 0.0), target

    sampler = FrontSampler(seed=0, fill=FillSettings("target", 1, 0.2, fixed={"allocation": "uniform", "absent": 1}))
    study = optuna.create_study(directions=["maximize", "maximize"], sampler=sampler)
    for t in (2.0, 20.0):
        study.enqueue_trial({"target": t, "allocation": "sensitivity"})
    study.optimize(objective, n_trials=8)
    fills = [t for t in study.trials if t.system_attrs.get(FILL_KEY)]
    assert len(fills) >= 2
    assert all(t.params["allocation"] == "uniform" and "absent" not in t.params for t in fills)


def _share_study(seed: int, share=("method", ("a", "b")), open_points: int = 8) -> optuna.Study:
    """Method ``a`` 5 pt more accurate than ``b`` at every target; a head-to-head of both at 4x,
    then ``open_points`` enqueued points that leave the method open (the warm start's second round)."""
    def objective(trial):
        method = trial.suggest_categorical("method", ["a", "b", "c"])
        target = trial.suggest_float("target", 2.0, 20.0, log=True)
        return {"a": 0.97, "b": 0.92, "c": 0.99}[method] - 0.1 * math.log(target), target

    study = optuna.create_study(directions=["maximize", "maximize"],
                                sampler=FrontSampler(seed=seed, log_objectives=(1,), share=share and ShareSettings(*share)))
    for m in ("a", "b"):
        study.enqueue_trial({"method": m, "target": 4.0})
    for k in range(open_points):
        study.enqueue_trial({"target": 2.0 * 10 ** (k / max(open_points - 1, 1))})
    study.optimize(objective, n_trials=2 + open_points)
    return study


def test_an_open_method_goes_to_the_methods_by_their_results():
    """The warm start's second round: an enqueued point without a method gets one of the shared
    methods (never ``c``, which the sampler was not given), mostly the one whose trials are on
    the front; the choice is recorded."""

    chosen = []
    for seed in range(5):
        study = _share_study(seed)
        assert [t.params["method"] for t in study.trials[:2]] == ["a", "b"]
        assert all(SHARE_KEY not in t.system_attrs for t in study.trials[:2])  # fixed: not chosen
        for t in study.trials[2:]:
            assert t.system_attrs[SHARE_KEY] == t.params["method"] and t.system_attrs[PARENT_KEY] == -1
            chosen.append(t.params["method"])
    assert set(chosen) <= {"a", "b"}
    # b's trial is dominated by a's from the head-to-head on: Beta(1, 2) against Beta(2 + ..., 1)
    assert chosen.count("a") >= 0.8 * len(chosen)
    # without a share the open method is drawn from the prior: c, the best, turns up too
    plain = [t.params["method"] for s in range(5) for t in _share_study(s, share=None).trials[2:]]
    assert "c" in plain and plain.count("a") < 0.6 * len(plain)


def test_a_method_without_finished_trials_still_gets_open_points():
    """Before anything finished every shared method has the same chance (Beta(1, 1) each)."""
    picks = []
    for seed in range(20):
        sampler = FrontSampler(seed=seed, share=ShareSettings("method", ("a", "b")))
        study = optuna.create_study(directions=["maximize", "maximize"], sampler=sampler)
        study.enqueue_trial({"target": 3.0})
        trial = study.ask()
        picks.append(trial.suggest_categorical("method", ["a", "b"]))
    assert 5 <= picks.count("a") <= 15


def test_the_last_enqueued_open_point_takes_the_leading_method():
    """The warm start's most compressed end is the last enqueued trial: no later enqueued point
    learns from its choice, so it takes the method with the best record (posterior mean), where
    an earlier open point draws. Here ``a``'s trial dominates ``b``'s: Beta(2, 1) against
    Beta(1, 2), so a draw gives ``b`` one time in six."""
    def objective(trial):
        method = trial.suggest_categorical("method", ["a", "b"])
        target = trial.suggest_float("target", 2.0, 20.0, log=True)
        return {"a": 0.97, "b": 0.92}[method] - 0.01 * math.log(target), target

    def open_choice(seed: int, targets: tuple[float, ...]) -> str:
        study = optuna.create_study(directions=["maximize", "maximize"],
                                    sampler=FrontSampler(seed=seed, log_objectives=(1,), share=ShareSettings("method", ("a", "b"))))
        for point in ({"method": "a", "target": 4.0}, {"method": "b", "target": 4.0}, *({"target": t} for t in targets)):
            study.enqueue_trial(point)
        study.optimize(objective, n_trials=3)
        return study.trials[2].params["method"]

    # the first open point, asked while another enqueued point still waits: a draw, b sometimes
    assert "b" in [open_choice(seed, (8.0, 20.0)) for seed in range(60)]
    # the same record, the open point the last one enqueued: always a (draws: b ~10 times in 60)
    assert {open_choice(seed, (20.0,)) for seed in range(60)} == {"a"}


def test_the_last_open_point_takes_the_method_nearest_the_top_of_the_usable_front():
    """With a fill objective (the target compression) the last enqueued open point takes the method
    of the most compressed trial on the front of the trials above the floor, whatever the methods'
    dominance counts say: here ``a`` has the better record (its 2x trial dominates ``b``'s), but
    ``b`` holds the usable front at 8x; ``a``'s 12x trial is on the front but below the floor."""

    dists = {"method": optuna.distributions.CategoricalDistribution(["a", "b"]),
             "target": optuna.distributions.FloatDistribution(2.0, 20.0, log=True)}
    done = (("a", 2.0, 0.97), ("b", 2.0, 0.96), ("a", 3.0, 0.95), ("b", 8.0, 0.93), ("a", 12.0, 0.50))

    def choice(floor: float | None, done=done) -> str:
        sampler = FrontSampler(seed=0, log_objectives=(1,), fill=FillSettings("target", 1, 0.3), share=ShareSettings("method", ("a", "b")),
                               floors=None if floor is None else {0: floor})
        study = optuna.create_study(directions=["maximize", "maximize"], sampler=sampler)
        for m, target, acc in done:
            study.add_trial(optuna.trial.create_trial(params={"method": m, "target": target}, values=[acc, target],
                                                      distributions=dists))
        study.enqueue_trial({"target": 20.0})
        trial = study.ask()
        method = trial.suggest_categorical("method", ["a", "b"])
        assert study._storage.get_trial(trial._trial_id).system_attrs[SHARE_KEY] == method
        return method

    assert choice(0.90) == "b"
    assert choice(0.94) == "a"  # b's 8x trial below the floor: a's 3x trial leads the usable front
    assert choice(0.99) == "a"  # nothing reaches the floor: the best record (posterior mean)
    # no floors (an objective pair without validation accuracy): nothing says which trial is usable,
    # and the front's most compressed trial (b's 12x) is its least accurate: the best record decides
    assert choice(None, (("a", 2.0, 0.97), ("b", 2.0, 0.96), ("b", 12.0, 0.50))) == "a"


def test_bad_share_settings_are_refused():
    with pytest.raises(ValueError, match="share must be"):
        ShareSettings("method", ())


def test_a_fill_does_not_repeat_a_trial_below_the_front():
    """A warm-start trial that landed below the front leaves its gap open; a fill copied from the
    same configuration at that target would run it again, so the next widest gap is filled."""
    def objective(trial):
        target = trial.suggest_float("target", 2.0, 20.0, log=True)
        dip = abs(math.log(target / 10.0)) < 0.05  # this configuration fails at 10x
        return (0.1 if dip else 0.95 - 0.1 * math.log(target)), target

    sampler = FrontSampler(seed=0, log_objectives=(1,), fill=FillSettings("target", 1, 0.3))
    study = optuna.create_study(directions=["maximize", "maximize"], sampler=sampler)
    for t in (2.0, 5.0, 20.0, 10.0):
        study.enqueue_trial({"target": t})
    study.optimize(objective, n_trials=5)
    fill = study.trials[4]
    assert fill.system_attrs[FILL_KEY]
    # the widest gap on the front is 5 -> 20x (its middle: the failed 10x trial again); next: 2 -> 5x
    assert fill.params["target"] == pytest.approx(math.sqrt(10.0), rel=1e-6)


def test_a_refinement_rarely_switches_to_a_method_whose_trials_lose():
    """A mutation that switches the shared parameter keeps the switch only when the new method's
    Thompson draw beats the parent's: ``b``'s trials are dominated by ``a``'s, so children of
    ``a`` parents go to ``b`` far less often than the plain switch (probability 0.2) sends them."""
    def objective(trial):
        method = trial.suggest_categorical("method", ["a", "b"])
        target = trial.suggest_float("target", 2.0, 20.0, log=True)
        return {"a": 0.97, "b": 0.60}[method] - 0.1 * math.log(target), target

    def switches(share):
        moved = total = 0
        for seed in range(4):
            study = optuna.create_study(directions=["maximize", "maximize"],
                                        sampler=FrontSampler(seed=seed, log_objectives=(1,), explore=0.0,
                                                             share=share and ShareSettings(*share)))
            for m, t in [("a", 2.0), ("b", 2.0), ("a", 20.0), ("b", 20.0)]:
                study.enqueue_trial({"method": m, "target": t})
            study.optimize(objective, n_trials=40)
            for t in study.trials[4:]:
                parent = t.system_attrs[PARENT_KEY]
                if parent >= 0 and study.trials[parent].params["method"] == "a":
                    total += 1
                    moved += t.params["method"] == "b"
        return moved, total

    moved, total = switches(("method", ("a", "b")))
    plain, plain_total = switches(None)
    assert total > 100 and plain_total > 100
    assert plain >= 0.1 * plain_total  # the plain switch: about one child in five
    assert moved <= 0.02 * total

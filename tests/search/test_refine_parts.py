"""Each part of the ``refine`` sampler alone, on hand-made trials (pure Optuna, no Ray)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import create_trial

from rank_search.search.refine import FILL_KEY, PARENT_KEY, FillSettings, RefineSettings, ShareSettings
from rank_search.search.refine.gap_fill import fill_child, fill_turn
from rank_search.search.refine.method_share import MethodShare
from rank_search.search.refine.mutation import RETRIES, Mutation, prior, reflect, snap
from rank_search.search.refine.parents import select_parent
from rank_search.search.refine.pareto import ObjectiveView

DISTS = {"method": CategoricalDistribution(["a", "b"]), "target": FloatDistribution(2.0, 20.0, log=True)}
MAX2 = ObjectiveView((1.0, 1.0), log_objectives=(1,))


def _done(*rows, number: int = 0, **attrs):
    """Finished trials from (method, target, accuracy) rows; values are (accuracy, target)."""
    out = []
    for k, (m, target, acc) in enumerate(rows):
        t = create_trial(params={"method": m, "target": target}, distributions=DISTS, values=[acc, target],
                         system_attrs=dict(attrs))
        t.number = number + k
        out.append(t)
    return out


@pytest.mark.parametrize("kwargs, match", [
    (dict(step=0.0), "step > 0"), (dict(switch=1.5), "switch, explore in"), (dict(explore=-0.1), "switch, explore in"),
])
def test_bad_settings_name_the_rule_and_the_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RefineSettings(**kwargs)
    with pytest.raises(ValueError, match=r"fill must be given a spacing > 0, got -1"):
        FillSettings("target", 1, -1)
    with pytest.raises(ValueError, match=r"share must be given at least one choice, got \(\)"):
        ShareSettings("method", [])


def test_settings_are_frozen_and_normalised():
    s = RefineSettings(floors={"0": 1}, log_objectives=[1], share=ShareSettings("method", ["a", "b"]))
    assert s.floors == {0: 1.0} and s.log_objectives == (1,) and s.share.choices == ("a", "b")
    with pytest.raises(AttributeError):
        s.step = 0.3  # type: ignore[misc]


def test_the_view_orients_floors_and_references():
    view = ObjectiveView((1.0, -1.0), log_objectives=(0,), floors={1: 5.0})
    assert view.oriented(np.array([[math.e, 2.0]])) == pytest.approx(np.array([[1.0, -2.0]]))
    assert view.reference() == [0.0, -5.0]  # no compression; the floor, minimised
    trials = [create_trial(params={}, distributions={}, values=v) for v in ([2.0, 4.0], [3.0, 6.0], [4.0, math.inf])]
    kept, raw = view.floored(trials)
    assert kept == trials[:1] and raw.tolist() == [[2.0, 4.0]]  # 6 is above the floor (minimised); inf dropped
    assert view.floored(trials[1:2])[0] == trials[1:2]  # none reaches it: all kept
    assert view.floored(trials[1:2], strict=True)[0] == []


def test_a_parent_is_on_the_front_and_explore_draws_from_the_priors():
    done = _done(("a", 2.0, 0.97), ("a", 4.0, 0.90), ("b", 4.0, 0.95), ("b", 8.0, 0.80))
    rng = np.random.RandomState(0)
    picks = {select_parent(done, MAX2, rng, explore=0.0).number for _ in range(200)}
    assert picks == {0, 2, 3}  # trial 1 is dominated by trial 2
    assert select_parent([], MAX2, rng, explore=0.0) is None
    assert select_parent(done, MAX2, rng, explore=1.0) is None
    floored = ObjectiveView((1.0, 1.0), log_objectives=(1,), floors={0: 0.9})
    assert {select_parent(done, floored, rng, explore=0.0).number for _ in range(100)} == {0, 2}


def test_mutation_steps_reflect_snap_and_retry():
    assert reflect(11.0, 0.0, 10.0) == 9.0 and reflect(-3.0, 0.0, 10.0) == 3.0 and reflect(23.0, 0.0, 10.0) == 3.0
    assert snap(2.6, IntDistribution(1, 9)) == 3 and snap(0.26, FloatDistribution(0.0, 1.0, step=0.1)) == pytest.approx(0.3)
    rng = np.random.RandomState(0)
    assert all(prior(CategoricalDistribution(["p"]), rng) == "p" for _ in range(3))
    with pytest.raises(TypeError, match="unsupported distribution"):
        prior(object(), rng)  # type: ignore[arg-type]
    (parent,) = _done(("a", 4.0, 0.9))
    still = Mutation(step=1e-9, switch=0.0)
    assert still(parent, [], rng) == {"method": "a", "target": pytest.approx(4.0)}
    # every mutation and every prior draw repeats the parent (one choice, a point range): kept after the retries
    tiny = create_trial(params={"m": "a", "x": 1}, distributions={"m": CategoricalDistribution(["a"]),
                                                                  "x": IntDistribution(1, 1)}, values=[0.0, 0.0])
    assert still(tiny, [{"m": "a", "x": 1}], rng) == {"m": "a", "x": 1} and RETRIES == 10
    # the gate sees every mutated child
    gated = Mutation(step=0.1, switch=1.0)(parent, [], rng, gate=lambda p, c: {**c, "method": p.params["method"]})
    assert gated["method"] == "a"


def test_fills_take_turns_with_refinements():
    def searched(fill: bool):
        return create_trial(params={}, distributions={}, values=[0.0], system_attrs={PARENT_KEY: 0, FILL_KEY: fill})

    assert fill_turn([]) and not fill_turn([searched(True)]) and fill_turn([searched(True), searched(False)])
    enqueued = create_trial(params={}, distributions={}, values=[0.0], system_attrs={PARENT_KEY: -1, "fixed_params": {}})
    assert fill_turn([enqueued])  # an enqueued trial is not a searched one


def test_a_fill_goes_to_the_widest_gap_from_its_lower_neighbour():
    done = _done(("a", 2.0, 0.97), ("b", 3.0, 0.96), ("a", 20.0, 0.50))
    parent, child = fill_child(done, MAX2, FillSettings("target", 1, 0.3, fixed={"method": "b", "absent": 1}))
    assert parent.number == 1  # 3 -> 20x is the widest gap; 3x is below its middle
    assert child == {"method": "b", "target": pytest.approx(math.sqrt(60.0))}
    assert fill_child(done, MAX2, FillSettings("target", 1, 5.0)) is None  # no gap wider than the spacing
    assert fill_child([], MAX2, FillSettings("target", 1, 0.3)) is None


def test_the_share_counts_wins_and_losses_against_other_methods_only():
    done = _done(("a", 2.0, 0.97), ("a", 2.0, 0.90), ("b", 2.0, 0.95))
    share = MethodShare(ShareSettings("method", ("a", "b")))
    # a's 0.97 beats b's 0.95 (one win); b's beats a's 0.90 (b one win); each loses once; a's own pair does not count
    means = share.draws(done, MAX2, np.random.RandomState(0), ["a", "b"], greedy=True)
    assert means == pytest.approx([2 / 4, 2 / 4], abs=1e-3)
    rng = np.random.RandomState(0)
    assert share.draws([], MAX2, rng, ["a", "b"]) != share.draws([], MAX2, rng, ["a", "b"])  # Beta(1, 1) draws
    lopsided = _done(("a", 2.0, 0.97), ("b", 2.0, 0.90))
    assert {share.choose(lopsided, MAX2, rng, ["a", "b"], last=True) for _ in range(20)} == {"a"}
    # the gate keeps a's children on a: b's draw is from Beta(1, 2), a's from Beta(2, 1)
    (parent,) = lopsided[:1]
    kept = [share.gate(lopsided, MAX2, rng, parent, {"method": "b", "target": 2.0})["method"] for _ in range(200)]
    assert 0.05 < kept.count("b") / 200 < 0.35
    assert share.gate(lopsided, MAX2, rng, parent, {"method": "c", "target": 2.0})["method"] == "c"  # not shared


def test_the_top_end_follows_the_usable_front_only_with_a_fill_objective_and_floors():
    done = _done(("a", 2.0, 0.97), ("b", 8.0, 0.93), ("a", 12.0, 0.50))
    floored = ObjectiveView((1.0, 1.0), log_objectives=(1,), floors={0: 0.9})
    share = MethodShare(ShareSettings("method", ("a", "b")), fill_objective=1)
    assert share.leading(done, floored, ["a", "b"]) == "b"
    assert share.leading(done, MAX2, ["a", "b"]) is None  # no floors
    assert MethodShare(ShareSettings("method", ("a", "b"))).leading(done, floored, ["a", "b"]) is None
    assert share.leading(done, ObjectiveView((1.0, 1.0), floors={0: 0.99}), ["a", "b"]) is None


def test_a_sampler_takes_settings_or_their_fields_not_both():
    from rank_search.search.refine import FrontSampler

    assert FrontSampler(seed=0, step=0.3).settings == RefineSettings(step=0.3)
    with pytest.raises(ValueError, match=r"not both \(got \['step'\]\)"):
        FrontSampler(seed=0, settings=RefineSettings(), step=0.3)


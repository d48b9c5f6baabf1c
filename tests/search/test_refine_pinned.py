"""The ``refine`` sampler's samples, pinned: a fixed study history and seed give these next trials.

Recorded from the one-class ``FrontSampler`` before it was split into parts (when parents were
always weighted by hypervolume contribution, now ``weighted_parents=True``); the parts must
draw the same random numbers in the same order. Each row: a trial's parameters, its parent's
number (-1: drawn from the priors), whether it fills a gap, the method ``share`` chose.
"""
from __future__ import annotations

import math

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from rank_search.search.front_sampler import FILL_KEY, PARENT_KEY, SHARE_KEY, FrontSampler
from rank_search.search.refine import FillSettings, RefineSettings, ShareSettings

optuna.logging.set_verbosity(optuna.logging.WARNING)

METHODS = ["a", "b", "c"]
DISTS = {"method": CategoricalDistribution(METHODS), "allocation": CategoricalDistribution(["sensitivity", "uniform"]),
         "target": FloatDistribution(2.0, 20.0, log=True), "lr": FloatDistribution(0.01, 0.1, log=True),
         "a.k": FloatDistribution(0.0, 1.0), "b.k": IntDistribution(1, 8)}
HISTORY = [
    {"method": "a", "allocation": "uniform", "target": 2.0, "lr": 0.03, "a.k": 0.5},
    {"method": "b", "allocation": "uniform", "target": 2.0, "lr": 0.03, "b.k": 4},
    {"method": "c", "allocation": "uniform", "target": 2.0, "lr": 0.03},
    {"method": "a", "allocation": "sensitivity", "target": 6.0, "lr": 0.02, "a.k": 0.2},
    {"method": "b", "allocation": "sensitivity", "target": 9.0, "lr": 0.05, "b.k": 2},
]


def _accuracy(p: dict) -> float:
    acc = {"a": 0.97, "b": 0.95, "c": 0.91}[p["method"]] - 0.04 * math.log(p["target"])
    acc += -0.02 * abs(math.log(p["lr"] / 0.03)) + 0.01 * (p["allocation"] == "sensitivity")
    return round(acc + 0.005 * p.get("a.k", 0) - 0.001 * p.get("b.k", 0), 6)


def _objective(trial: optuna.Trial) -> tuple[float, float]:
    method = trial.suggest_categorical("method", METHODS)
    if method == "a":
        trial.suggest_float("a.k", 0.0, 1.0)
    if method == "b":
        trial.suggest_int("b.k", 1, 8)
    trial.suggest_categorical("allocation", ["sensitivity", "uniform"])
    target = trial.suggest_float("target", 2.0, 20.0, log=True)
    trial.suggest_float("lr", 0.01, 0.1, log=True)
    return _accuracy(trial.params), target


def _run(sampler) -> list[tuple]:
    """Five finished trials, two enqueued points that leave the method open, then 12 trials."""
    study = optuna.create_study(directions=["maximize", "maximize"], sampler=sampler)
    for p in HISTORY:
        study.add_trial(optuna.trial.create_trial(params=p, distributions={k: DISTS[k] for k in p},
                                                  values=[_accuracy(p), p["target"]]))
    study.enqueue_trial({"target": 4.0, "allocation": "sensitivity"})
    study.enqueue_trial({"target": 20.0, "allocation": "uniform"})
    study.optimize(_objective, n_trials=12)
    return [(t.params, t.system_attrs.get(PARENT_KEY), bool(t.system_attrs.get(FILL_KEY)),
             t.system_attrs.get(SHARE_KEY)) for t in study.trials[len(HISTORY):]]


def _full(seed: int) -> FrontSampler:
    """Every part at work: a floor, a log objective, gap fills with a fixed allocation, a method share."""
    return FrontSampler(seed=seed, settings=SETTINGS)


SETTINGS = RefineSettings(floors={0: 0.85}, log_objectives=(1,),
                          fill=FillSettings("target", 1, math.log(10) / 11, fixed={"allocation": "uniform"}),
                          share=ShareSettings("method", ("a", "b", "c")), weighted_parents=True)


FULL_SEED_7 = [
    ({'method': 'a', 'a.k': 0.07630828937395717, 'allocation': 'sensitivity', 'target': 4.0, 'lr': 0.06024469253300578}, -1, False, 'a'),
    ({'method': 'b', 'b.k': 4, 'allocation': 'uniform', 'target': 20.0, 'lr': 0.05290115788277241}, -1, False, 'b'),
    ({'method': 'b', 'b.k': 2, 'allocation': 'uniform', 'target': 13.416407864998739, 'lr': 0.05}, 4, True, None),
    ({'method': 'a', 'a.k': 0.449869967978652, 'allocation': 'uniform', 'target': 2.1220823579288286, 'lr': 0.030741894365440656}, 0, False, None),
    ({'method': 'a', 'a.k': 0.449869967978652, 'allocation': 'uniform', 'target': 2.913473773987903, 'lr': 0.030741894365440656}, 8, True, None),
    ({'method': 'a', 'a.k': 0.3191276786828435, 'allocation': 'sensitivity', 'target': 6.1482333669369105, 'lr': 0.01364464967911616}, 3, False, None),
    ({'method': 'a', 'a.k': 0.07630828937395717, 'allocation': 'uniform', 'target': 4.898979485566356, 'lr': 0.06024469253300578}, 5, True, None),
    ({'method': 'a', 'a.k': 0.14311932852437914, 'allocation': 'sensitivity', 'target': 9.008463170258178, 'lr': 0.010877277630545492}, 3, False, None),
    ({'method': 'b', 'b.k': 2, 'allocation': 'uniform', 'target': 16.380725176254405, 'lr': 0.05}, 7, True, None),
    ({'method': 'a', 'a.k': 0.10454200988649665, 'allocation': 'sensitivity', 'target': 10.838398398364124, 'lr': 0.017286826776175948}, 12, False, None),
    ({'method': 'a', 'a.k': 0.3191276786828435, 'allocation': 'uniform', 'target': 8.163149066198526, 'lr': 0.01364464967911616}, 10, True, None),
    ({'method': 'a', 'a.k': 0.26194030843750105, 'allocation': 'uniform', 'target': 2.4468022453766376, 'lr': 0.05287079108660879}, 9, False, None),
]

PLAIN_SEED_3 = [
    ({'method': 'b', 'b.k': 5, 'allocation': 'sensitivity', 'target': 4.0, 'lr': 0.07815323407349066}, -1, False, None),
    ({'method': 'a', 'a.k': 0.05146720330082988, 'allocation': 'uniform', 'target': 20.0, 'lr': 0.02759369398542879}, -1, False, None),
    ({'method': 'b', 'b.k': 2, 'allocation': 'sensitivity', 'target': 8.177758461278584, 'lr': 0.04423399428014755}, 4, False, None),
    ({'method': 'c', 'allocation': 'uniform', 'target': 7.796376667397397, 'lr': 0.010567734224880415}, -1, False, None),
    ({'method': 'a', 'a.k': 0.04258289822274719, 'allocation': 'uniform', 'target': 17.73905455367652, 'lr': 0.028232845639464745}, 6, False, None),
    ({'method': 'a', 'a.k': 0.22348588569481032, 'allocation': 'sensitivity', 'target': 4.943445720603806, 'lr': 0.037486714966028144}, 3, False, None),
    ({'method': 'a', 'a.k': 0.24288167083724516, 'allocation': 'sensitivity', 'target': 3.9596775499644266, 'lr': 0.02519056206901528}, 3, False, None),
    ({'method': 'c', 'allocation': 'sensitivity', 'target': 11.174318174845563, 'lr': 0.026493495071175505}, 4, False, None),
    ({'method': 'a', 'a.k': 0.2571573791310218, 'allocation': 'uniform', 'target': 15.06393866864579, 'lr': 0.042294398506685524}, 9, False, None),
    ({'method': 'a', 'a.k': 0.28352508177131874, 'allocation': 'sensitivity', 'target': 2.8701046621195747, 'lr': 0.03504685227797859}, -1, False, None),
    ({'method': 'a', 'a.k': 0.06563510698458452, 'allocation': 'uniform', 'target': 4.066109126126476, 'lr': 0.02269970007265058}, 0, False, None),
    ({'method': 'b', 'b.k': 2, 'allocation': 'sensitivity', 'target': 13.124664367899104, 'lr': 0.07796388014078318}, 4, False, None),
]


def _same(got: list[tuple], want: list[tuple]) -> None:
    assert len(got) == len(want)
    for k, ((params, parent, fill, share), (w_params, w_parent, w_fill, w_share)) in enumerate(zip(got, want)):
        assert (parent, fill, share) == (w_parent, w_fill, w_share), k
        assert params.keys() == w_params.keys(), k
        for name, value in w_params.items():
            assert params[name] == (value if isinstance(value, str) else pytest.approx(value, rel=1e-12)), (k, name)


def test_every_part_at_work_gives_the_recorded_samples():
    _same(_run(_full(7)), FULL_SEED_7)


def test_the_plain_settings_give_the_recorded_samples():
    _same(_run(FrontSampler(seed=3, weighted_parents=True)), PLAIN_SEED_3)


def _old_sampler(seed: int, **settings) -> FrontSampler:
    """A sampler with the state the one-class ``FrontSampler`` pickled: settings as attributes,
    ``fill`` and ``share`` as tuples (and, from older versions, some of them missing)."""
    import numpy as np

    old = FrontSampler.__new__(FrontSampler)
    old.__dict__.update(_rng=np.random.RandomState(seed), _random=optuna.samplers.RandomSampler(seed=seed),
                        _children={}, **settings)
    return old


def test_a_pickle_of_the_one_class_sampler_loads_and_gives_the_recorded_samples():
    import pickle

    old = _old_sampler(7, step=0.15, switch=0.2, explore=0.1, floors={0: 0.85}, log_objectives=(1,),
                       fill=("target", 1, math.log(10) / 11), fill_fixed={"allocation": "uniform"},
                       share=("method", ("a", "b", "c")))
    sampler = pickle.loads(pickle.dumps(old))
    assert sampler.settings == SETTINGS and not hasattr(sampler, "fill")
    _same(_run(sampler), FULL_SEED_7)
    # an older one, pickled before floors, log objectives, fills and shares existed
    older = pickle.loads(pickle.dumps(_old_sampler(3, step=0.15, switch=0.2, explore=0.1)))
    assert older.settings == RefineSettings(weighted_parents=True)  # the weighting was on then
    _same(_run(older), PLAIN_SEED_3)


def test_a_pickled_sampler_goes_on_as_the_original_would():
    import pickle

    sampler = _full(7)
    assert pickle.loads(pickle.dumps(sampler)).settings == SETTINGS
    _same(_run(pickle.loads(pickle.dumps(sampler))), FULL_SEED_7)

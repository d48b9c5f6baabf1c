"""The NSGA-II searcher's sampler survives the pickling Ray Tune does (pure Optuna, no Ray)."""
from __future__ import annotations

import pickle

import optuna

from rank_search.search.nsga2 import PicklableNSGAIISampler

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _objective(trial):
    x = trial.suggest_float("x", 0.0, 1.0)
    return x, 1.0 - x * x


def test_the_sampler_pickles_and_keeps_sampling_after_a_round_trip():
    sampler = PicklableNSGAIISampler(seed=0, population_size=4)
    study = optuna.create_study(directions=["maximize", "maximize"], sampler=sampler)
    study.optimize(_objective, n_trials=6)
    copy = pickle.loads(pickle.dumps(sampler))  # optuna 5.1's plain sampler: "cannot pickle '_thread.lock'"
    assert type(copy) is PicklableNSGAIISampler and copy.population_size == 4
    again = optuna.create_study(directions=["maximize", "maximize"], sampler=copy)
    for t in study.trials:
        again.add_trial(t)
    again.optimize(_objective, n_trials=6)  # its generation cache (and lock) work after unpickling
    assert len(again.trials) == 12 and all(t.state == optuna.trial.TrialState.COMPLETE for t in again.trials)
    # a second round trip keeps the same state (the locks remade each time)
    assert pickle.loads(pickle.dumps(copy)).__dict__.keys() == copy.__dict__.keys()

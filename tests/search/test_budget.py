"""launch --budget-hours: trial-hours read from the experiment folder, the searcher that stops
asking for trials once they are spent, the settings, and a real sweep ended by its budget."""
from __future__ import annotations

import json

import pytest
import yaml

from rank_search import schema
from rank_search.errors import RankSearchError
from rank_search.search import LaunchConfig
from rank_search.search.budget import BudgetSearcher, planned_trials, spent_seconds


def _experiment(tmp_path, times: dict[str, list[float]], dense: dict | None = None):
    exp = tmp_path / "exp"
    exp.mkdir()
    if dense is not None:
        (exp / schema.DENSE_RECORD_FILE).write_text(yaml.safe_dump(dense))
    for tid, totals in times.items():
        folder = exp / f"trial_{tid}"
        folder.mkdir()
        (folder / "result.json").write_text("".join(json.dumps({"time_total_s": t}) + "\n" for t in totals))
    return exp


def test_spent_time_is_every_trial_and_the_references(tmp_path) -> None:
    dense = {"seconds": 30.0, "seconds_total": 100.0, "profile_seconds": 40.0, "profile_task_seconds": 70.0}
    exp = _experiment(tmp_path, {"a": [5.0, 11.0], "b": [4.0], "c": []}, dense)
    (exp / "trial_b" / "result.json").write_text('{"time_total_s": 4.0}\n{"time_total_s": 9.')  # a line being written
    # references: 100 s wall, of which the profile's 40 s ran as 70 s in parallel parts; trials: 11 + 4
    assert spent_seconds(str(exp)) == pytest.approx(130.0 + 11.0 + 4.0)
    assert spent_seconds(str(tmp_path / "none")) == 0.0


def test_a_budget_plans_the_warm_start_from_the_dense_reference(tmp_path) -> None:
    exp = _experiment(tmp_path, {}, {"seconds": 30.0, "seconds_total": 60.0})
    assert planned_trials(0.5, str(exp), 1000) == (1800 - 60) // 30
    assert planned_trials(0.5, str(exp), 16) == 16  # never above the trial cap
    assert planned_trials(0.001, str(exp), 16) == 1
    assert planned_trials(1.0, str(tmp_path), 16) == 16  # no record: the cap


class _Inner:
    metric, mode = ["val_accuracy", "macs_compression"], ["max", "max"]

    def __init__(self) -> None:
        self.asked, self.told = [], []

    def suggest(self, trial_id):
        self.asked.append(trial_id)
        return {"x": 1}

    def on_trial_result(self, trial_id, result):
        pass

    def on_trial_complete(self, trial_id, result=None, error=False):
        self.told.append(trial_id)


def test_the_searcher_stops_asking_once_the_budget_is_spent() -> None:
    from ray.tune.search import Searcher

    inner = _Inner()
    budget = BudgetSearcher(inner, hours=0.5, reference=100.0)  # 1800 s
    assert budget.suggest("t1") == {"x": 1} and inner.asked == ["t1"]
    budget.on_trial_result("t1", {"time_total_s": 600.0})
    budget.on_trial_complete("t1", result={"val_accuracy": 0.5, "time_total_s": 1000.0})
    assert inner.told == ["t1"] and budget.spent() == 1100.0
    assert budget.suggest("t2") == {"x": 1}
    budget.on_trial_result("t2", {"time_total_s": 700.0})
    assert budget.suggest("t3") == Searcher.FINISHED and inner.asked == ["t1", "t2"]
    # what a resume sets again from the experiment's saved state
    again = BudgetSearcher(_Inner(), hours=0.5, reference=100.0)
    again.set_state(budget.get_state())
    assert again.spent() == 1800.0 and again.suggest("t4") == Searcher.FINISHED


@pytest.mark.parametrize("hours", [float("nan"), 0, -1.0, float("inf")])
def test_a_budget_is_a_finite_positive_number(hours) -> None:
    with pytest.raises(RankSearchError, match="--budget-hours must be a finite number of hours > 0"):
        LaunchConfig(space="x", budget_hours=hours)


def test_the_cli_caps_a_budget_sweep_at_1000_trials_unless_told(monkeypatch) -> None:
    from rank_search.cli import launch as cli_launch
    from rank_search.search.settings import BUDGET_SAMPLES

    seen = []
    monkeypatch.setattr("rank_search.search.sweep.launch", lambda cfg: seen.append(cfg))
    monkeypatch.setattr(cli_launch, "_finish", lambda outcome: 0)
    monkeypatch.setattr("rank_search.search.tracking.check_trackers", lambda *a, **k: None, raising=False)
    from rank_search.cli import main

    assert main(["launch", "--space", "demo", "--budget-hours", "0.5"]) == 0
    assert seen[-1].num_samples == BUDGET_SAMPLES and seen[-1].budget_hours == 0.5
    assert main(["launch", "--space", "demo", "--budget-hours", "0.5", "--num-samples", "20"]) == 0
    assert seen[-1].num_samples == 20
    assert main(["launch", "--space", "demo"]) == 0
    assert seen[-1].num_samples == 16 and seen[-1].budget_hours is None


TINY = {"model": "lenet5", "dataset": "synthetic", "epochs": 2,
        "methods": {"factorized": {}},
        "train": {"lr": {"float": [0.02, 0.1], "log": True}},
        "ranks": {"grouping": "uniform", "ratio": {"float": [0.1, 0.9]}}}


@pytest.mark.ray
def test_a_sweep_ends_when_its_budget_is_spent(private_ray, tmp_path) -> None:
    from analysis.loading import load_experiment
    from rank_search.search.sweep import launch

    space = tmp_path / "tiny.yaml"
    space.write_text(yaml.safe_dump(TINY))
    hours = 4.0 / 3600  # a few seconds of trial time: a handful of trials, far fewer than the cap
    out = launch(LaunchConfig(space=str(space), storage=str(tmp_path), name="b", num_samples=200, searcher="random",
                              seed=0, max_concurrent=1, warm_start=0, budget_hours=hours))
    trials = load_experiment(out.path).trials
    assert out.complete and 1 <= len(trials) < 200
    assert (trials["status"] == "TERMINATED").all()
    spent = spent_seconds(out.path)
    assert spent >= hours * 3600
    # the last trial started before the budget ran out: without it, less than the budget was spent
    last = trials.sort_values("started").iloc[-1]
    assert spent - float(last["time_total_s"]) < hours * 3600

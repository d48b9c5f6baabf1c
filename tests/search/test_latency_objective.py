"""Measured latency as a sweep objective: every trial report carries latency_ms,
dense_latency_ms and latency_speedup; a sweep searches over it with two or three objectives (the
Optuna study has those directions); a bad objective name stays a one-line error. Nothing is
asserted about the speed-up's value (the cores are shared)."""
from __future__ import annotations

import math
import os

import pytest
import yaml

from analysis.loading import epoch_history, load_experiment
from rank_search import schema
from rank_search.cli import main
from rank_search.errors import RankSearchError
from rank_search.search import LaunchConfig, parse_objectives

pytestmark = pytest.mark.ray

SPACE = {
    "model": "lenet5", "dataset": "synthetic", "epochs": 2,
    "methods": {"factorized": {}},
    "train": {"lr": 0.05},
    "ranks": {"grouping": "uniform", "ratio": {"float": [0.1, 0.6]}},
}
LATENCY = (schema.LATENCY_MS, schema.DENSE_LATENCY_MS, schema.LATENCY_SPEEDUP)


@pytest.fixture(scope="module")
def space_file(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("space") / "latency.yaml"
    path.write_text(yaml.safe_dump(SPACE))
    return str(path)


def _study(path: str):
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(os.path.join(path, schema.STUDY_FILE)))
    return optuna.load_study(study_name="rank_search", storage=storage)


def _sweep(space_file: str, root, name: str, objectives: str):
    from rank_search.search.sweep import launch

    out = launch(LaunchConfig(space=space_file, storage=str(root), name=name, num_samples=2, seed=0,
                              objectives=parse_objectives(objectives)))
    assert out.complete and out.counts == {"TERMINATED": 2}
    return out


@pytest.mark.parametrize("objectives", [
    "val_accuracy:max,latency_speedup:max",
    "val_accuracy:max,macs_compression:max,latency_speedup:max",
])
def test_a_sweep_searches_over_the_measured_speedup(private_ray, space_file, tmp_path, objectives) -> None:
    out = _sweep(space_file, tmp_path, "lat", objectives)
    exp = load_experiment(out.path)
    assert len(exp.trials) == 2
    for _, trial in exp.trials.iterrows():
        history = epoch_history(out.path, trial["folder"])
        assert [r[schema.EPOCH] for r in history] == [1, 2]
        for result in history:  # every epoch report: Tune needs the searched metrics in each
            assert all(isinstance(result[k], float) and result[k] > 0 for k in LATENCY), result
            assert result[schema.LATENCY_SPEEDUP] == pytest.approx(
                result[schema.DENSE_LATENCY_MS] / result[schema.LATENCY_MS])
    study = _study(out.path)
    metrics = [m for m, _ in parse_objectives(objectives)]
    assert [d.name.lower() for d in study.directions] == ["maximize"] * len(metrics)
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(done) == 2
    assert all(len(t.values) == len(metrics) and all(math.isfinite(v) for v in t.values) for t in done)
    # the study was told each trial's last report, the measured speed-up as the last objective
    assert sorted(t.values[-1] for t in done) == pytest.approx(sorted(exp.trials[schema.LATENCY_SPEEDUP]))


def test_the_latency_objectives_are_accepted() -> None:
    for text in ("val_accuracy:max,latency_speedup:max", "val_accuracy:max,latency_ms:min",
                 "val_accuracy:max,macs_compression:max,latency_speedup:max"):
        cfg = LaunchConfig(space="demo", objectives=parse_objectives(text))
        assert schema.format_objectives(cfg.objectives) == text.split(",")


def test_a_bad_objective_name_is_still_refused() -> None:
    with pytest.raises(RankSearchError, match=r"objective metric must be one every trial reports \(.*latency_speedup"):
        LaunchConfig(space="demo", objectives=parse_objectives("val_accuracy:max,latency:max"))


@pytest.mark.parametrize("objectives, expected", [
    ("val_accuracy:max,latency:max", "got 'latency'"),
    ("val_accuracy:max,latency_speedup:fast", "METRIC:max or METRIC:min"),
])
def test_a_bad_latency_objective_is_one_line_exit_2(capsys, tmp_path, objectives, expected) -> None:
    code = main(["launch", "--space", "demo", "--storage", str(tmp_path), "--objectives", objectives])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(err) == 1 and expected in err[0] and "Traceback" not in err[0]
    assert list(tmp_path.iterdir()) == []  # refused before anything was made

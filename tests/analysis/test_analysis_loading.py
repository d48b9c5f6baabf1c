"""Loading experiment folders written by hand in Tune's layout: finished, running, interrupted,
with a missing, corrupt or lagging state snapshot. (A real Tune experiment: test_analysis_cli.)"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from analysis.loading import (NotAnExperimentError, epoch_history, in_trial_order, last_checkpoint,
                              load_experiment, run_record)
from analysis.summary import front, usable_trials
from rank_search import schema

EPOCHS = 2
STATE = "experiment_state-2026-01-01_00-00-00.json"


def write_trial(exp: Path, tid: str, *, method: str = "factorized", ranks: dict | None = None,
                results: list[tuple[float, float]] = (), start: float = 100.0, extra_line: str = "",
                checkpoints: bool = True) -> None:
    """A trial folder: params.json (sorted keys, as Tune writes it), one result line per epoch
    (val_accuracy, macs_compression) and a checkpoint with run.yaml per epoch."""
    folder = exp / f"trial_{tid}"
    folder.mkdir(parents=True)
    ranks = ranks if ranks is not None else {"conv1": 0.5, "fc": 0.25}
    config = {"method": method, **{f"rank.{g}": r for g, r in ranks.items()}, "space.epochs": EPOCHS,
              "space.grouping": "per_layer", "space.model": "lenet5"}
    (folder / "params.json").write_text(json.dumps(config, sort_keys=True))
    lines = []
    for epoch, (acc, macs) in enumerate(results, start=1):
        ckpt = f"checkpoint_{epoch - 1:06d}"
        lines.append(json.dumps({
            schema.EPOCH: epoch, schema.VAL_ACCURACY: acc, schema.MACS_COMPRESSION: macs, schema.DIVERGED: False,
            "trial_id": tid, "checkpoint_dir_name": ckpt, "done": False, "timestamp": start + 10 * epoch,
            "time_this_iter_s": 10.0, "config": config,
        }))
        if checkpoints:
            (folder / ckpt).mkdir()
            plan = None if method == "full" else {"layers": {g: {"scheme": "channel", "rank": int(40 * r)}
                                                             for g, r in ranks.items()}}
            (folder / ckpt / "run.yaml").write_text(yaml.safe_dump({"run": {"method": method, "ranks": plan}}))
    (folder / "result.json").write_text("".join(line + "\n" for line in lines) + extra_line)


def write_state(exp: Path, trials: dict[str, str], *, starts: dict[str, float] | None = None) -> None:
    data = [[json.dumps({"trial_id": tid, "status": status, "relative_logdir": f"trial_{tid}"}),
             json.dumps({"num_failures": 0, "start_time": (starts or {}).get(tid, 0.0)})]
            for tid, status in trials.items()]
    (exp / STATE).write_text(json.dumps({"trial_data": data, "runner_data": {}, "stats": {}}))


def make_experiment(root: Path, name: str = "exp", *, state: bool = True) -> Path:
    """Three finished trials and one unfinished (epoch 1 of 2), started in the order a, b, c, d."""
    exp = root / name
    exp.mkdir(parents=True)
    sweep = {"launch": {"num_samples": 4, "searcher": "nsga2", "scheduler": "fifo", "seed": 0,
                        "objectives": ["val_accuracy:max", "macs_compression:max"]},
             "space": {"name": "tiny", "model": "lenet5", "dataset": "synthetic", "epochs": EPOCHS,
                       "methods": {"factorized": {}, "full": {}}, "ranks": {"grouping": "per_layer"}}}
    (exp / "rank_search_sweep.yaml").write_text(yaml.safe_dump(sweep))
    write_trial(exp, "d", results=[(0.5, 3.0)], start=400.0, ranks={"conv1": 0.3, "fc": 0.1})
    write_trial(exp, "a", results=[(0.7, 1.5), (0.9, 1.5)], start=100.0)
    write_trial(exp, "b", results=[(0.6, 3.0), (0.8, 3.0)], start=200.0, ranks={"conv1": 0.2, "fc": 0.2})
    write_trial(exp, "c", method="full", results=[(0.8, 1.0), (0.95, 1.0)], start=300.0)
    if state:
        write_state(exp, {"a": "TERMINATED", "b": "TERMINATED", "c": "TERMINATED", "d": "RUNNING"},
                    starts={"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0})
    return exp


def test_finished_and_running_trials(tmp_path) -> None:
    exp = load_experiment(str(make_experiment(tmp_path)))
    t = exp.trials.set_index("trial_id")
    assert list(t.index) == ["a", "b", "c", "d"]
    assert t["status"].to_dict() == {"a": "TERMINATED", "b": "TERMINATED", "c": "TERMINATED", "d": "RUNNING"}
    assert t["finished"].to_dict() == {"a": True, "b": True, "c": True, "d": False}
    assert t["epochs_run"].tolist() == [2, 2, 2, 1]
    assert t["started"].tolist() == [1.0, 2.0, 3.0, 4.0]  # Tune's start times win
    assert t.loc["a", schema.VAL_ACCURACY] == 0.9 and t.loc["a", "best/val_accuracy"] == 0.9
    # config columns keep the sampler's order (from the reported config), not params.json's sorted one
    assert [c for c in exp.trials.columns if c.startswith("config/rank.")] == ["config/rank.conv1", "config/rank.fc"]
    assert exp.objectives == [(schema.VAL_ACCURACY, "max"), (schema.MACS_COMPRESSION, "max")]


def test_without_state_snapshot_status_comes_from_results(tmp_path) -> None:
    path = make_experiment(tmp_path, state=False)
    t = load_experiment(str(path)).trials.set_index("trial_id")
    assert t["status"].to_dict() == {"a": "TERMINATED", "b": "TERMINATED", "c": "TERMINATED", "d": "UNKNOWN"}
    assert t["started"].tolist() == [100.0, 200.0, 300.0, 400.0]  # first result minus its duration
    assert in_trial_order(load_experiment(str(path)).trials)["trial_id"].tolist() == ["a", "b", "c", "d"]


def test_interrupted_experiment_with_lagging_or_corrupt_state(tmp_path) -> None:
    path = make_experiment(tmp_path)
    # a trial started after the last snapshot, with no result yet; another whose line is half written
    (path / "trial_e").mkdir()
    (path / "trial_e" / "params.json").write_text(json.dumps({"method": "factorized"}))
    write_trial(path, "f", results=[(0.4, 2.0)], extra_line='{"epoch": 2, "val_accu', start=500.0)
    # the snapshot lists a trial that has no folder yet
    write_state(path, {"a": "TERMINATED", "b": "TERMINATED", "c": "TERMINATED", "d": "RUNNING", "g": "PENDING"})
    t = load_experiment(str(path)).trials.set_index("trial_id")
    assert list(t.index) == ["a", "b", "c", "d", "f", "g", "trial_e"]
    assert t.loc["f", "epochs_run"] == 1 and t.loc["f", "status"] == "UNKNOWN" and not t.loc["f", "finished"]
    assert t.loc["trial_e", "epochs_run"] == 0 and t.loc["g", "status"] == "PENDING"
    exp = load_experiment(str(path))
    assert set(usable_trials(exp)["trial_id"]) == {"a", "b", "c", "d", "f"}
    assert front(exp)["trial_id"].tolist() == ["c", "a", "b"]  # d and f are dominated by b
    # a snapshot being rewritten (not JSON yet) falls back to the trial folders
    (path / STATE).write_text('{"trial_data": [')
    assert len(load_experiment(str(path)).trials) == 6


def test_run_record_falls_back_to_an_older_checkpoint(tmp_path) -> None:
    path = make_experiment(tmp_path)
    row = load_experiment(str(path)).trials.set_index("trial_id").loc["a"]
    assert row["checkpoint"] == "checkpoint_000001"
    assert run_record(str(path), row["folder"], row["checkpoint"])["ranks"]["layers"]["conv1"]["rank"] == 20
    import shutil

    shutil.rmtree(path / "trial_a" / "checkpoint_000001")
    assert last_checkpoint(str(path), "trial_a", "checkpoint_000001") == "checkpoint_000000"
    assert run_record(str(path), "trial_c")["ranks"] is None  # dense method
    shutil.rmtree(path / "trial_a" / "checkpoint_000000")
    assert run_record(str(path), "trial_a", "checkpoint_000001") is None
    assert [r[schema.EPOCH] for r in epoch_history(str(path), "trial_a")] == [1, 2]


def test_not_an_experiment(tmp_path) -> None:
    with pytest.raises(NotAnExperimentError, match="is not a Ray Tune experiment"):
        load_experiment(str(tmp_path))
    with pytest.raises(NotAnExperimentError, match="does not exist"):
        load_experiment(str(tmp_path / "missing"))
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(NotAnExperimentError, match="is a file, not an experiment folder"):
        load_experiment(str(tmp_path / "file.txt"))


def test_analysis_imports_neither_torch_nor_ray() -> None:
    # analysis may use rank_search's torch-free names, errors and file layer (shared with the search)
    import subprocess
    import sys

    code = ("import sys, analysis.analyze, analysis.select, analysis.plots, analysis.report; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'ray', 'search_spaces') "
            "or (m.startswith('rank_search.') and m not in ('rank_search.schema', 'rank_search.errors', "
            "'rank_search.storage'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"

"""Shared by the hardening tests: a slow real sweep killed mid-way (module fixture), its copies,
and checks that every trial finished once."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from analysis.loading import epoch_history, load_experiment
from rank_search import schema
from rank_search.cli import main


# The real MNIST subset makes an epoch last a second or more, so a kill lands mid-sweep; the
# budget-driven ranks make every trial read the sweep's dense reference and profile.
SLOW_SPACE = {
    "model": "lenet5", "dataset": "mnist5k", "epochs": 2,
    "methods": {"posthoc": {}, "factorized": {}},
    "train": {"lr": {"float": [0.02, 0.1], "log": True}, "batch_size": 16},
    "ranks": {"allocation": "sensitivity", "target": {"float": [1.5, 3.0], "log": True}, "proxy": "energy"},
}


EPOCHS = 2


TRIALS = 4


def rank_search(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rank_search", *args], capture_output=True, text=True,
                          timeout=timeout)


def wait_for(predicate, timeout: float, what: str) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def finished_on_disk(path: str, epochs: int = EPOCHS) -> dict[str, str]:
    """trial folder -> result.json text, for trials whose last result is their final epoch."""
    out = {}
    for folder in sorted(os.listdir(path)):
        result = Path(path, folder, "result.json")
        if result.is_file():
            rows = []
            for line in result.read_text().splitlines():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    break
            if rows and rows[-1].get("epoch") == epochs:
                out[folder] = result.read_text()
    return out


def started_on_disk(path: str) -> set[str]:
    return {f for f in os.listdir(path) if f.startswith("trial_")}


def assert_complete_once(path: str, trials: int = TRIALS, epochs: int = EPOCHS) -> None:
    """Every trial finished, each once: one folder per trial, each epoch reported once, and the
    Optuna study told of each trial once."""
    exp = load_experiment(path)
    assert len(exp.trials) == trials and exp.trials["trial_id"].is_unique, exp.trials[["trial_id", "status"]]
    assert (exp.trials["status"] == "TERMINATED").all(), exp.trials[["trial_id", "status"]]
    for folder in exp.trials["folder"]:
        history = epoch_history(path, folder)
        epochs_seen = [r["epoch"] for r in history]
        last = epochs_seen[-1] if not history[-1].get(schema.DIVERGED) else epochs  # a diverged trial ends early
        assert last == epochs and sorted(set(epochs_seen)) == list(range(1, max(epochs_seen) + 1)), (folder, epochs_seen)
        assert epochs_seen == sorted(set(epochs_seen)), f"trial {folder} ran an epoch twice: {epochs_seen}"
    # one Optuna trial told per Tune trial: none created twice. (Configs may repeat: NSGA-II's
    # crossover can hand a child all of one parent's values; that is a new trial, not a re-run.)
    study = Path(path, schema.STUDY_FILE)
    if study.is_file():
        import optuna
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        told = optuna.load_study(study_name="rank_search", storage=JournalStorage(JournalFileBackend(str(study))))
        assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in told.trials) == trials


@pytest.fixture(scope="module")
def killed_sweep(tmp_path_factory) -> str:
    """A sweep whose launch process group got ``kill -9`` with one trial finished and one running
    (two not yet created). The moved-sweep test moves this folder; the others use copies of
    ``pristine`` (taken right after the kill)."""
    root = tmp_path_factory.mktemp("killed")
    space = root / "slow.yaml"
    space.write_text(yaml.safe_dump(SLOW_SPACE))
    path = str(root / "runs" / "killed")
    cmd = [sys.executable, "-m", "rank_search", "launch", "--space", str(space), "--num-samples", str(TRIALS),
           "--max-concurrent", "1", "--storage", str(root / "runs"), "--name", "killed", "--seed", "1"]
    with open(root / "launch.log", "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for(lambda: os.path.isdir(path) and len(finished_on_disk(path)) >= 1
                     and len(started_on_disk(path)) > len(finished_on_disk(path)), 600,
                     "one finished trial and one started")
            time.sleep(1.0)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert 1 <= len(finished_on_disk(path)) < TRIALS
    shutil.copytree(path, root / "pristine")
    return path


def copy_of(path: str, dest: Path) -> str:
    """A copy of the killed sweep as it was right after the kill."""
    shutil.copytree(Path(path).parents[1] / "pristine", dest)
    return str(dest)


# -- item 5: damaged Tune state is a clear error, never extra trials --------------------------
def _tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


# (resume's trust boundary in its help, the README and docs/cli.md: tests/test_docs.py)
# -- item 4: launch errors are found before any folder or Ray -------------------------------
TINY = {
    "model": "lenet5", "dataset": "synthetic", "epochs": 2,
    "methods": {"posthoc": {"init": "scratch"}, "factorized": {}},
    "train": {"lr": {"float": [0.02, 0.1], "log": True}},
    "ranks": {"grouping": "per_layer", "ratio": {"float": [0.1, 0.9]}},
}


def _one_line_exit_2(capsys, argv: list[str]) -> str:
    import ray

    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert not ray.is_initialized(), "the error was found only after Ray started"
    return err[0]

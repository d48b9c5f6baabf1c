"""Sweeps on a private local Ray with tiny budgets: end to end, objectives, crash retry,
SIGKILL + resume, two-node placement, export -> train round trip."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from analysis.loading import epoch_history, load_experiment
from rank_search.cli import main
from rank_search.search import LaunchConfig
from _faults import install as install_faults
from _hardening import wait_for

pytestmark = pytest.mark.ray

TINY_SPACE = {
    "model": "lenet5", "dataset": "synthetic", "epochs": 2,
    "methods": {"posthoc": {"finetune_epochs": 1}, "factorized": {}},
    "train": {"lr": {"float": [0.02, 0.1], "log": True}},
    "ranks": {"grouping": "per_layer", "ratio": {"float": [0.1, 0.9]}},
}


@pytest.fixture(scope="module")
def space_file(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("space") / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY_SPACE))
    return str(path)


@pytest.fixture(scope="module")
def local_ray():
    """One private Ray for the in-process sweeps of this module."""
    import ray

    markers = tempfile.mkdtemp(prefix="rs-crash-")
    with pytest.MonkeyPatch.context() as monkeypatch:
        # only the experiment 'crashy' crashes, once per trial
        install_faults(monkeypatch, experiment="crashy", at_epoch=1, markers=markers)
        ray.init(address="local", num_cpus=2, include_dashboard=False, _temp_dir=tempfile.mkdtemp(prefix="rs-test-"),
                 logging_level="WARNING", log_to_driver=False)
        yield SimpleNamespace(markers=markers)
        ray.shutdown()


def _launch(space_file: str, storage: Path, name: str, **kw):
    from rank_search.search.sweep import launch

    return launch(LaunchConfig(space=space_file, storage=str(storage), name=name, **kw))


def test_sweep_end_to_end_then_export_and_retrain(local_ray, space_file, tmp_path, capsys) -> None:
    out = _launch(space_file, tmp_path, "e2e", num_samples=3, searcher="nsga2", seed=1)
    assert out.complete and out.counts == {"TERMINATED": 3}
    exp = load_experiment(out.path)
    assert len(exp.trials) == 3 and exp.trials["trial_id"].is_unique
    assert (exp.trials["epochs_run"] == 2).all()
    assert exp.trials["test_accuracy"].between(0, 1).all()
    assert (exp.trials["macs_compression"] > 0).all()
    for folder in exp.trials["folder"]:
        assert [r["epoch"] for r in epoch_history(out.path, folder)] == [1, 2]
    assert main(["status", out.path]) == 0
    assert "Pareto front over val_accuracy (max), macs_compression (max)" in capsys.readouterr().out

    best = tmp_path / "best.yaml"
    assert main(["export", out.path, "--pick", "max-accuracy", "--weights", "--out", str(best)]) == 0
    exported = yaml.safe_load(best.read_text())
    assert (tmp_path / exported["weights"]).is_file()
    assert exported["provenance"]["sweep"] == "e2e" and exported["provenance"]["searcher"] == "nsga2"
    row = exp.trials.set_index("trial_id").loc[exported["provenance"]["trial_id"]]
    assert exported["metrics"]["val_accuracy"] == pytest.approx(row["val_accuracy"])
    assert row["val_accuracy"] == exp.trials["val_accuracy"].max()

    retrain = tmp_path / "retrain"
    assert main(["train", "--config", str(best), "--out", str(retrain)]) == 0
    plan = yaml.safe_load((retrain / "plan.yaml").read_text())["layers"]
    if exported["run"]["method"] != "full":
        assert plan == exported["run"]["ranks"]["layers"]
    metrics = json.loads((retrain / "metrics.json").read_text())
    # same config, same seed: the re-run reproduces the trial
    assert metrics["val_accuracy"] == pytest.approx(exported["metrics"]["val_accuracy"])


@pytest.mark.parametrize("objectives", [
    (("val_accuracy", "max"), ("macs_compression", "max")),
    (("val_accuracy", "max"), ("compact_params", "min")),
])
def test_searcher_study_is_multi_objective(objectives) -> None:
    from search_spaces import SpaceSampler, space_from_mapping

    from rank_search.search.tune_setup import make_searcher

    cfg = LaunchConfig(space="x", objectives=objectives)
    search = make_searcher(cfg, SpaceSampler(space_from_mapping(TINY_SPACE, name="t"), ["a"]))
    want = ["maximize" if m == "max" else "minimize" for _, m in objectives]
    assert [d.name.lower() for d in search._ot_study.directions] == want
    assert search.metric == [m for m, _ in objectives]


def test_crashed_trial_resumes_from_its_checkpoint(local_ray, space_file, tmp_path) -> None:
    out = _launch(space_file, tmp_path, "crashy", num_samples=2, max_failures=1)
    assert out.complete and out.counts == {"TERMINATED": 2}
    exp = load_experiment(out.path)
    assert (exp.trials["num_failures"] == 1).all()
    for _, trial in exp.trials.iterrows():
        assert os.path.exists(os.path.join(local_ray.markers, f"crashed-{trial['trial_id']}"))
        history = epoch_history(out.path, trial["folder"])
        # the crash hit epoch 2; the retry restored the epoch-1 checkpoint and ran only epoch 2
        # (a restart from scratch would run 2 iterations after the restore and repeat epoch 1)
        assert history[-1]["epoch"] == 2 and history[-1]["iterations_since_restore"] == 1
        epochs = [r["epoch"] for r in history]
        assert epochs == sorted(set(epochs))


def _finished_on_disk(path: str) -> dict[str, str]:
    """trial folder -> result.json text, for trials whose last result is their final epoch."""
    out = {}
    for folder in sorted(os.listdir(path)):
        result = Path(path, folder, "result.json")
        if result.is_file():
            rows = [json.loads(line) for line in result.read_text().splitlines() if line.strip()]
            if rows and rows[-1].get("epoch") == 3:
                out[folder] = result.read_text()
    return out


@pytest.mark.parametrize("address", ["path", pytest.param("file-uri", marks=pytest.mark.slow)])
def test_sigkilled_driver_then_resume_runs_each_trial_once(tmp_path, address) -> None:
    # the real MNIST subset makes each epoch last about a second, so the kill lands mid-sweep
    # lr below 0.02: lenet5 (no BatchNorm) factorized from scratch on real data diverged at 0.035, and a
    # diverged trial stops after one epoch, which this test would not count as finished
    slow = {**TINY_SPACE, "dataset": "mnist5k", "train": {"lr": {"float": [0.005, 0.02], "log": True}, "batch_size": 16},
            "ranks": {"allocation": "sensitivity", "target": {"float": [1.5, 3.0], "log": True}, "proxy": "energy"}}
    space_file = tmp_path / "slow.yaml"
    space_file.write_text(yaml.safe_dump(slow))
    exp_path = str(tmp_path / "killed")
    cmd = [sys.executable, "-m", "rank_search", "launch", "--space", str(space_file), "--num-samples", "4",
           "--epochs", "3", "--max-concurrent", "1", "--storage", str(tmp_path), "--name", "killed"]
    log = open(tmp_path / "launch.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: os.path.isdir(exp_path) and len(_finished_on_disk(exp_path)) >= 1
                  and any(f.startswith("trial_") for f in os.listdir(exp_path) if f not in _finished_on_disk(exp_path)),
                  240, "one finished trial and one started")
        time.sleep(1.0)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    before = _finished_on_disk(exp_path)
    assert 1 <= len(before) < 4
    made_once = ("dense.pt", "dense.yaml", "sensitivity.csv", "sensitivity.yaml")
    stamps = {f: (os.stat(os.path.join(exp_path, f)).st_mtime_ns, Path(exp_path, f).read_bytes()) for f in made_once}

    # a sweep copied off a cluster is resumed from wherever it is, a folder or a URI
    target = exp_path if address == "path" else Path(exp_path).as_uri()
    resume = subprocess.run([sys.executable, "-m", "rank_search", "resume", target], capture_output=True,
                            text=True, timeout=400)
    assert resume.returncode == 0, resume.stderr[-2000:]
    exp = load_experiment(exp_path)
    assert len(exp.trials) == 4 and exp.trials["trial_id"].is_unique
    assert (exp.trials["status"] == "TERMINATED").all()
    after = _finished_on_disk(exp_path)
    assert set(after) == set(exp.trials["folder"])
    for folder, text in before.items():
        assert after[folder] == text, f"finished trial {folder} was run again"
    for folder in exp.trials["folder"]:
        epochs = [r["epoch"] for r in epoch_history(exp_path, folder)]
        assert epochs[-1] == 3 and sorted(set(epochs)) == [1, 2, 3]
    # the dense reference and the profile were made once, and the resumed study holds every trial once
    for f, (mtime, data) in stamps.items():
        assert os.stat(os.path.join(exp_path, f)).st_mtime_ns == mtime and Path(exp_path, f).read_bytes() == data, f
    assert "training the dense reference" not in resume.stderr
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    study = optuna.load_study(study_name="rank_search",
                              storage=JournalStorage(JournalFileBackend(os.path.join(exp_path, "optuna_study.log"))))
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 4


def test_trials_needing_a_gpu_land_on_the_gpu_node(space_file, tmp_path) -> None:
    script = textwrap.dedent(f"""
        import json, ray
        from ray.cluster_utils import Cluster
        from rank_search.search import LaunchConfig
        from rank_search.search.sweep import launch
        cluster = Cluster(initialize_head=True, head_node_args={{"num_cpus": 1}})
        gpu_node = cluster.add_node(num_cpus=1, resources={{"fake_gpu": 1}})
        cluster.wait_for_nodes()
        out = launch(LaunchConfig(space={space_file!r}, num_samples=2, resources={{"fake_gpu": 0.5}},
                                  address=cluster.address, storage={str(tmp_path)!r}, name="twonode"))
        print("RESULT", json.dumps({{"gpu_node": gpu_node.node_id, "complete": out.complete}}))
        ray.shutdown()
        cluster.shutdown()
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.split("RESULT", 1)[1])
    assert result["complete"]
    exp = load_experiment(str(tmp_path / "twonode"))
    assert len(exp.trials) == 2
    assert (exp.trials["node_id"] == result["gpu_node"]).all()


def test_cluster_run_without_shared_storage_is_refused(capsys) -> None:
    assert main(["launch", "--space", "demo", "--address", "auto"]) == 2
    err = capsys.readouterr().err
    assert "needs --storage" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("num_samples, population", [(8, 4), (16, 4), (40, 10), (200, 50), (1000, 50)])
def test_nsga2_generation_fits_the_budget(num_samples: int, population: int) -> None:
    from search_spaces import SpaceSampler, space_from_mapping

    from rank_search.search.tune_setup import make_searcher

    cfg = LaunchConfig(space="x", num_samples=num_samples, searcher="nsga2")
    search = make_searcher(cfg, SpaceSampler(space_from_mapping(TINY_SPACE, name="t"), ["a"]))
    sampler = search._ot_study.sampler
    assert sampler._population_size == population
    assert num_samples // population >= 2 or population == 4

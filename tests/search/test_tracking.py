"""`launch --log-to`: tracker names, the package check, the record, where each tracker writes, the
callbacks on fake trials (MLflow runs kept across a resume, TensorBoard scalars read back), and
objective names in the Optuna study. No Ray is started (test_tracking_sweep.py runs real sweeps)."""
from __future__ import annotations

import importlib.util
import json
import os
import pickle
import struct

import pytest

from rank_search import schema
from rank_search.errors import RankSearchError
from rank_search.search import tracking
from rank_search.search.settings import LOG_TO, LaunchConfig

HAS_MLFLOW = importlib.util.find_spec("mlflow") is not None
HAS_TBX = importlib.util.find_spec("tensorboardX") is not None
HAS_WANDB = importlib.util.find_spec("wandb") is not None
needs_mlflow = pytest.mark.skipif(not HAS_MLFLOW, reason="mlflow is not installed (pip install 'rank-search[tracking]')")
needs_tbx = pytest.mark.skipif(not HAS_TBX, reason="tensorboardX is not installed (pip install 'rank-search[tracking]')")


def test_static_names_equal_the_trackers() -> None:
    assert tuple(sorted(tracking.PACKAGES)) == tuple(sorted(LOG_TO))


@pytest.mark.parametrize("log_to, match", [
    (("mlfow",), "--log-to must be one of mlflow, tensorboard, wandb, got 'mlfow'"),
    (("mlflow", "mlflow"), "each tracker once"),
    (["mlflow"], "must be a tuple"),
    ((1,), "must be a tuple"),
])
def test_bad_log_to_is_refused(log_to, match) -> None:
    with pytest.raises(RankSearchError, match=match):
        LaunchConfig(space="demo", log_to=log_to)


def test_the_record_keeps_log_to(tmp_path) -> None:
    from rank_search.search.sweep_record import config_from_record, read_sweep_record, write_sweep_record

    cfg = LaunchConfig(space="demo", log_to=("tensorboard", "mlflow"))
    write_sweep_record(str(tmp_path / "e"), cfg, {"name": "demo"})
    record = read_sweep_record(str(tmp_path / "e"))
    assert record["launch"]["log_to"] == ["tensorboard", "mlflow"]
    assert config_from_record(record).log_to == ("tensorboard", "mlflow")
    del record["launch"]["log_to"]  # a record written before the flag
    assert config_from_record(record).log_to == ()
    record["launch"]["log_to"] = "mlflow"
    with pytest.raises(RankSearchError, match="launch.log_to must be a list of tracker names, got 'mlflow'"):
        config_from_record(record)


def test_a_missing_package_is_one_line(monkeypatch) -> None:
    monkeypatch.setitem(tracking.PACKAGES, "mlflow", "no_such_module_for_rank_search")
    with pytest.raises(RankSearchError, match=r"--log-to mlflow needs the 'no_such_module_for_rank_search' package: "
                                              r"pip install 'rank-search\[tracking\]'"):
        tracking.check_trackers(("mlflow",))
    tracking.check_trackers(())  # nothing asked, nothing needed


def test_cli_refuses_a_missing_package_before_any_folder_torch_or_ray(tmp_path) -> None:
    import subprocess
    import sys

    script = ("import sys\n"
              "from rank_search.search import tracking\n"
              "tracking.PACKAGES['wandb'] = 'no_such_module_for_rank_search'\n"
              "from rank_search.cli import main\n"
              f"code = main(['launch', '--space', 'demo', '--log-to', 'tensorboard', '--log-to', 'wandb', "
              f"'--storage', {str(tmp_path / 'runs')!r}, '--name', 'x'])\n"
              "print(code, 'torch' in sys.modules, 'ray' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["2", "False", "False"], done.stderr[-2000:]
    assert done.stderr.strip().splitlines() == [
        "rank-search launch: error: --log-to wandb needs the 'no_such_module_for_rank_search' package: "
        "pip install 'rank-search[tracking]'"]
    assert not (tmp_path / "runs").exists()


def test_cli_resume_checks_the_recorded_trackers(monkeypatch, tmp_path, capsys) -> None:
    from rank_search.cli import main
    from rank_search.search.sweep_record import write_sweep_record

    write_sweep_record(str(tmp_path / "e"), LaunchConfig(space="demo", log_to=("mlflow",)), {"name": "demo"})
    monkeypatch.setitem(tracking.PACKAGES, "mlflow", "no_such_module_for_rank_search")
    assert main(["resume", str(tmp_path / "e")]) == 2
    assert "--log-to mlflow needs the 'no_such_module_for_rank_search' package" in capsys.readouterr().err


def test_remote_storage_needs_a_tracking_server(monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(RankSearchError, match="needs MLFLOW_TRACKING_URI"):
        tracking.check_trackers(("mlflow",), storage="s3://bucket/runs")
    with pytest.raises(RankSearchError, match="--log-to tensorboard writes EXP/tensorboard, a local folder"):
        tracking.check_trackers(("tensorboard",), storage="s3://bucket/runs")
    tracking.check_trackers(("mlflow", "tensorboard"), storage="file:///tmp/runs")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    tracking.check_trackers(("mlflow",), storage="s3://bucket/runs")


def test_mlflow_store_inside_the_experiment_unless_the_environment_names_one(monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking.mlflow_tracking_uri("/x/runs/s") == "sqlite:////x/runs/s/mlflow.db"
    assert tracking.mlflow_tracking_uri("file:///x/runs/s") == "sqlite:////x/runs/s/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking.mlflow_tracking_uri("/x/runs/s") == "http://127.0.0.1:5000"


@pytest.mark.parametrize("objectives", [schema.DEFAULT_OBJECTIVES,
                                        ((schema.VAL_ACCURACY, "max"), (schema.PARAMS_COMPRESSION, "max"))])
def test_the_study_names_its_objectives_once(tmp_path, objectives) -> None:
    import optuna

    from rank_search.search.journal import journal_storage
    from rank_search.search.searchers import name_objectives

    cfg = LaunchConfig(space="demo", objectives=objectives)
    storage = journal_storage(str(tmp_path / "study.log"))
    study = optuna.create_study(storage=storage, study_name="s", directions=["maximize"] * len(objectives))
    name_objectives(study, cfg)
    size = os.path.getsize(tmp_path / "study.log")
    name_objectives(optuna.load_study(study_name="s", storage=storage), cfg)  # e.g. read back on resume
    assert os.path.getsize(tmp_path / "study.log") == size  # nothing written twice
    assert optuna.load_study(study_name="s", storage=journal_storage(str(tmp_path / "study.log"))).metric_names \
        == [m for m, _ in objectives]


class FakeTrial:
    """What the tracker callbacks read of a Tune trial."""

    def __init__(self, experiment, trial_id: str, config: dict) -> None:
        self.trial_id, self.config, self.evaluated_params = trial_id, config, config
        self.path = str(experiment / f"trial_{trial_id}")

    def __str__(self) -> str:
        return f"rank_search_trainable_{self.trial_id}"


def _results(epochs: range):
    for epoch in epochs:
        yield {"training_iteration": epoch, schema.VAL_ACCURACY: 0.5 + epoch / 10, schema.MACS_COMPRESSION: 2.0,
               "diverged": False, "config": {}, "date": "x"}


@pytest.mark.slow  # MLflow makes its SQLite tables: about 15-30 s on a loaded machine
@needs_mlflow
def test_mlflow_tracker_continues_a_resumed_trial_in_its_run(tmp_path, monkeypatch) -> None:
    import mlflow

    from rank_search.search.tracking_callbacks import MLflowTracker

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    exp = tmp_path / "s"
    exp.mkdir()
    trial = FakeTrial(exp, "a0001", {"method": "trp", "lr": 0.05})
    first = MLflowTracker(experiment_name="s")
    first.setup()
    first.log_trial_start(trial)
    for r in _results(range(1, 3)):
        first.log_trial_result(r["training_iteration"], trial, r)
    # the driver stops here; `resume` unpickles the callback from tuner.pkl and the trial goes on
    from ray import cloudpickle  # what Tune writes tuner.pkl with

    again = cloudpickle.loads(cloudpickle.dumps(MLflowTracker(experiment_name="s")))
    again.setup()
    again.log_trial_start(trial)
    for r in _results(range(3, 5)):
        again.log_trial_result(r["training_iteration"], trial, r)
    again.log_trial_end(trial)

    client = mlflow.MlflowClient(f"sqlite:///{exp / tracking.MLFLOW_DB}")
    experiment = client.get_experiment_by_name("s")
    assert experiment.artifact_location.endswith(str(exp / tracking.MLFLOW_ARTIFACTS))
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert runs[0].data.params == {"method": "trp", "lr": "0.05"}
    history = client.get_metric_history(runs[0].info.run_id, schema.VAL_ACCURACY)
    assert [(m.step, round(m.value, 2)) for m in history] == [(1, 0.6), (2, 0.7), (3, 0.8), (4, 0.9)]


def _scalars(folder) -> dict[str, list[tuple[int, float]]]:
    """The scalars of the TensorBoard event files in ``folder`` (TFRecord framing, Event protos)."""
    from tensorboardX.proto.event_pb2 import Event

    out: dict[str, list[tuple[int, float]]] = {}
    for name in sorted(os.listdir(folder)):
        data = (folder / name).read_bytes()
        at = 0
        while at < len(data):
            (length,) = struct.unpack("<Q", data[at:at + 8])
            event = Event.FromString(data[at + 12:at + 12 + length])
            at += 12 + length + 4
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    out.setdefault(value.tag, []).append((event.step, round(value.simple_value, 4)))
    return out


@needs_tbx
def test_tensorboard_tracker_writes_scalars_into_the_experiment(tmp_path) -> None:
    from rank_search.search.tracking_callbacks import TensorBoardTracker

    exp = tmp_path / "s"
    trial = FakeTrial(exp, "b0002", {"method": "trp", "lr": 0.05, "ranks": None})
    tb = pickle.loads(pickle.dumps(TensorBoardTracker()))  # Tune keeps it in tuner.pkl
    tb.setup()
    for r in _results(range(1, 3)):
        tb.log_trial_result(r["training_iteration"], trial, r)
    tb.log_trial_end(trial)
    scalars = _scalars(exp / tracking.TENSORBOARD_DIR / "trial_b0002")
    assert scalars[schema.VAL_ACCURACY] == [(1, 0.6), (2, 0.7)]
    assert scalars[schema.MACS_COMPRESSION] == [(1, 2.0), (2, 2.0)]
    assert "training_iteration" not in scalars and "diverged" not in scalars


def test_make_callbacks_builds_one_per_tracker(monkeypatch) -> None:
    pytest.importorskip("ray")
    if not (HAS_MLFLOW and HAS_TBX):
        pytest.skip("mlflow and tensorboardX are not both installed")
    from rank_search.search.tracking_callbacks import MLflowTracker, TensorBoardTracker

    callbacks = tracking.make_callbacks(("tensorboard", "mlflow"), sweep="s", storage="/tmp/runs")
    assert [type(c) for c in callbacks] == [TensorBoardTracker, MLflowTracker]
    assert callbacks[1].experiment_name == "s"
    assert tracking.make_callbacks((), sweep="s") == []


def test_wandb_tracker_is_offline_unless_wandb_mode_says_otherwise(monkeypatch) -> None:
    pytest.importorskip("wandb", reason="wandb is not installed (pip install 'rank-search[tracking]'): W&B untested")
    from rank_search.search.tracking_callbacks import WandbTracker

    monkeypatch.setenv("WANDB_MODE", "placeholder")
    monkeypatch.delenv("WANDB_MODE")  # undone at teardown, whatever setup sets
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    tracker = WandbTracker(project="s")
    tracker.setup()  # Ray's own setup asks for an API key unless offline
    assert os.environ["WANDB_MODE"] == "offline" and tracker.kwargs["mode"] == "offline"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    tracker = WandbTracker(project="s")
    tracker.setup()
    assert tracker.kwargs["mode"] == "disabled" and tracker.project == "s"


TINY = {"model": "lenet5", "dataset": "synthetic", "epochs": 2,
        "methods": {"factorized": {}},
        "train": {"lr": {"float": [0.02, 0.1], "log": True}},
        "ranks": {"grouping": "uniform", "ratio": {"float": [0.1, 0.9]}}}


def _flat(config: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in config.items():
        out.update(_flat(value, f"{prefix}{key}/") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return out


@pytest.mark.slow  # about 1.5-2 min on 2 loaded cores
@pytest.mark.ray
@needs_mlflow
@needs_tbx
def test_a_sweep_reports_to_its_trackers(private_ray, tmp_path, monkeypatch) -> None:
    """A real sweep with --log-to mlflow, tensorboard (and wandb where installed): MLflow's client
    reads back each trial's parameters and every epoch's metrics; TensorBoard's scalars and W&B's
    offline runs are in the experiment; the study names its objectives; tuner.pkl keeps the
    trackers for resume."""
    import mlflow
    import optuna
    import yaml
    from ray import cloudpickle

    from analysis.loading import load_experiment
    from rank_search.search.journal import journal_storage
    from rank_search.search.sweep import launch
    from rank_search.search.tracking_callbacks import MLflowTracker, TensorBoardTracker

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    space = tmp_path / "tiny.yaml"
    space.write_text(yaml.safe_dump(TINY))
    log_to = ("mlflow", "tensorboard") + (("wandb",) if HAS_WANDB else ())  # W&B offline (WANDB_MODE unset)
    monkeypatch.setenv("WANDB_MODE", "placeholder")
    monkeypatch.delenv("WANDB_MODE")  # undone at teardown, whatever the tracker sets
    out = launch(LaunchConfig(space=str(space), storage=str(tmp_path), name="s", num_samples=2, searcher="random",
                              warm_start=0, log_to=log_to))
    assert out.complete
    exp = tmp_path / "s"
    trials = load_experiment(str(exp)).trials.set_index("trial_id")
    assert len(trials) == 2

    study = optuna.load_study(study_name=schema.STUDY_NAME, storage=journal_storage(str(exp / schema.STUDY_FILE)))
    assert study.metric_names == [schema.VAL_ACCURACY, schema.MACS_COMPRESSION]

    client = mlflow.MlflowClient(f"sqlite:///{exp / tracking.MLFLOW_DB}")
    runs = client.search_runs([client.get_experiment_by_name("s").experiment_id])
    by_trial = {next(t for t in trials.index if t in r.data.tags["trial_name"]): r for r in runs}
    assert sorted(by_trial) == sorted(trials.index)
    for trial_id, run in by_trial.items():
        assert run.info.status == "FINISHED"
        config = json.loads((exp / f"trial_{trial_id}" / "params.json").read_text())  # as Tune keeps it
        assert run.data.params == {k: str(v) for k, v in _flat(config).items()}
        assert run.data.params[schema.METHOD_KEY] == "factorized"
        for metric in (schema.VAL_ACCURACY, schema.MACS_COMPRESSION):
            history = client.get_metric_history(run.info.run_id, metric)
            assert [m.step for m in history] == [1, 2]
            assert history[-1].value == pytest.approx(trials.loc[trial_id, metric])
        assert _scalars(exp / tracking.TENSORBOARD_DIR / f"trial_{trial_id}")[schema.VAL_ACCURACY][-1][1] == \
            pytest.approx(trials.loc[trial_id, schema.VAL_ACCURACY], abs=1e-4)

    if HAS_WANDB:  # one offline run per trial, holding its metrics (a binary log: wandb sync reads it)
        runs = {p.name.rsplit("-", 1)[1]: p for p in (exp / tracking.WANDB_DIR).glob("offline-run-*")}
        assert sorted(runs) == sorted(trials.index)
        assert all(schema.VAL_ACCURACY.encode() in next(p.glob("run-*.wandb")).read_bytes() for p in runs.values())

    state = cloudpickle.loads((exp / "tuner.pkl").read_bytes())  # what `resume` restores
    kept = [type(c) for c in state["_run_config"].callbacks]
    assert MLflowTracker in kept and TensorBoardTracker in kept


def test_the_sweep_searcher_names_the_journal_study(tmp_path) -> None:
    """make_searcher (launch's searcher) leaves the objective names in the study journal, where
    optuna-dashboard EXP/optuna_study.log reads them; building it again (a restart) keeps them."""
    import optuna

    from rank_search.search.journal import journal_storage
    from rank_search.search.tune_setup import make_searcher, study_storage

    def space(trial):
        trial.suggest_float("x", 0.0, 1.0)

    cfg = LaunchConfig(space="x", objectives=((schema.VAL_ACCURACY, "max"), (schema.COMPACT_PARAMS, "min")))
    for _ in range(2):
        make_searcher(cfg, space, storage=study_storage(str(tmp_path)))
    study = optuna.load_study(study_name=schema.STUDY_NAME, storage=journal_storage(str(tmp_path / schema.STUDY_FILE)))
    assert study.metric_names == [schema.VAL_ACCURACY, schema.COMPACT_PARAMS]


def test_describe_says_where_each_tracker_writes(monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    line = tracking.describe(("mlflow", "tensorboard", "wandb"), experiment="/x/runs/s")
    assert line == ("mlflow at sqlite:////x/runs/s/mlflow.db (mlflow ui --backend-store-uri sqlite:////x/runs/s/mlflow.db); "
                    "tensorboard --logdir /x/runs/s/tensorboard; wandb offline in /x/runs/s/wandb (upload later with wandb sync)")


@pytest.mark.slow  # two sweeps: about 2-3 min on 2 loaded cores
@pytest.mark.ray
@needs_mlflow
@needs_tbx
def test_resume_keeps_the_trackers_and_a_trial_continues_its_run(private_ray, tmp_path, monkeypatch) -> None:
    """A trial that crashed (no retries) is finished by `resume`: its trackers come back from
    tuner.pkl, and its epochs land in the MLflow run and TensorBoard folder it had."""
    import mlflow
    import yaml
    from _faults import install as install_faults

    from rank_search.search.sweep import launch, resume

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    install_faults(monkeypatch, experiment="r", at_epoch=1, markers=str(tmp_path))  # dies in epoch 2, once
    space = tmp_path / "tiny.yaml"
    space.write_text(yaml.safe_dump(TINY))
    out = launch(LaunchConfig(space=str(space), storage=str(tmp_path), name="r", num_samples=1, searcher="random",
                              warm_start=0, max_failures=0, log_to=("mlflow", "tensorboard")))
    assert out.counts == {"ERROR": 1}
    out = resume(out.path)
    assert out.complete and out.counts == {"TERMINATED": 1}

    exp = tmp_path / "r"
    client = mlflow.MlflowClient(f"sqlite:///{exp / tracking.MLFLOW_DB}")
    runs = client.search_runs([client.get_experiment_by_name("r").experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    history = client.get_metric_history(runs[0].info.run_id, schema.VAL_ACCURACY)
    assert [m.step for m in history] == [1, 2]  # epoch 1 before the crash, epoch 2 after resume
    (folder,) = (exp / tracking.TENSORBOARD_DIR).iterdir()
    assert [step for step, _ in _scalars(folder)[schema.VAL_ACCURACY]] == [1, 2]

"""Sweeps that survive what users do to them (issue 10): a killed sweep moved before its resume,
damaged Tune state, resume of a finished sweep, status after a kill, errors found before any
folder or Ray, impossible resources, booby-trapped pickles."""
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

from _experiments import booby_trap, hand_made

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


# -- item 1: a moved, interrupted sweep resumes once, every trial once ------------------------

@pytest.mark.slow
@pytest.mark.ray
def test_moved_killed_sweep_resumes_once_and_every_trial_finishes(killed_sweep, tmp_path) -> None:
    moved = tmp_path / "elsewhere" / "renamed"
    moved.parent.mkdir()
    shutil.move(killed_sweep, moved)  # `mv`: the launch location is gone
    before = finished_on_disk(str(moved))
    made_once = {f: Path(moved, f).read_bytes() for f in ("dense.pt", "sensitivity.csv")}

    resume = rank_search("resume", str(moved))
    assert resume.returncode == 0, resume.stderr[-3000:]
    assert "Unable to set up cluster storage" not in resume.stderr
    assert not os.path.exists(killed_sweep), "resume wrote to the launch location"
    assert_complete_once(str(moved))
    after = finished_on_disk(str(moved))
    for folder, text in before.items():
        assert after[folder] == text, f"finished trial {folder} was run again"
    for f, data in made_once.items():
        assert Path(moved, f).read_bytes() == data
    assert "training the dense reference" not in resume.stderr


# -- item 2: status, export and analyze unpickle nothing; resume says it does -----------------

def test_status_export_analyze_run_no_code_from_booby_trapped_pickles(tmp_path, capsys) -> None:
    exp = hand_made(tmp_path / "sweeps")
    marker = tmp_path / "code-ran"
    booby_trap(exp, marker)
    assert main(["status", str(exp)]) == 0
    assert main(["export", str(exp), "--out", str(tmp_path / "best.yaml")]) == 0
    assert main(["analyze", str(exp), "--out", str(tmp_path / "report")]) == 0
    capsys.readouterr()
    # --weights checks the compact file it copies with weights_only=True: refused, nothing written
    assert main(["export", str(exp), "--weights", "--out", str(tmp_path / "w.yaml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot be read safely" in err[0] and "compact.pt" in err[0]
    assert not (tmp_path / "w.yaml").exists() and not (tmp_path / "w.pt").exists()
    assert not marker.exists(), "a command ran code from a pickle"


def test_export_weights_copies_a_checked_compact_file(tmp_path, capsys) -> None:
    exp = hand_made(tmp_path / "sweeps")
    assert main(["export", str(exp), "--weights", "--out", str(tmp_path / "best.yaml")]) == 0
    from rank_search.checkpoint import load_compact

    assert type(load_compact(str(tmp_path / "best.pt"))).__name__ == "LeNet5"


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


@pytest.mark.parametrize("extra, expected", [
    (["--epochs", "1"], "posthoc from scratch trains dense for epochs - finetune_epochs"),
    (["--objectives", "bogus_metric:max,macs_compression:max"], "objective metric must be one every trial reports"),
    (["--objectives", "test_accuracy:max,macs_compression:max"], "got 'test_accuracy'"),
    (["--objectives", "val_accuracy:max,val_accuracy:min"], "must name each metric once"),
    (["--storage", "FILE"], "is a file, not a folder"),
    (["--storage", "FILE/below"], "cannot be created"),
    (["--storage", "/proc/rank-search-x"], "is not writable"),
    (["--storage", "file:///proc/rank-search-x"], "is not writable"),
    (["--name", "../escape"], "--name must be a plain folder name"),
    (["--resource", "CPU=1"], "--resource names a custom resource"),
    (["--resource", "slot=0"], "the amount must be > 0"),
    (["--max-failures", "-1"], "--max-failures must be >= 0"),
])
def test_launch_errors_come_before_any_folder_or_ray(tmp_path, capsys, monkeypatch, extra, expected) -> None:
    monkeypatch.chdir(tmp_path)
    space = tmp_path / "tiny.yaml"
    space.write_text(yaml.safe_dump(TINY))
    (tmp_path / "FILE").write_text("not a folder")
    extra = [e.replace("FILE", str(tmp_path / "FILE")) for e in extra]
    argv = ["launch", "--space", str(space), *(["--storage", str(tmp_path / "runs")] if "--storage" not in extra else []),
            *extra]
    before = sorted(os.listdir(tmp_path))
    line = _one_line_exit_2(capsys, argv)
    assert expected in line
    assert sorted(os.listdir(tmp_path)) == before, "a folder was left behind"


def test_demo_with_one_epoch_passes_the_preflight(tmp_path) -> None:
    """What a user tries first: every method of the demo runs in one epoch (posthoc fine-tunes its
    epoch from the dense reference)."""
    from rank_search.search import LaunchConfig
    from rank_search.search.sweep import preflight

    pre = preflight(LaunchConfig(space="demo", epochs=1, storage=str(tmp_path / "runs"), name="x"))
    assert pre.space.epochs == 1 and len(pre.space.methods) == 5
    assert not (tmp_path / "runs").exists()


# -- item 3: an existing experiment is refused at any URI -------------------------------------

@pytest.mark.parametrize("form", ["path", "file-uri", "file-uri-trailing-slash"])
def test_launch_refuses_an_existing_experiment_at_any_uri(tmp_path, capsys, form) -> None:
    exp = hand_made(tmp_path / "store")
    before = sorted(p.name for p in exp.iterdir())
    storage = {"path": str(exp.parent), "file-uri": exp.parent.as_uri(),
               "file-uri-trailing-slash": exp.parent.as_uri() + "/"}[form]
    space = tmp_path / "tiny.yaml"
    space.write_text(yaml.safe_dump(TINY))
    line = _one_line_exit_2(capsys, ["launch", "--space", str(space), "--storage", storage, "--name", "exp"])
    assert "already exists" in line and "rank-search resume" in line
    assert sorted(p.name for p in exp.iterdir()) == before


# -- item 5: damaged Tune state is a clear error, never extra trials --------------------------

def _tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("damage, expected", [
    (lambda text: text[: len(text) // 2], "not valid JSON"),
    (lambda text: "\x00\xff garbage", "not valid JSON"),
    (lambda text: json.dumps({"trial_data": [["{not json", "{}"]], "runner_data": {}}), "trial entry 0 is unreadable"),
    (lambda text: json.dumps({"stats": {}}), "no trial_data list"),
])
def test_resume_of_damaged_tune_state_is_one_line_exit_2(tmp_path, capsys, damage, expected) -> None:
    exp = hand_made(tmp_path / "sweeps", trials={"a": "TERMINATED", "b": "RUNNING"})
    (state,) = exp.glob("experiment_state-*.json")
    state.write_text(damage(state.read_text()))
    before = _tree(exp)
    line = _one_line_exit_2(capsys, ["resume", str(exp)])
    assert "experiment state" in line and state.name in line and expected in line
    assert _tree(exp) == before


def test_damaged_newest_state_names_the_previous_snapshot(tmp_path, capsys) -> None:
    exp = hand_made(tmp_path / "sweeps", trials={"a": "TERMINATED", "b": "RUNNING"})
    (state,) = exp.glob("experiment_state-*.json")
    newer = exp / "experiment_state-2026-02-02_00-00-00.json"
    newer.write_text(state.read_text()[:100])
    line = _one_line_exit_2(capsys, ["resume", str(exp)])
    assert newer.name in line and f"move it away to resume from the previous snapshot {state.name}" in line


@pytest.mark.slow
@pytest.mark.ray
def test_resume_of_a_killed_sweep_with_truncated_state_runs_nothing(killed_sweep, tmp_path) -> None:
    path = Path(copy_of(killed_sweep, tmp_path / "truncated"))
    for state in path.glob("experiment_state-*.json"):
        state.write_text(state.read_text()[:-200])
    folders = sorted(p.name for p in path.iterdir())
    resume = rank_search("resume", str(path))
    err = resume.stderr.strip().splitlines()
    assert resume.returncode == 2 and len(err) == 1 and "is damaged" in err[0], resume.stderr[-2000:]
    assert "Traceback" not in resume.stderr
    assert sorted(p.name for p in path.iterdir()) == folders, "resume made trials from damaged state"


# -- item 10: the aftermath of Ctrl-C or a kill -----------------------------------------------

def test_resume_of_a_finished_sweep_says_so_without_ray(tmp_path, capsys) -> None:
    import ray

    exp = hand_made(tmp_path / "sweeps")
    before = _tree(exp)
    assert main(["resume", str(exp)]) == 0
    captured = capsys.readouterr()
    assert "nothing to resume: all 2 trials" in captured.err
    assert not ray.is_initialized() and _tree(exp) == before


@pytest.mark.parametrize("driver, shown", [
    ({"host": "HOST", "pid": "DEAD"}, "INTERRUPTED"),  # kill -9: the record has no end
    ({"host": "HOST", "pid": "ME", "ended": "2026-01-01T00:00:00"}, "INTERRUPTED"),  # Ctrl-C: ended
    ({"host": "HOST", "pid": "ME"}, "RUNNING"),  # a live driver
    ({"host": "elsewhere", "pid": 1}, "RUNNING"),  # another host's driver: Tune's word stands
    # a damaged record: no pid the kernel could have given (status crashed on the huge one; 0 or a
    # negative pid would signal a process group): unknown, Tune's word stands
    ({"host": "HOST", "pid": 10 ** 30}, "RUNNING"),
    ({"host": "HOST", "pid": 0}, "RUNNING"),
    ({"host": "HOST", "pid": -1}, "RUNNING"),
    (None, "RUNNING"),  # an experiment from before the driver record
])
def test_status_shows_interrupted_trials_when_no_driver_runs(tmp_path, capsys, driver, shown) -> None:
    import socket

    exp = hand_made(tmp_path / "sweeps", trials={"a": "TERMINATED", "b": "RUNNING"})
    if driver is not None:
        dead = subprocess.Popen(["true"])
        dead.wait()
        record = {**driver, "host": socket.gethostname() if driver["host"] == "HOST" else driver["host"],
                  "pid": {"DEAD": dead.pid, "ME": os.getpid()}.get(driver["pid"], driver["pid"])}
        (exp / schema.DRIVER_FILE).write_text(json.dumps(record))
    assert main(["status", str(exp)]) == 0
    out = capsys.readouterr().out
    assert f"TERMINATED 1, {shown} 1" in out
    assert ("rank-search resume" in out) == (shown == "INTERRUPTED")


def test_progress_counter_counts_trials_finished_before_a_resume() -> None:
    from types import SimpleNamespace

    from rank_search.search.progress import ProgressPrinter

    printer = ProgressPrinter(total=6, epochs=2)
    done = [SimpleNamespace(status="TERMINATED") for _ in range(5)]
    last = SimpleNamespace(status="RUNNING", trial_id="x", config={"method": "full"}, last_result={})
    printer.on_trial_complete(0, done + [last], last)
    assert printer.finished == 6


# -- item 11: housekeeping --------------------------------------------------------------------

def test_export_refuses_an_existing_out_and_writes_with_the_umask(tmp_path, capsys) -> None:
    exp = hand_made(tmp_path / "sweeps")
    out = tmp_path / "best.yaml"
    old = os.umask(0o022)
    try:
        assert main(["export", str(exp), "--weights", "--out", str(out)]) == 0
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == 0o644 and (tmp_path / "best.pt").stat().st_mode & 0o777 == 0o644
    capsys.readouterr()
    out.write_text("mine")
    line = _one_line_exit_2(capsys, ["export", str(exp), "--out", str(out)])
    assert "already exists" in line and "--overwrite" in line and out.read_text() == "mine"
    (tmp_path / "other.pt").write_text("mine too")  # --weights would overwrite OUT.pt
    line = _one_line_exit_2(capsys, ["export", str(exp), "--weights", "--out", str(tmp_path / "other.yaml")])
    assert "other.pt" in line and not (tmp_path / "other.yaml").exists()
    assert main(["export", str(exp), "--out", str(out), "--overwrite"]) == 0 and out.read_text() != "mine"


def test_train_and_analyze_out_folders_follow_the_umask(tmp_path) -> None:
    from rank_search.cli._output import atomic_output_dir

    old = os.umask(0o022)
    try:
        with atomic_output_dir(str(tmp_path / "out")) as tmp:
            Path(tmp, "f").write_text("x")
    finally:
        os.umask(old)
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o755


def test_status_top_must_not_be_negative(tmp_path, capsys) -> None:
    exp = hand_made(tmp_path / "sweeps")
    assert "--top must be >= 0" in _one_line_exit_2(capsys, ["status", str(exp), "--top", "-1"])


# -- items 6 and 9: damaged result.json files are named, never read silently -----------------

@pytest.mark.parametrize("damage", ["binary", "truncated", "middle"])
def test_damaged_results_are_named_and_left_out(tmp_path, capsys, damage) -> None:
    exp = hand_made(tmp_path / "sweeps")  # trial b is the more accurate one
    result = exp / "trial_b" / "result.json"
    text = result.read_text()
    result.write_bytes({"binary": bytes(range(256)),
                        "truncated": text[: len(text) - 40].encode(),  # the final epoch's line cut
                        "middle": ("{oops\n" + text).encode()}[damage])
    assert main(["status", str(exp)]) == 0
    out = capsys.readouterr().out
    assert "damaged results: trial b (trial_b/result.json" in out
    assert main(["export", str(exp), "--pick", "max-accuracy", "--out", str(tmp_path / "best.yaml")]) == 0
    captured = capsys.readouterr()
    assert "damaged results: trial b" in captured.err
    exported = yaml.safe_load((tmp_path / "best.yaml").read_text())
    assert exported["provenance"]["trial_id"] == "a"  # not b's earlier epoch
    assert exported["metrics"][schema.TEST_ACCURACY] == 0.5
    assert main(["analyze", str(exp), "--out", str(tmp_path / "report")]) == 0


def test_a_line_being_written_by_a_running_trial_is_not_damage(tmp_path, capsys) -> None:
    exp = hand_made(tmp_path / "sweeps", trials={"a": "TERMINATED", "b": "RUNNING"})
    result = exp / "trial_b" / "result.json"
    result.write_text(result.read_text() + '{"epoch": 3, "val_acc')
    assert main(["status", str(exp)]) == 0
    assert "damaged" not in capsys.readouterr().out


# -- item 6: a damaged sweep record on resume; compact checkpoints that do not fit ------------

def test_load_compact_of_a_checkpoint_naming_another_model_or_no_plan(tmp_path) -> None:
    import torch

    from rank_search.checkpoint import load_compact
    from rank_search.errors import RankSearchError

    exp = hand_made(tmp_path / "sweeps")
    data = torch.load(next(exp.glob(f"trial_a/checkpoint_000001/{schema.COMPACT_WEIGHTS_FILE}")), weights_only=True)
    for change, match in [({"model": "resnet20"}, r"does not fit model 'resnet20'"),
                          ({"plan": None}, r"lacks plan"),
                          ({"in_channels": "one"}, r"in_channels \(str, not int\)"),
                          ({"model": "nope"}, r"unknown model 'nope'")]:
        broken = {**data, **change}
        if change.get("plan", 1) is None:
            del broken["plan"]
        torch.save(broken, tmp_path / "c.pt")
        with pytest.raises(RankSearchError, match=match):
            load_compact(str(tmp_path / "c.pt"))


# -- item 7: a trial no node can fit is refused at start, not left PENDING for ever ----------

@pytest.mark.ray
def test_impossible_resources_are_refused_right_after_ray_starts(tmp_path, capsys, monkeypatch) -> None:
    import ray

    import tempfile

    short = Path(tempfile.mkdtemp(prefix="rs-t-", dir="/tmp"))  # Ray's socket paths must stay short
    monkeypatch.setattr(tempfile, "tempdir", str(short))  # where the private Ray's folder goes
    space = tmp_path / "tiny.yaml"
    space.write_text(yaml.safe_dump({**TINY, "methods": {"factorized": {}}}))
    for extra, expected in [(["--cpus-per-trial", "64"], "CPU 64"), (["--resource", "fake_gpu=1"], "fake_gpu 1")]:
        start = time.time()
        code = main(["launch", "--space", str(space), "--storage", str(tmp_path / "runs"), "--name", "x", *extra])
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert code == 2 and len(err) == 1, err
        assert "no node of the Ray cluster can ever run a trial needing" in err[0] and expected in err[0]
        assert "the nodes have: " in err[0] and "CPU " in err[0].split("the nodes have: ")[1]
        assert time.time() - start < 120
        assert not (tmp_path / "runs" / "x").exists() and not ray.is_initialized()
        assert not any(p.name.startswith("rs-ray-") for p in short.iterdir()), "the private Ray's folder was left"
    shutil.rmtree(short, ignore_errors=True)


# -- items 10 and 11: Ctrl-C, then status, resume and resume again, as a user sees them -------

@pytest.mark.slow
@pytest.mark.ray
def test_ctrl_c_then_status_resume_and_resume_again(tmp_path) -> None:
    import tempfile

    short = Path(tempfile.mkdtemp(prefix="rs-t-", dir="/tmp"))  # $TMPDIR of the commands
    env = {**os.environ, "TMPDIR": str(short)}
    space = tmp_path / "slow.yaml"
    space.write_text(yaml.safe_dump(SLOW_SPACE))
    path = str(tmp_path / "runs" / "cc")
    trials = 3
    cmd = [sys.executable, "-m", "rank_search", "launch", "--space", str(space), "--num-samples", str(trials),
           "--max-concurrent", "1", "--storage", str(tmp_path / "runs"), "--name", "cc"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    try:
        wait_for(lambda: os.path.isdir(path) and len(finished_on_disk(path)) >= 1
                 and len(started_on_disk(path)) > len(finished_on_disk(path)), 600, "one trial done, one started")
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the terminal's whole process group
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    try:
        assert proc.returncode == 130, err[-3000:]
        assert err.count("rank-search resume") == 1 and "Tuner.restore" not in err, err[-3000:]
        for noise in ("Traceback", "FileNotFoundError", "TensorBoard", "Token authentication", "study created",
                      "Configuration for experiment"):
            assert noise not in err + out, noise

        status = rank_search("status", path)
        assert status.returncode == 0 and "RUNNING" not in status.stdout and "INTERRUPTED" in status.stdout

        resume = rank_search("resume", path)
        assert resume.returncode == 0, resume.stderr[-3000:]
        assert f"[{trials}/{trials}]" in resume.stderr, resume.stderr[-3000:]
        assert "Traceback" not in resume.stderr and "FileNotFoundError" not in resume.stderr, resume.stderr[-3000:]
        assert_complete_once(path, trials=trials)

        before = {p: p.stat().st_mtime_ns for p in Path(path).rglob("*") if p.is_file()}
        again = rank_search("resume", path, timeout=120)
        assert again.returncode == 0 and "nothing to resume" in again.stderr
        assert {p: p.stat().st_mtime_ns for p in Path(path).rglob("*") if p.is_file()} == before
        assert not any(p.name.startswith("rs-ray-") for p in short.iterdir()), "a private Ray's folder was left"
    finally:
        shutil.rmtree(short, ignore_errors=True)


# -- item 8: a trial created just before a kill is resumed, not orphaned and run again -------

def _snapshot_folders(path: str) -> set[str]:
    from rank_search.search.restore import read_tune_state

    state = read_tune_state(path)
    return set(state.folders.values()) if state else set()


@pytest.mark.slow
@pytest.mark.ray
def test_a_trial_started_just_before_a_kill_is_in_the_snapshot_and_resumed(tmp_path) -> None:
    space = tmp_path / "slow.yaml"
    space.write_text(yaml.safe_dump(SLOW_SPACE))
    path = str(tmp_path / "runs" / "orphan")
    cmd = [sys.executable, "-m", "rank_search", "launch", "--space", str(space), "--num-samples", "3",
           "--max-concurrent", "1", "--storage", str(tmp_path / "runs"), "--name", "orphan"]
    with open(tmp_path / "launch.log", "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:  # kill the moment the second trial's folder appears: before its first checkpoint
            end = time.time() + 600
            while time.time() < end and not (os.path.isdir(path) and len(started_on_disk(path)) >= 2):
                time.sleep(0.02)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    on_disk = started_on_disk(path)
    assert len(on_disk) >= 2
    assert on_disk <= _snapshot_folders(path), f"orphaned: {sorted(on_disk - _snapshot_folders(path))}"
    resume = rank_search("resume", path)
    assert resume.returncode == 0, resume.stderr[-3000:]
    assert_complete_once(path, trials=3)
    assert started_on_disk(path) == _snapshot_folders(path), "a trial folder Tune does not know"


def test_an_all_diverged_sweep_does_not_suggest_export(tmp_path, capsys) -> None:
    from rank_search.cli.launch import _finish
    from rank_search.search.sweep import SweepOutcome

    exp = hand_made(tmp_path / "sweeps")
    for result in exp.glob("trial_*/result.json"):
        rows = [json.loads(line) for line in result.read_text().splitlines()]
        rows[-1].update({schema.DIVERGED: True, schema.VAL_ACCURACY: 0.0})
        result.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert _finish(SweepOutcome(str(exp), True, {"TERMINATED": 2}, 2)) == 0
    captured = capsys.readouterr()
    assert "rank-search export" not in captured.out + captured.err
    assert "nothing to export" in captured.err


# -- a launch killed during its set-up (before its first trial): resume starts it ------------

@pytest.mark.ray
def test_resume_of_a_launch_stopped_before_its_first_trial_starts_it_once(private_ray, tmp_path, capsys) -> None:
    from search_spaces import SpaceSampler, get_space

    from rank_search.search import LaunchConfig
    from rank_search.search.check import check_space
    from rank_search.search.sweep import resume
    from rank_search.search.sweep_record import write_sweep_record
    from rank_search.search.tune_setup import make_searcher, study_storage
    from rank_search.search.warm_start import warm_start_points

    space_file = tmp_path / "tiny.yaml"
    space_file.write_text(yaml.safe_dump({**TINY, "methods": {"factorized": {}, "full": {}}}))
    path = str(tmp_path / "runs" / "early")
    cfg = LaunchConfig(space=str(space_file), num_samples=3, storage=str(tmp_path / "runs"), name="early")
    space = get_space(str(space_file))
    write_sweep_record(path, cfg, space.to_plain())
    # what the killed launch had made: its study with the warm start enqueued, Tune's pickle
    groups = check_space(space)
    make_searcher(cfg, SpaceSampler(space, groups, {}), points=warm_start_points(space, groups, 3),
                  storage=study_storage(path))
    Path(path, "tuner.pkl").write_bytes(b"half written")
    out = resume(path)
    assert out.complete and out.counts == {"TERMINATED": 3}, out
    assert "stopped before its first trial started" in capsys.readouterr().err
    assert_complete_once(path, trials=3)
    assert _journal_trials(path) == 3, "the stale warm start ran too"


def _journal_trials(path: str) -> int:
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    study = optuna.load_study(study_name="rank_search",
                              storage=JournalStorage(JournalFileBackend(os.path.join(path, "optuna_study.log"))))
    return len(study.trials)


# -- issue 27: `launch --dense D --profile P` resumes ---------------------------------------------

def test_the_record_of_a_dense_and_profile_launch_gives_a_config(tmp_path) -> None:
    from rank_search.search.sweep_record import config_from_record, read_sweep_record

    exp = hand_made(tmp_path / "sweeps")
    record = yaml.safe_load((exp / schema.SWEEP_FILE).read_text())
    record["launch"].update(dense=str(tmp_path / "gone.pt"), profile=str(tmp_path / "gone"))
    (exp / schema.SWEEP_FILE).write_text(yaml.safe_dump(record))
    cfg = config_from_record(read_sweep_record(str(exp)), path=str(exp))
    assert cfg.dense is None and cfg.profile is None  # the copies in the experiment are what a resume uses

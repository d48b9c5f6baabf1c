"""Resume after what users do to a sweep (issue 10): a killed sweep moved first, damaged or truncated
Tune state, a finished sweep, Ctrl-C then status and resume, a trial started just before a kill,
a launch stopped before its first trial, the record of a --dense --profile launch."""
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

from rank_search import schema
from rank_search.cli import main

from _experiments import hand_made

from _hardening import (SLOW_SPACE, TINY, _one_line_exit_2, _tree, assert_complete_once, copy_of,  # noqa: F401
                        finished_on_disk, killed_sweep, rank_search, started_on_disk, wait_for)  # (fixtures)


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


@pytest.mark.slow
@pytest.mark.ray
def test_resume_of_a_sweep_saved_by_another_version_is_one_line(killed_sweep, tmp_path) -> None:
    path = Path(copy_of(killed_sweep, tmp_path / "older"))
    tuner = path / "tuner.pkl"
    data = tuner.read_bytes()
    assert b"search_spaces._codec" in data
    tuner.write_bytes(data.replace(b"search_spaces._codec", b"search_spaces._nocod"))  # a module renamed since
    trials, saved = sorted(path.glob("trial_*")), tuner.read_bytes()
    resume = rank_search("resume", str(path))
    errors = [line for line in resume.stderr.splitlines() if "error:" in line]  # after the progress lines
    assert resume.returncode == 2 and len(errors) == 1, resume.stderr[-2000:]
    assert "launched by another version" in errors[0] and "search_spaces._nocod" in errors[0]
    assert resume.stderr.strip().splitlines()[-1] == errors[0] and "Traceback" not in resume.stderr
    assert sorted(path.glob("trial_*")) == trials and tuner.read_bytes() == saved  # nothing run, nothing lost


# -- item 10: the aftermath of Ctrl-C or a kill -----------------------------------------------
def test_resume_of_a_finished_sweep_says_so_without_ray(tmp_path, capsys) -> None:
    import ray

    exp = hand_made(tmp_path / "sweeps")
    before = _tree(exp)
    assert main(["resume", str(exp)]) == 0
    captured = capsys.readouterr()
    assert "nothing to resume: all 2 trials" in captured.err
    assert not ray.is_initialized() and _tree(exp) == before


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
        hint = f"{sys.executable} -m rank_search resume"  # the hint repeats how the sweep was launched
        assert err.count(hint) == 1 and "Tuner.restore" not in err, err[-3000:]
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
    assert not Path(path, "orphaned").exists()


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


def test_trial_folders_the_snapshot_does_not_list_are_set_aside_not_deleted(tmp_path) -> None:
    from rank_search.search.restore import ORPHANED_DIR, read_tune_state, set_aside_orphans

    exp = hand_made(tmp_path / "sweeps", trials={"a": "TERMINATED", "b": "RUNNING"})
    listed = sorted(n for n in os.listdir(exp) if n.startswith("trial_"))
    (exp / "trial_zzzz").mkdir()
    (exp / "trial_zzzz" / "params.json").write_text("{}")
    (exp / "trial_note.txt").write_text("a file, not a trial folder")
    moved = set_aside_orphans(str(exp), read_tune_state(str(exp)))
    assert moved == ["trial_zzzz"]
    assert sorted(n for n in os.listdir(exp) if n.startswith("trial_") and (exp / n).is_dir()) == listed
    assert (exp / ORPHANED_DIR / "trial_zzzz" / "params.json").read_text() == "{}"
    assert set_aside_orphans(str(exp), read_tune_state(str(exp))) == []


@pytest.mark.slow
@pytest.mark.ray
def test_an_orphaned_study_trial_and_folder_after_a_kill_run_once_as_the_next_trial(killed_sweep, tmp_path) -> None:
    """What a resume from an older snapshot meets: a RUNNING study trial the restored searcher
    does not know and a trial folder Tune's snapshot does not list."""
    import optuna

    path = copy_of(killed_sweep, tmp_path / "orphaned-sweep")
    journal = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(
        os.path.join(path, schema.STUDY_FILE)))
    study = optuna.load_study(study_name="rank_search", storage=journal)
    first = study.trials[0]
    study.enqueue_trial(first.params)
    orphan = study.ask(fixed_distributions=first.distributions)  # RUNNING, with the first trial's parameters
    Path(path, "trial_0rphan00").mkdir()
    Path(path, "trial_0rphan00", "params.json").write_text(json.dumps(first.params))

    resume = rank_search("resume", path)
    assert resume.returncode == 0, resume.stderr[-3000:]
    assert "1 trial folder(s) Tune's snapshot does not list moved to orphaned/" in resume.stderr
    assert_complete_once(path)
    assert started_on_disk(path) == _snapshot_folders(path)
    assert Path(path, "orphaned", "trial_0rphan00", "params.json").is_file()
    trials = optuna.load_study(study_name="rank_search", storage=journal).trials
    assert trials[orphan.number].state == optuna.trial.TrialState.FAIL
    again = [t for t in trials if t.user_attrs.get("rank_search_reclaims") == orphan.number]
    assert len(again) == 1 and again[0].state == optuna.trial.TrialState.COMPLETE
    assert again[0].params == first.params

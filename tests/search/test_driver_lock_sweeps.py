"""One driver per sweep and `--dense --profile` resume, on real sweeps (issue 27): a sweep
killed with one trial finished and one running; two `resume`s at once (the second refused, every
trial once), a `resume` while the launch runs (refused), and a `launch --dense D --profile P`
killed and resumed. Synthetic data and a made-up profile keep them short."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rank_search import schema

from test_finite_inputs import BUDGET, _dense, _profile
from _hardening import assert_complete_once, finished_on_disk, rank_search, started_on_disk, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.ray]

TINY = {
    "model": "lenet5", "dataset": "synthetic", "epochs": 3,
    "methods": {"factorized": {}, "full": {}},
    "train": {"lr": {"float": [0.02, 0.1], "log": True}},
    "ranks": {"grouping": "per_layer", "ratio": {"float": [0.1, 0.9]}},
}
TRIALS = 4


def _launch(tmp_path: Path, space: dict, name: str, *extra: str, trials: int = TRIALS) -> tuple[list[str], str]:
    file = tmp_path / f"{name}.yaml"
    file.write_text(yaml.safe_dump(space))
    cmd = [sys.executable, "-m", "rank_search", "launch", "--space", str(file), "--num-samples", str(trials),
           "--max-concurrent", "1", "--storage", str(tmp_path / "runs"), "--name", name, *extra]
    return cmd, str(tmp_path / "runs" / name)


def _killed(tmp_path: Path, space: dict, name: str, *extra: str) -> str:
    """The folder of a launch killed (-9, its whole process group) with one trial finished and
    one started."""
    cmd, path = _launch(tmp_path, space, name, *extra)
    with open(tmp_path / f"{name}.log", "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for(lambda: os.path.isdir(path) and len(finished_on_disk(path, epochs=space["epochs"])) >= 1
                     and len(started_on_disk(path)) > len(finished_on_disk(path, epochs=space["epochs"])),
                     900, "one finished trial and one started")
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return path


def _holder(path: str) -> dict:
    from rank_search.search.lock import read_holder

    return read_holder(path) or {}


def test_two_concurrent_resumes_the_second_is_refused_and_every_trial_runs_once(tmp_path) -> None:
    path = _killed(tmp_path, TINY, "twice")
    before = finished_on_disk(path, epochs=TINY["epochs"])
    first = subprocess.Popen([sys.executable, "-m", "rank_search", "resume", path], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: _holder(path).get("pid") == first.pid, 300, "the first resume to lock the experiment")
        second = rank_search("resume", path, timeout=300)
        err = second.stderr.strip().splitlines()
        assert second.returncode == 2 and len(err) == 1, second.stderr[-3000:]
        assert f"pid {first.pid}" in err[0] and "one driver per sweep" in err[0]
        _, first_err = first.communicate(timeout=900)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, first_err[-3000:]
    assert "is gone: this one takes over" in first_err  # the killed launch's lock
    assert_complete_once(path, trials=TRIALS, epochs=TINY["epochs"])
    after = finished_on_disk(path, epochs=TINY["epochs"])
    assert all(after[f] == text for f, text in before.items()), "a finished trial ran again"
    assert not Path(path, "rank_search.lock").exists()


def test_a_resume_while_the_launch_runs_is_refused_and_the_launch_finishes_once(tmp_path) -> None:
    # long enough that the launch still runs when the resume, seconds of imports later, looks
    cmd, path = _launch(tmp_path, {**TINY, "epochs": 4}, "busy", trials=6)
    launch = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: os.path.isdir(path), 900, "the launch's experiment folder")
        resume = rank_search("resume", path, timeout=300)
        err = resume.stderr.strip().splitlines()
        assert resume.returncode == 2 and len(err) == 1, resume.stderr[-3000:]
        assert f"pid {launch.pid}" in err[0] and "one driver per sweep" in err[0]
        _, launch_err = launch.communicate(timeout=900)
    finally:
        if launch.poll() is None:
            launch.kill()
    assert launch.returncode == 0, launch_err[-3000:]
    assert_complete_once(path, trials=6, epochs=4)


def test_a_dense_and_profile_sweep_killed_then_resumed_runs_every_trial_once(tmp_path) -> None:
    dense = _dense(tmp_path / "given.pt")
    given = _profile(tmp_path / "given")
    space = {**BUDGET, "epochs": 3, "ranks": {**BUDGET["ranks"], "proxy": "energy"}}
    path = _killed(tmp_path, space, "given", "--dense", dense, "--profile", given)
    before = finished_on_disk(path, epochs=3)
    resume = rank_search("resume", path)
    assert resume.returncode == 0, resume.stderr[-3000:]
    assert "needs --dense" not in resume.stderr and "training the dense reference" not in resume.stderr
    assert_complete_once(path, trials=TRIALS, epochs=3)
    assert all(finished_on_disk(path, epochs=3)[f] == text for f, text in before.items())
    assert Path(path, schema.PROFILE_FILE).read_bytes() == Path(given, schema.PROFILE_FILE).read_bytes()

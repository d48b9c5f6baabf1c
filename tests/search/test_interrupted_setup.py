"""Ctrl-C (SIGINT to the process group, as a terminal sends it) or SIGTERM (as a scheduler
sends it) while a launch trains its dense reference (issue 28): the experiment folder is kept, the
resume command printed, and `resume` finishes the sweep, every trial once."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from rank_search import schema

BUDGET = {
    "model": "lenet5", "dataset": "synthetic", "epochs": 2,
    "methods": {"posthoc": {}, "factorized": {}},
    "train": {"lr": {"float": [0.05, 0.2], "log": True}},
    "ranks": {"allocation": "sensitivity", "target": {"float": [1.5, 3.0], "log": True}, "proxy": "energy"},
}


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_a_signal_while_the_dense_reference_trains_keeps_a_folder_resume_finishes(tmp_path, sig) -> None:
    from _hardening import assert_complete_once

    space = tmp_path / "budget.yaml"
    space.write_text(yaml.safe_dump(BUDGET))
    path = str(tmp_path / "runs" / "early")
    log = tmp_path / "launch.err"
    cmd = [sys.executable, "-m", "rank_search", "launch", "--space", str(space), "--num-samples", "3",
           "--max-concurrent", "1", "--storage", str(tmp_path / "runs"), "--name", "early"]
    with open(log, "w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
        try:
            end = time.time() + 600
            while time.time() < end and "training the dense reference" not in log.read_text():
                time.sleep(0.05)
            assert "training the dense reference" in log.read_text(), log.read_text()[-2000:]
            os.killpg(proc.pid, sig) if sig == signal.SIGINT else proc.send_signal(sig)
            proc.wait(timeout=300)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    text = log.read_text()
    assert proc.returncode == 130, text[-3000:]
    assert f"rank-search resume {path}" in text and "Traceback" not in text, text[-3000:]
    assert Path(path, schema.SWEEP_FILE).is_file(), "the launch's folder is gone"
    assert not any(Path(path).glob("trial_*")), "a trial started after the signal"

    resume = subprocess.run([sys.executable, "-m", "rank_search", "resume", path], capture_output=True, text=True,
                            timeout=900)
    assert resume.returncode == 0, resume.stderr[-3000:]
    assert "stopped before its first trial started" in resume.stderr
    assert_complete_once(path, trials=3)


# -- the same decisions in-process, without Ray (fast) ---------------------------------------

@pytest.fixture
def no_ray(monkeypatch):
    """``launch`` with Ray's part replaced: no cluster start, every node fits."""
    from contextlib import nullcontext

    import rank_search.search.sweep as sweep

    monkeypatch.setattr(sweep, "ray_session", lambda *a, **k: nullcontext(True))
    monkeypatch.setattr(sweep, "check_resources", lambda cfg: None)
    return sweep


def _interrupt(*args, **kwargs):
    raise KeyboardInterrupt


def test_ctrl_c_during_the_set_up_keeps_the_folder_and_names_the_resume(tmp_path, capsys, no_ray,
                                                                        monkeypatch) -> None:
    from rank_search.cli import main

    monkeypatch.setattr(no_ray, "prepare_references", _interrupt)
    space = tmp_path / "budget.yaml"
    space.write_text(yaml.safe_dump(BUDGET))
    code = main(["launch", "--space", str(space), "--storage", str(tmp_path / "runs"), "--name", "x"])
    err = capsys.readouterr().err
    path = tmp_path / "runs" / "x"
    assert code == 130 and f"rank-search resume {path}" in err, err
    assert (path / schema.SWEEP_FILE).is_file() and not (path / "rank_search.lock").exists()


def test_ctrl_c_before_the_folder_exists_says_nothing_was_kept(tmp_path, capsys, no_ray, monkeypatch) -> None:
    from rank_search.cli import main

    monkeypatch.setattr(no_ray, "check_resources", _interrupt)
    space = tmp_path / "budget.yaml"
    space.write_text(yaml.safe_dump(BUDGET))
    code = main(["launch", "--space", str(space), "--storage", str(tmp_path / "runs"), "--name", "x"])
    err = capsys.readouterr().err
    assert code == 130 and "before its experiment folder was made: nothing was kept" in err, err
    assert not (tmp_path / "runs" / "x").exists()


def test_a_failure_during_the_set_up_still_removes_the_folder(tmp_path, capsys, no_ray, monkeypatch) -> None:
    from rank_search.cli import main
    from rank_search.errors import RankSearchError

    def fail(*args, **kwargs):
        raise RankSearchError("the dense reference diverged")

    monkeypatch.setattr(no_ray, "prepare_references", fail)
    space = tmp_path / "budget.yaml"
    space.write_text(yaml.safe_dump(BUDGET))
    assert main(["launch", "--space", str(space), "--storage", str(tmp_path / "runs"), "--name", "x"]) == 2
    assert "the dense reference diverged" in capsys.readouterr().err
    assert not (tmp_path / "runs" / "x").exists()

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

pytestmark = [pytest.mark.slow, pytest.mark.ray]

BUDGET = {
    "model": "lenet5", "dataset": "synthetic", "epochs": 2,
    "methods": {"posthoc": {}, "factorized": {}},
    "train": {"lr": {"float": [0.05, 0.2], "log": True}},
    "ranks": {"allocation": "sensitivity", "target": {"float": [1.5, 3.0], "log": True}, "proxy": "energy"},
}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_a_signal_while_the_dense_reference_trains_keeps_a_folder_resume_finishes(tmp_path, sig) -> None:
    from test_hardening import assert_complete_once

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

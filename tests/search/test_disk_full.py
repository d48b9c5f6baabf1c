"""A full disk mid-sweep (issue 27): the driver stops with one line, the sweep record stays whole,
and after space is freed `resume` rolls back the journal record the full disk cut and finishes
every trial once, finished results unchanged. The full disk is injected into the Optuna journal's
writer of the launch process (its second trial completion writes half a line, then ENOSPC); a
record cut by a kill is added before the resume."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rank_search import schema

pytestmark = [pytest.mark.slow, pytest.mark.ray]

TINY = {
    "model": "lenet5", "dataset": "synthetic", "epochs": 2,
    "methods": {"factorized": {}, "full": {}},
    "train": {"lr": {"float": [0.02, 0.1], "log": True}},
    "ranks": {"grouping": "per_layer", "ratio": {"float": [0.1, 0.9]}},
}

FULL_DISK = '''
import errno, json, sys
from optuna.storages.journal import JournalFileBackend

real = JournalFileBackend.append_logs
told = []

def append_logs(self, logs):
    if any(log.get("state") == 1 and log.get("values") is not None for log in logs):
        told.append(1)
        if len(told) == 2:  # the second trial completion: half a line reaches the disk, then ENOSPC
            line = json.dumps(logs[0], separators=(",", ":"))
            with open(self._file_path, "ab") as fh:
                fh.write(line[: len(line) // 2].encode())
            raise OSError(errno.ENOSPC, "No space left on device", self._file_path)
    return real(self, logs)

JournalFileBackend.append_logs = append_logs
from rank_search.cli import main
sys.exit(main(sys.argv[1:]))
'''


def _run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=900)


def test_enospc_mid_sweep_stops_in_one_line_and_resume_finishes_every_trial_once(tmp_path) -> None:
    from analysis.loading import load_experiment
    from _hardening import assert_complete_once, finished_on_disk

    space = tmp_path / "tiny.yaml"
    space.write_text(yaml.safe_dump(TINY))
    path = str(tmp_path / "runs" / "full")
    launch = _run("-c", FULL_DISK, "launch", "--space", str(space), "--num-samples", "4", "--max-concurrent", "1",
                  "--storage", str(tmp_path / "runs"), "--name", "full", "--epochs", "2")
    last = launch.stderr.strip().splitlines()[-1]
    assert launch.returncode == 2, launch.stderr[-3000:]
    assert "Traceback" not in launch.stderr and "no space left on the device" in last, launch.stderr[-3000:]
    assert f"rank-search resume {path}" in last
    record = yaml.safe_load(Path(path, schema.SWEEP_FILE).read_text())
    assert record["launch"]["num_samples"] == 4
    journal = Path(path, schema.STUDY_FILE)
    assert journal.read_bytes().endswith(b"\n"), "the driver left the record the full disk cut"
    before = finished_on_disk(path)
    with open(journal, "ab") as fh:  # and as a kill in the middle of an append would leave it
        fh.write(b'{"op_code":6,"worker_id":"x","trial_id":1,"sta')

    resume = _run("-m", "rank_search", "resume", path)
    assert resume.returncode == 0, resume.stderr[-3000:]
    assert "rolled back to the last complete record" in resume.stderr
    assert list(Path(path).glob(f"{schema.STUDY_FILE}.torn-*"))
    assert_complete_once(path, trials=4)
    after = finished_on_disk(path)
    assert all(after[f] == text for f, text in before.items()), "a finished trial ran again"
    assert len(load_experiment(path).trials) == 4

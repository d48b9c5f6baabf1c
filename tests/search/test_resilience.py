"""Sweeps under fire (issue 10, slow): a worker node lost mid-sweep on a real two-process Ray
cluster on loopback, and ten ``kill -9``s of the launch/resume process group at random moments
of one sweep. Only processes these tests start are stopped (by their session), never `ray stop`."""
from __future__ import annotations

import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from analysis.loading import epoch_history, load_experiment

from _hardening import SLOW_SPACE, assert_complete_once, finished_on_disk, rank_search, started_on_disk, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.ray]

RAY = str(Path(sys.executable).parent / "ray")


def _session_pids(sid: int) -> list[int]:
    """Every live process of session ``sid`` (a session this test started)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path("/proc", entry, "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid and fields[0] != "Z":
                pids.append(int(entry))
    return pids


def _kill_session(proc: subprocess.Popen) -> None:
    for pid in _session_pids(proc.pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.2", 0))
        return s.getsockname()[1]


def _ray_start(args: list[str], log: Path, env: dict) -> subprocess.Popen:
    proc = subprocess.Popen([RAY, "start", "--block", "--disable-usage-stats", *args], env=env,
                            stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)
    wait_for(lambda: "block forever" in log.read_text() or proc.poll() is not None, 180, f"ray start ({log.name})")
    assert proc.poll() is None, log.read_text()[-3000:]
    return proc


def test_a_lost_worker_node_mid_sweep_and_the_sweep_completes_on_the_head(tmp_path) -> None:
    token = tmp_path / "token"
    token.write_text(secrets.token_hex(32))
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    temp = Path(tempfile.mkdtemp(prefix="rsn-", dir="/tmp"))  # Ray's socket paths must stay short
    port = _free_port()
    address = f"127.0.0.2:{port}"
    space = tmp_path / "slow.yaml"
    space.write_text(yaml.safe_dump(SLOW_SPACE))
    shared = tmp_path / "shared"  # on one machine a local folder is storage every node shares
    path = str(shared / "nodeloss")
    trials = 4
    head = worker = launch = None
    try:
        head = _ray_start(["--head", "--node-ip-address=127.0.0.2", f"--port={port}", "--num-cpus=1",
                           "--include-dashboard=false", f"--temp-dir={temp}/h"], tmp_path / "head.log", env)
        worker = _ray_start([f"--address={address}", "--node-ip-address=127.0.0.2", "--num-cpus=1",
                             f"--temp-dir={temp}/w"], tmp_path / "worker.log", env)
        launch = subprocess.Popen(
            [sys.executable, "-m", "rank_search", "launch", "--space", str(space), "--num-samples", str(trials),
             "--max-concurrent", "2", "--address", address, "--storage", str(shared), "--name", "nodeloss",
             "--max-failures", "2"],
            env=env, stdout=open(tmp_path / "launch.out", "w"), stderr=open(tmp_path / "launch.err", "w"),
            start_new_session=True)

        def both_training() -> bool:  # two trials at once: one on each node, each past a checkpoint
            if not os.path.isdir(path):
                return False
            running = started_on_disk(path) - set(finished_on_disk(path))
            return len(running) >= 2 and all(any(Path(path, t).glob("checkpoint_*")) for t in running)

        wait_for(lambda: both_training() or launch.poll() is not None, 900, "two trials training")
        assert launch.poll() is None, (tmp_path / "launch.err").read_text()[-3000:]
        _kill_session(worker)  # the node is gone: raylet, its workers, everything it started
        worker = None
        launch.wait(timeout=1200)
        err = (tmp_path / "launch.err").read_text()
        assert launch.returncode == 0, err[-3000:]
    finally:
        for proc in (launch, worker, head):
            if proc is not None:
                _kill_session(proc)
        shutil.rmtree(temp, ignore_errors=True)
    assert_complete_once(path, trials=trials)
    exp = load_experiment(path)
    lost = exp.trials[exp.trials["num_failures"] >= 1]
    assert len(lost) >= 1, "no trial was on the lost node"
    nodes = set()
    for folder in exp.trials["folder"]:
        nodes |= {r["node_id"] for r in epoch_history(path, folder)}
    assert len(nodes) == 2, "the trials did not use both nodes"
    for folder in lost["folder"]:
        history = epoch_history(path, folder)
        assert history[0]["node_id"] != history[-1]["node_id"], f"{folder} did not move to the head"


def _journal_completed(path: str) -> int:
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    study = optuna.load_study(study_name="rank_search",
                              storage=JournalStorage(JournalFileBackend(os.path.join(path, "optuna_study.log"))))
    return sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)


def _progress(path: str) -> int:
    """Epoch checkpoints written so far (the newest index of each trial: Tune keeps only the last two)."""
    total = 0
    for trial in Path(path).glob("trial_*"):
        indices = [int(c.name.split("_")[1]) for c in trial.glob("checkpoint_*") if c.name.split("_")[1].isdigit()]
        total += max(indices) + 1 if indices else 0
    return total


def test_ten_kills_at_random_moments_then_a_resume_loses_nothing_and_runs_nothing_twice(tmp_path) -> None:
    """Half the kills land at any moment (set-up, restore, training), half a few seconds after the
    session made progress (so trials finish between kills whatever the machine's load)."""
    rng = random.Random(int(os.environ.get("RANK_SEARCH_STRESS_SEED", "10")))
    space = tmp_path / "slow.yaml"
    space.write_text(yaml.safe_dump({**SLOW_SPACE, "epochs": 4}))
    path = str(tmp_path / "runs" / "stress")
    trials, epochs = 24, 4  # enough work that ten sessions cannot finish it even on a quiet machine
    launch = [sys.executable, "-m", "rank_search", "launch", "--space", str(space), "--num-samples", str(trials),
              "--max-concurrent", "2", "--storage", str(tmp_path / "runs"), "--name", "stress"]
    resume = [sys.executable, "-m", "rank_search", "resume", path]
    finished: dict[str, str] = {}
    log = []
    kills = 0
    while kills < 10:
        cmd = launch if not os.path.isdir(path) else resume
        anytime = rng.random() < 0.5
        delay = rng.uniform(2.0, 25.0) if anytime else rng.uniform(0.0, 3.0)
        before = _progress(path) if os.path.isdir(path) else 0
        start = time.time()
        with open(tmp_path / f"run{len(log)}.log", "w") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
            if not anytime:  # wait for this session's first new checkpoint
                while proc.poll() is None and time.time() - start < 600 and (
                        not os.path.isdir(path) or _progress(path) <= before):
                    time.sleep(0.2)
            try:
                proc.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                pass
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                kills += 1
            _kill_session(proc)  # also what the group kill missed
        log.append((cmd[3], "any" if anytime else "after-progress", round(time.time() - start, 1), proc.returncode))
        assert proc.returncode in (0, -signal.SIGKILL, 130), f"a run failed by itself: {log}"
        assert len(log) < 40, f"no end in sight: {log}"
        if os.path.isdir(path):
            for folder, text in finished_on_disk(path, epochs).items():
                assert finished.setdefault(folder, text) == text, f"finished trial {folder} changed after {log}"
        if proc.returncode == 0:
            break  # the sweep finished between kills
    (tmp_path / "stress.json").write_text(json.dumps(log))
    final = rank_search("resume", path, timeout=1500)
    assert final.returncode == 0, final.stderr[-3000:]
    print(f"stress: {kills} kills, {len(finished)} trials finished between them; {log}; final resume: "
          f"{final.stderr.strip().splitlines()[-1:]}")
    assert kills == 10, f"the sweep finished after only {kills} kills: {log}"
    assert finished, f"no trial finished between the kills, so none could be checked for a re-run: {log}"
    assert_complete_once(path, trials=trials, epochs=epochs)
    after = finished_on_disk(path, epochs)
    for folder, text in finished.items():
        assert after[folder] == text, f"finished trial {folder} was run again"
    assert _journal_completed(path) == trials

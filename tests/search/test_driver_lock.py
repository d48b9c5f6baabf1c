"""One driver per sweep (issue 27): a second `resume`, or a `resume` while the launch runs, is
refused in one line naming the running driver; a stale lock or lease is taken over and said so.
Fast: the other driver is a small process holding the lock, not a sweep (the real sweeps are in
test_driver_lock_sweeps.py)."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rank_search.cli import main
from rank_search.search import lock as lock_module
from rank_search.search.lock import LOCK_FILE, DriverLock

from _experiments import hand_made

HOLD = ("import sys, time; from rank_search.search.lock import DriverLock; "
        "l = DriverLock.acquire(sys.argv[1]); print('held', flush=True); time.sleep(600)")


def _holder(path: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def _tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_resume_while_another_driver_holds_the_experiment_is_refused_in_one_line(tmp_path, capsys) -> None:
    import ray

    exp = hand_made(tmp_path / "sweeps", trials={"a": "TERMINATED", "b": "RUNNING"})
    proc = _holder(exp)
    try:
        before = _tree(exp)
        code = main(["resume", str(exp)])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1, err
        assert f"pid {proc.pid}" in err[0] and f"host {socket.gethostname()}" in err[0] and "since" in err[0]
        assert "one driver per sweep" in err[0]
        assert not ray.is_initialized() and _tree(exp) == before
    finally:
        proc.kill()
        proc.wait()


def test_a_lock_whose_driver_was_killed_is_taken_over_and_said_so(tmp_path, capsys) -> None:
    proc = _holder(tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with DriverLock.acquire(str(tmp_path)) as held:
        err = capsys.readouterr().err
        assert f"pid {proc.pid}" in err and "is gone: this one takes over" in err
        assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid() == held.holder["pid"]
    # released cleanly, the file goes with the lock: the next driver takes it without a word
    assert not (tmp_path / LOCK_FILE).exists()
    with DriverLock.acquire(str(tmp_path)):
        assert capsys.readouterr().err == ""


def test_the_same_process_cannot_take_the_lock_twice(tmp_path) -> None:
    with DriverLock.acquire(str(tmp_path)):
        with pytest.raises(Exception, match="one driver per sweep"):
            DriverLock.acquire(str(tmp_path))


def test_a_driver_that_opened_the_file_before_its_holder_released_it_locks_the_new_one(tmp_path) -> None:
    """The holder unlinks the file as it releases it; a driver holding the old file's descriptor
    must not think it holds the lock while a third locks the new file."""
    import fcntl

    first = DriverLock.acquire(str(tmp_path))
    stale = os.open(tmp_path / LOCK_FILE, os.O_RDWR)  # opened before the release
    first.release()
    fcntl.flock(stale, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the old inode is free now
    with DriverLock.acquire(str(tmp_path)) as second:  # locks the file at the path, not the old inode
        assert os.stat(tmp_path / LOCK_FILE).st_ino == os.fstat(second._fd).st_ino
        with pytest.raises(Exception, match="one driver per sweep"):
            DriverLock.acquire(str(tmp_path))
    os.close(stale)


def _lease(path: Path, **fields) -> None:
    (path / LOCK_FILE).write_text(json.dumps({"host": "other-host", "pid": 4242, "since": "2026-01-01T00:00:00",
                                              "token": "x", "renewed": time.time(), "lease_s": 90.0, **fields}))


def test_a_live_lease_refuses_an_expired_or_dead_one_is_taken_over(tmp_path, capsys) -> None:
    _lease(tmp_path)
    with pytest.raises(Exception, match=r"host other-host, pid 4242, since 2026-01-01T00:00:00"):
        DriverLock.acquire(str(tmp_path), lease=True)
    _lease(tmp_path, renewed=time.time() - 1000)  # not renewed for 1000 s: its driver is gone
    with DriverLock.acquire(str(tmp_path), lease=True):
        assert "has expired: this driver takes over" in capsys.readouterr().err
        mine = json.loads((tmp_path / LOCK_FILE).read_text())
        assert mine["pid"] == os.getpid() and mine["renewed"] > time.time() - 60
    assert not (tmp_path / LOCK_FILE).exists()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _lease(tmp_path, host=socket.gethostname(), pid=dead.pid)  # fresh, but its pid is dead on this host
    with DriverLock.acquire(str(tmp_path), lease=True):
        assert "takes over" in capsys.readouterr().err


def test_a_lease_is_renewed_while_the_driver_runs(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(lock_module, "RENEW_S", 0.05)
    with DriverLock.acquire(str(tmp_path), lease=True):
        first = json.loads((tmp_path / LOCK_FILE).read_text())["renewed"]
        time.sleep(0.5)
        assert json.loads((tmp_path / LOCK_FILE).read_text())["renewed"] > first


def test_a_file_uri_experiment_is_locked_like_a_folder(tmp_path, capsys) -> None:
    proc = _holder(tmp_path)
    try:
        with pytest.raises(Exception, match=f"pid {proc.pid}"):
            DriverLock.acquire(tmp_path.as_uri())
    finally:
        proc.kill()
        proc.wait()


def test_a_folder_locked_before_its_rename_releases_the_file_where_it_ends_up(tmp_path) -> None:
    tmp, final = tmp_path / ".x.partial-1", tmp_path / "x"
    tmp.mkdir()
    lock = DriverLock.acquire(str(final), folder=str(tmp))
    os.rename(tmp, final)
    with pytest.raises(Exception, match="one driver per sweep"):
        DriverLock.acquire(str(final))
    lock.release()
    assert not (final / LOCK_FILE).exists()

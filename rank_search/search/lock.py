"""One driver per sweep: `launch` and `resume` hold an exclusive lock on the experiment.

* A local experiment (a path or ``file://``) is locked with ``fcntl.flock`` on
  ``rank_search.lock`` in its folder: the kernel frees it when the driver dies, however it dies.
  The file also names the holder (host, pid, since), so a refused driver can say who runs.
* An experiment on an object store (``s3://``, ``gs://``, ...), or on a file system that refuses
  ``flock``, holds a lease in the same file instead: host, pid, since and when it was last
  renewed; a thread renews it every ``RENEW_S`` seconds, and a lease not renewed for
  ``LEASE_S`` seconds (or one whose pid is dead on this host) is stale. *our choice*: object
  stores have no compare-and-swap through pyarrow, so the lease is written, then read back to
  check that this driver won; two drivers started within the same second may still both pass.

A second driver is refused in one line naming the running one; a stale lock is taken over and
said so in one line. No ray, no torch.
"""
from __future__ import annotations

import datetime as _dt
import errno
import json
import os
import socket
import threading
import time
import uuid
from typing import Any

from ..errors import RankSearchError
from ..schema import is_uri
from ..storage import Location

LOCK_FILE = "rank_search.lock"
LEASE_S = 90.0  # a lease not renewed for this long is stale
RENEW_S = 20.0


def _now() -> str:
    return _dt.datetime.now().isoformat(timespec="seconds")


def _holder_text(holder: dict[str, Any] | None) -> str:
    if not isinstance(holder, dict):
        return "host ?, pid ?, since ?"
    return f"host {holder.get('host', '?')}, pid {holder.get('pid', '?')}, since {holder.get('since', '?')}"


def _pid_alive(pid: Any) -> bool | None:
    """Whether ``pid`` runs on this host; None when that cannot be told (not a plausible pid)."""
    if isinstance(pid, bool) or not isinstance(pid, int) or not 0 < pid < 2**31:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _parse(text: str) -> dict[str, Any] | None:
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _refused(path: str, holder: dict | None) -> RankSearchError:
    return RankSearchError(f"experiment {path!r} is driven by another rank-search ({_holder_text(holder)}): one "
                           "driver per sweep; wait for it to end or stop it, then resume")


def _say(message: str) -> None:
    import sys

    print(message, file=sys.stderr, flush=True)


class DriverLock:
    """The lock this process holds on one experiment; ``release`` (or the ``with`` block's end)
    frees it."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.holder = {"host": socket.gethostname(), "pid": os.getpid(), "since": _now()}
        self._fd: int | None = None
        self._file = ""
        self._lease: Location | None = None
        self._token = uuid.uuid4().hex
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- taking it -------------------------------------------------------------------------
    @classmethod
    def acquire(cls, path: str, *, folder: str | None = None, lease: bool = False) -> "DriverLock":
        """Lock the experiment ``path``; ``folder`` is where its files are now when that differs
        (a launch locks its folder while it is still a temporary sibling); ``lease`` takes a
        lease even on a local folder. Raises ``RankSearchError`` when another live driver holds it."""
        lock = cls(path)
        where = folder or path
        local = where[len("file://"):] if where.startswith("file://") else where
        try:
            if not is_uri(local):
                if not lease and lock._flock(local):
                    if folder is not None:  # where the file will be once the folder is renamed
                        lock._file = os.path.join(path[len("file://"):] if path.startswith("file://") else path,
                                                  LOCK_FILE)
                    return lock
                lock._take_lease(Location(local))  # flock refused by the file system (some NFS, FUSE)
            else:
                lock._take_lease(Location(where))
        except OSError as exc:
            raise RankSearchError(f"cannot lock experiment {path!r} ({LOCK_FILE}): "
                                  f"{exc.strerror or type(exc).__name__}") from None
        return lock

    def _flock(self, folder: str) -> bool:
        import fcntl

        file = os.path.join(folder, LOCK_FILE)
        for _ in range(10):  # the holder unlinks the file as it releases it: lock the file that is there
            fd = os.open(file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                holder = _parse(os.pread(fd, 65536, 0).decode("utf-8", "replace"))
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise _refused(self.path, holder) from None
                if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                    return False
                raise
            try:
                same = os.stat(file).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        else:
            raise RankSearchError(f"cannot lock experiment {self.path!r}: {LOCK_FILE} keeps changing")
        self._file = file
        try:
            previous = _parse(os.pread(fd, 65536, 0).decode("utf-8", "replace"))
            self._write_fd(fd, self.holder)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        if previous and not previous.get("released"):
            _say(f"the driver that held {self.path} ({_holder_text(previous)}) is gone: this one takes over")
        return True

    @staticmethod
    def _write_fd(fd: int, data: dict) -> None:
        raw = json.dumps(data).encode("utf-8")
        os.ftruncate(fd, 0)
        os.pwrite(fd, raw, 0)
        os.fsync(fd)

    def _lease_record(self) -> dict[str, Any]:
        return {**self.holder, "token": self._token, "renewed": time.time(), "lease_s": LEASE_S}

    def _take_lease(self, loc: Location) -> None:
        previous = _parse(loc.read_text(LOCK_FILE)) if loc.is_file(LOCK_FILE) else None
        if previous and not previous.get("released"):
            stale = self._stale(previous)
            if not stale:
                raise _refused(self.path, previous)
        loc.write_text(LOCK_FILE, json.dumps(self._lease_record()))
        now = _parse(loc.read_text(LOCK_FILE))
        if not now or now.get("token") != self._token:  # another driver wrote in between
            raise _refused(self.path, now)
        self._lease = loc
        if previous and not previous.get("released"):
            _say(f"the lease on {self.path} ({_holder_text(previous)}) has expired: this driver takes over")
        self._thread = threading.Thread(target=self._renew, name="rank-search-lease", daemon=True)
        self._thread.start()

    def _stale(self, lease: dict[str, Any]) -> bool:
        if lease.get("host") == self.holder["host"] and _pid_alive(lease.get("pid")) is False:
            return True
        renewed, span = lease.get("renewed"), lease.get("lease_s", LEASE_S)
        if not isinstance(renewed, (int, float)) or not isinstance(span, (int, float)):
            return True  # not a lease this version wrote: damaged
        return time.time() - float(renewed) > float(span)

    def _renew(self) -> None:
        while not self._stop.wait(RENEW_S):
            lease = self._lease
            if lease is None:
                return
            try:
                now = _parse(lease.read_text(LOCK_FILE))
                if now and now.get("token") not in (None, self._token):
                    _say(f"the lease on {self.path} was taken by another driver ({_holder_text(now)})")
                    return
                lease.write_text(LOCK_FILE, json.dumps(self._lease_record()))
            except OSError:
                pass  # a transient storage error: the next round tries again

    # -- giving it back ----------------------------------------------------------------------
    def release(self) -> None:
        # the file goes with the lock: one left behind says its driver died holding it
        released = {**self.holder, "released": _now()}
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.unlink(self._file)  # still locked: a driver that opened it sees it moved and retries
            except OSError:
                try:
                    self._write_fd(fd, released)
                except OSError:
                    pass  # the kernel frees the lock all the same
            finally:
                os.close(fd)
        if self._lease is not None:
            self._stop.set()
            if self._thread is not None:
                self._thread.join(timeout=5)
            try:
                self._lease.delete(LOCK_FILE)
            except OSError:
                try:
                    self._lease.write_text(LOCK_FILE, json.dumps(released))
                except OSError:
                    pass
            self._lease = None

    def __enter__(self) -> "DriverLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def read_holder(path: str) -> dict[str, Any] | None:
    """What ``rank_search.lock`` says of its holder (for messages); None when there is none."""
    loc = Location(path)
    try:
        return _parse(loc.read_text(LOCK_FILE)) if loc.is_file(LOCK_FILE) else None
    except (OSError, UnicodeDecodeError):
        return None

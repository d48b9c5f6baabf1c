"""Start or join Ray for a sweep. A private local Ray by default; nothing here runs ``ray stop``."""
from __future__ import annotations

import logging
import os
import shutil
import signal
import tempfile
from contextlib import contextmanager
from typing import Any, Iterator

# Lines Ray and Tune print that do not apply to a rank-search sweep: our own resume hint replaces
# Tune's ``Tuner.restore(...)`` one, the token-auth notice is for clusters users start by hand, and
# at a restore Tune's result reader warns (FileNotFoundError) about trials that had not reported
# yet, which resume then runs as usual.
_QUIET = ("Experiment has been interrupted", "Trials did not complete", "Token authentication is enabled",
          "Failed to fetch metrics")


class _DropNotices(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith(_QUIET)


def quiet_ray_notices() -> None:
    """Drop Tune's own resume hint and failure summary (the CLI prints ours) and Tune's progress
    box (``RAY_AIR_NEW_OUTPUT=0`` with ``verbose=0`` prints nothing, the TensorBoard hint included)."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    from ._private_api import RAY_AUTH_LOGGER

    for name in ("ray.tune.tune", RAY_AUTH_LOGGER, "ray.tune.analysis.experiment_analysis"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropNotices) for f in logger.filters):
            logger.addFilter(_DropNotices())
    try:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "study created in memory" line
    except ImportError:  # pragma: no cover - optuna is a dependency
        pass


# Ray's socket paths go under its temp folder (``session_DATE_PID/sockets/plasma_store``, about
# 64 bytes) and a Unix socket path has at most 107: a longer $TMPDIR fails deep inside ray.init.
MAX_TEMP_LEN = 40


def private_temp_dir() -> str:
    """A new folder for a private Ray: under ``$TMPDIR``, or ``/tmp`` when ``$TMPDIR`` is too long
    for Ray's socket paths; a one-line error when neither serves."""
    from ..errors import RankSearchError

    for parent in (None, "/tmp"):
        where = parent or tempfile.gettempdir()
        if len(os.path.join(where, "rs-ray-12345678")) <= MAX_TEMP_LEN:
            try:
                return tempfile.mkdtemp(prefix="rs-ray-", dir=parent)
            except OSError:
                continue
    raise RankSearchError(f"no temporary folder short enough for Ray's socket paths: $TMPDIR "
                          f"{tempfile.gettempdir()!r} is over {MAX_TEMP_LEN - 16} characters and /tmp is not "
                          "writable; set TMPDIR to a short folder")


def init_ray(address: str, *, num_gpus: float | None = None) -> bool:
    """Connect or start Ray; returns whether this call started it (and must shut it down).

    Prefer :func:`ray_session`, which also removes the private Ray's temporary folder.
    """
    return _init(address, num_gpus=num_gpus) is not None


def _init(address: str, *, num_gpus: float | None = None) -> str | None:
    """Connect or start Ray; the temporary folder of a Ray this call started ("" when it joined a
    cluster), None when Ray was already initialised."""
    import ray

    from ._private_api import RAY_TEMP_DIR_KWARG, check_versions

    check_versions()  # resume relies on private Ray and Optuna names: refuse an untested release
    if ray.is_initialized():
        return None
    quiet_ray_notices()
    # Tune warns about frequent snapshots: we checkpoint every epoch on purpose (exact resume).
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if address == "local":
        temp = private_temp_dir()  # per run: removed afterwards, short enough for socket paths
        kwargs: dict[str, Any] = {"address": "local", RAY_TEMP_DIR_KWARG: temp, "include_dashboard": False,
                                  "configure_logging": True, "logging_level": "WARNING",
                                  # worker chatter (checkpoint notices) stays in the Ray logs;
                                  # trial errors are reported by Tune and kept in error.txt
                                  "log_to_driver": False}
        if num_gpus is not None:
            kwargs["num_gpus"] = num_gpus
        try:
            ray.init(**kwargs)
        except BaseException:
            shutil.rmtree(temp, ignore_errors=True)
            raise
        return temp
    probe_address(address)
    ray.init(address=address, logging_level="WARNING", log_to_driver=False)
    return ""


def probe_address(address: str, *, timeout: float = 5.0) -> None:
    """Something listens at ``--address`` HOST:PORT (``ray.init`` waits for ever on a closed
    port); ``auto`` is left to Ray, which reads the address of a cluster started on this node."""
    import socket

    from ..errors import RankSearchError

    target = address.split("://", 1)[-1]
    host, _, port = target.rpartition(":")
    if address == "auto" or not host or not port.isdigit():
        return
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise RankSearchError(f"--address {address!r}: nothing answers at {host}:{port} "
                              f"({exc.strerror or type(exc).__name__}); is the Ray head running there?") from None


def _term_as_int(signum, frame) -> None:
    signal.raise_signal(signal.SIGINT)


def _sigterm_as_sigint():
    """Make SIGTERM (what a cluster scheduler or ``kill`` sends) stop the sweep as Ctrl-C does:
    Tune's SIGINT handler saves its state while trials run, a ``KeyboardInterrupt`` otherwise
    (the launch keeps its folder for `resume`). ``ray.init`` installs a handler that kills its
    processes and exits at once, leaving the caller no say. Returns the handler replaced (None
    off the main thread, where Python allows no handler)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _term_as_int)


@contextmanager
def ray_session(address: str, *, num_gpus: float | None = None) -> Iterator[bool]:
    """Ray for the block (yields whether it was started here); a Ray started here is shut down
    afterwards and a private one's temporary folder removed (nothing left in ``$TMPDIR``)."""
    temp = _init(address, num_gpus=num_gpus)
    previous = _sigterm_as_sigint()
    try:
        yield temp is not None
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if temp is not None:
            import ray

            ray.shutdown()
            if temp:
                shutil.rmtree(temp, ignore_errors=True)

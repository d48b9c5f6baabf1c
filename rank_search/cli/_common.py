"""Shared CLI helpers: atomic output folders, progress lines, and the picked trial of a sweep."""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

from .. import schema
from ..errors import RankSearchError


def check_out_dir(path: str, *, overwrite: bool) -> None:
    """Refuse an existing non-empty ``--out`` unless ``--overwrite``; checked before any work."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise RankSearchError(f"--out {path!r} exists and is not a directory")
    if os.path.isdir(path) and os.listdir(path) and not overwrite:
        raise RankSearchError(f"--out {path!r} already exists and is not empty; choose another or pass --overwrite")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise RankSearchError(f"parent folder of --out {path!r} does not exist: {parent}")
    check_writable(parent, what=f"--out {path!r}")


def check_writable(folder: str, *, what: str) -> None:
    """``folder`` takes new files: a real write, checked before any work (``os.access`` says yes
    to root where nothing can be written, e.g. /proc)."""
    try:
        probe = tempfile.mkdtemp(prefix=".rank-search-probe-", dir=folder)
        os.rmdir(probe)
    except OSError as exc:
        raise RankSearchError(f"{what}: cannot write in {folder}: {exc.strerror or type(exc).__name__}") from None


def public_mode(mode: int = 0o777) -> int:
    """``mode`` under the process umask: what a plain ``mkdir``/``open`` would give (temporary
    files are made private, 0700/0600, whatever the umask; outputs on shared storage must not be)."""
    umask = os.umask(0)
    os.umask(umask)
    return mode & ~umask


def write_file_atomically(path: str, data: bytes, *, overwrite: bool = True) -> None:
    """Write ``path`` whole (a temporary sibling renamed into place) with the umask's permissions;
    an existing ``path`` is refused unless ``overwrite``."""
    if os.path.isdir(path):
        raise RankSearchError(f"--out {path!r} is a folder; give a file name")
    if os.path.exists(path) and not overwrite:
        raise RankSearchError(f"--out {path!r} already exists; choose another or pass --overwrite")
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, public_mode(0o666))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


@contextmanager
def atomic_output_dir(path: str, *, overwrite: bool = False) -> Iterator[str]:
    """Yield a temporary sibling folder that becomes ``path`` only if the block succeeds.

    On any error or interrupt the partial folder is removed, so ``--out`` is never half-written.
    """
    check_out_dir(path, overwrite=overwrite)
    parent = os.path.dirname(os.path.abspath(path))
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(os.path.abspath(path))}.partial-", dir=parent)
    try:
        os.chmod(tmp, public_mode())  # an output folder others may read, not mkdtemp's private 0700
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if os.path.isdir(path):
        shutil.rmtree(path)
    os.replace(tmp, path)


class Progress:
    """Per-batch progress on a terminal (one rewritten line); nothing when stderr is not a tty."""

    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()

    def __call__(self, message: str) -> None:
        if self.live:
            self.stream.write("\r" + message[:100].ljust(100))
            self.stream.flush()

    def line(self, message: str) -> None:
        if self.live:
            self.stream.write("\r" + " " * 100 + "\r")
        print(message, file=self.stream, flush=True)


@dataclass(frozen=True)
class PickedTrial:
    """The trial of a sweep that `export` and `deploy` pick, and its final checkpoint.

    Attributes:
        experiment: the experiment folder or URI, as given.
        trial: the trial's row (``analysis.loading``'s columns).
        checkpoint: its final checkpoint folder, relative to the experiment.
        loc: the experiment's ``storage.Location``.
    """

    experiment: str
    trial: Any
    checkpoint: str
    loc: Any

    @property
    def trial_id(self) -> str:
        return str(self.trial["trial_id"])

    def file(self, name: str) -> str:
        """``name`` in the final checkpoint (relative to the experiment); a missing file is a
        one-line error."""
        rel = f"{self.checkpoint}/{name}"
        if not self.loc.exists(rel):
            raise RankSearchError(f"trial {self.trial_id} has no {name} in its final checkpoint in "
                                  f"{self.experiment!r}")
        return rel

    def compact_weights(self) -> str:
        """The trial's ``compact.pt`` (relative to the experiment)."""
        return self.file(schema.COMPACT_WEIGHTS_FILE)


def pick_checkpoint(experiment: str, *, pick: str, min_accuracy: float | None = None,
                    max_macs: float | None = None, exp=None, include_stopped: bool = False) -> PickedTrial:
    """Pick a trial of the sweep at ``experiment`` (``analysis.select.pick_trial``) and find its
    final checkpoint; ``exp`` is the experiment when it is loaded already.

    Raises:
        RankSearchError: no trial to pick, or the picked one has no final checkpoint.
    """
    from analysis.loading import load_experiment
    from analysis.select import pick_trial

    from ..storage import Location

    exp = exp if exp is not None else load_experiment(experiment)
    trial = pick_trial(exp, pick=pick, min_accuracy=min_accuracy, max_macs=max_macs, include_stopped=include_stopped)
    loc = Location(experiment)
    name = trial["checkpoint"]
    if not isinstance(name, str) or not loc.is_dir(f"{trial['folder']}/{name}"):
        raise RankSearchError(f"trial {trial['trial_id']} has no final checkpoint in {experiment!r}")
    return PickedTrial(experiment, trial, f"{trial['folder']}/{name}", loc)

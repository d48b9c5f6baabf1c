"""Output files and folders of the CLI: checked before work starts, written all-or-nothing."""
from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from typing import Iterator

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

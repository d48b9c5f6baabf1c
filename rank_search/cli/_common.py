"""Shared CLI helpers: atomic output folders and progress lines."""
from __future__ import annotations

import os
import shutil
import sys
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


@contextmanager
def atomic_output_dir(path: str, *, overwrite: bool = False) -> Iterator[str]:
    """Yield a temporary sibling folder that becomes ``path`` only if the block succeeds.

    On any error or interrupt the partial folder is removed, so ``--out`` is never half-written.
    """
    check_out_dir(path, overwrite=overwrite)
    parent = os.path.dirname(os.path.abspath(path))
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(os.path.abspath(path))}.partial-", dir=parent)
    try:
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

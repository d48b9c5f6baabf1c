"""What the driver of a sweep (`launch` or `resume`) leaves in its experiment folder and how it
stops: ``rank_search_driver.json`` (who drives, and whether it ended), a full disk turned into one
line that names the resume command, and the removal of a folder a launch made and then failed
in. No ray, no torch.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import socket
from contextlib import contextmanager
from typing import Iterator

from .. import schema
from ..errors import RankSearchError
from ..storage import Location
from .journal import JournalWriteFailed


@contextmanager
def driver_file(path: str) -> Iterator[None]:
    """``rank_search_driver.json`` at the experiment root: this process drives the sweep, and
    when it ends (normally or by Ctrl-C) that it ended. `status` reads it to tell running trials
    from trials whose driver is gone (a ``kill -9`` leaves the file without ``ended``)."""
    loc = Location(path)
    record = {"host": socket.gethostname(), "pid": os.getpid(),
              "started": _dt.datetime.now().isoformat(timespec="seconds")}
    loc.write_text(schema.DRIVER_FILE, json.dumps(record))
    try:
        yield
    finally:
        record["ended"] = _dt.datetime.now().isoformat(timespec="seconds")
        try:
            loc.write_text(schema.DRIVER_FILE, json.dumps(record))
        except OSError:
            pass


_DISK_FULL = (28, 122)  # ENOSPC, EDQUOT (Linux)


def _disk_full(exc: BaseException | None) -> OSError | None:
    """The full-disk ``OSError`` behind ``exc`` (Tune wraps what its loop raises), if any."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in _DISK_FULL:
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


@contextmanager
def full_disk_stops(path: str) -> Iterator[None]:
    """A full disk while the sweep runs stops the driver with one line. What is on disk stays
    resumable: Tune's snapshot and the sweep record are replaced whole, and `resume` rolls a
    journal record cut by the full disk back (``search.journal``)."""
    try:
        yield
    except BaseException as exc:
        full = _disk_full(exc)
        if full is None and not isinstance(exc, JournalWriteFailed):
            raise
        full = full or exc.__cause__ or exc
        where = f" writing {full.filename}" if getattr(full, "filename", None) else ""
        try:
            kept = Location(path).is_file(schema.SWEEP_FILE)
        except OSError:
            kept = False
        hint = (f"free space, then finish it with `rank-search resume {path}`" if kept else
                "nothing was kept; free space and launch again")
        why = "no space left on the device" if _disk_full(exc) else \
            f"the study journal cannot be written ({getattr(full, 'strerror', None) or type(full).__name__})"
        raise RankSearchError(f"{why}{where}: the sweep stopped; {hint}") from None


def remove_experiment(path: str) -> None:
    """Remove the experiment folder a failed launch made (before any trial ran)."""
    loc = Location(path)
    try:
        loc.delete_tree()
    except (OSError, FileNotFoundError):
        pass

"""The Optuna journal (``optuna_study.log``): checked, and repaired where that is safe, before
`resume` appends to it; written all-or-nothing while a sweep runs.

A driver killed mid-append or a full disk leaves the journal's last line cut: Optuna's reader
skips it silently, and the next append glues a record onto it (a ``JSONDecodeError`` at every
later read). So before a resume (``check_journal``) a cut last line is rolled back to the last
complete record (the original kept as ``optuna_study.log.torn-TIME``), said in one line; any
other damage, a journal Optuna cannot replay, or a missing journal beside existing trials is a
one-line ``RankSearchError``; a journal lock left by a killed driver is removed (the caller holds
the driver lock).

While a sweep runs the study writes through ``journal_storage``: a failed append is cut back to
the size before it and raised as ``JournalWriteFailed``, a ``BaseException``, because Ray's
``OptunaSearch.on_trial_complete`` logs and drops any ``Exception`` of ``study.tell``. It stops
the driver as a kill would (Tune's last snapshot precedes the completion the study missed), and
``sweep`` turns it into one line. Experiments on a URI keep their study in Tune's searcher state:
nothing to check here.
"""
from __future__ import annotations

import datetime as _dt
import json
import os

from optuna.storages.journal import JournalFileBackend

from .. import schema
from ..errors import RankSearchError
from ..schema import is_uri

_LEFTOVERS = (".lock", ".rename")  # optuna's JournalFileSymlinkLock files (LOCK_FILE_SUFFIX, RENAME_FILE_SUFFIX)


class JournalWriteFailed(BaseException):
    """An append to the study journal failed (its ``__cause__`` is the ``OSError``); the journal
    is as it was before the append."""


def journal_storage(file: str):
    """The ``JournalStorage`` of the study journal ``file``, appending all-or-nothing."""
    from optuna.storages import JournalStorage

    return JournalStorage(_WholeRecords(file))


class _WholeRecords(JournalFileBackend):
    """``JournalFileBackend`` whose appends leave whole records or nothing; ``file`` is its path."""

    def __init__(self, file: str) -> None:
        super().__init__(file)
        self.file = file

    def append_logs(self, logs):
        try:
            before = os.path.getsize(self.file)
        except OSError as exc:
            raise JournalWriteFailed(f"cannot append to {self.file}") from exc
        try:
            super().append_logs(logs)
        except OSError as exc:
            try:
                with open(self.file, "r+b") as fh:  # cutting frees space: this works on a full disk
                    fh.truncate(before)
            except OSError:
                pass  # `resume` rolls the cut record back
            raise JournalWriteFailed(f"cannot append to {self.file}") from exc


def _say(message: str) -> None:
    import sys

    print(message, file=sys.stderr, flush=True)


def _damaged(file: str, why: str) -> RankSearchError:
    return RankSearchError(f"the Optuna journal {file!r} is damaged ({why}): the study cannot be restored; put back "
                           "a saved copy or start a new sweep")


def _is_record(line: bytes) -> bool:
    try:
        record = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(record, dict) and isinstance(record.get("op_code"), int)


def check_journal(path: str, *, trials_on_disk: int) -> None:
    """Check (and repair a cut last record of) the journal of the local experiment ``path``,
    whose Tune state knows ``trials_on_disk`` trials. Raises ``RankSearchError``."""
    local = path[len("file://"):] if path.startswith("file://") else path
    if is_uri(local):
        return
    file = os.path.join(local, schema.STUDY_FILE)
    if not os.path.isfile(file):
        if trials_on_disk:
            raise RankSearchError(f"{path!r} holds {trials_on_disk} trial(s) but no Optuna journal "
                                  f"{schema.STUDY_FILE}: the study cannot be restored; put the file back or start "
                                  "a new sweep")
        return
    for suffix in _LEFTOVERS:
        leftover = file + suffix
        if os.path.lexists(leftover):
            os.unlink(leftover)
    try:
        with open(file, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise RankSearchError(f"the Optuna journal {file!r} cannot be read: {exc.strerror or type(exc).__name__}") \
            from None
    keep = _complete_prefix(file, data)
    if keep < len(data):
        _roll_back(file, data, keep)
    _replay(file)


def _complete_prefix(file: str, data: bytes) -> int:
    """The length of ``data`` up to its last complete record. Only the last line may be cut (no
    newline) or glued (a cut record with a whole one appended after it); damage anywhere else
    raises."""
    end = data.rfind(b"\n") + 1  # what follows the last newline was cut mid-append
    lines = data[:end].split(b"\n")[:-1]
    offset = 0
    for i, line in enumerate(lines, start=1):
        if not _is_record(line):
            if i == len(lines) and end == len(data):  # the last line: cut, then glued to by an append
                return offset
            raise _damaged(file, f"line {i} is not a JSON record")
        offset += len(line) + 1
    return end


def _roll_back(file: str, data: bytes, keep: int) -> None:
    backup = f"{file}.torn-{_dt.datetime.now():%Y%m%d-%H%M%S}"
    with open(backup, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    with open(file, "r+b") as fh:
        fh.truncate(keep)
        fh.flush()
        os.fsync(fh.fileno())
    _say(f"the Optuna journal's last record was cut ({len(data) - keep} bytes, a kill or a full disk mid-write): "
         f"rolled back to the last complete record; the original is kept as {os.path.basename(backup)}")


def _replay(file: str) -> None:
    """Optuna reads the whole journal and finds the study in it."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from ..schema import STUDY_NAME

    if os.path.getsize(file) == 0:
        return  # a launch stopped before its study was written: the restart makes it
    try:
        storage = JournalStorage(JournalFileBackend(file))
        study = optuna.load_study(study_name=STUDY_NAME, storage=storage)
        study.trials  # noqa: B018 - reading every trial replays every record
    except Exception as exc:  # optuna raises KeyError, ValueError, AttributeError... on damaged logs
        first = (str(exc).strip().splitlines() or [""])[0][:160]
        raise _damaged(file, f"Optuna cannot replay it: {type(exc).__name__}: {first}") from None

"""What `resume` reads of Tune's state before it starts Ray.

``read_tune_state``: Tune's newest ``experiment_state-*.json``, parsed as plain JSON (no
unpickling): a damaged one is a one-line error, never a resume that starts trials again.
``set_aside_orphans``: trial folders that snapshot does not list, moved to ``orphaned/``. What
resume needs of Ray's private classes (a moved experiment, the snapshot's order) is in ``_private_api``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from ..errors import RankSearchError
from ..storage import Location

STATE_PREFIX = "experiment_state-"
FINISHED = "TERMINATED"


@dataclass(frozen=True)
class TuneState:
    """The trials Tune's newest experiment snapshot knows: trial id -> status, and folder names."""

    file: str
    statuses: dict[str, str]
    folders: dict[str, str]  # trial id -> trial folder

    def finished(self) -> int:
        return sum(s == FINISHED for s in self.statuses.values())


def _damaged(path: str, name: str, why: str, older: list[str]) -> RankSearchError:
    hint = (f"; move it away to resume from the previous snapshot {older[-1]}" if older else
            "; the experiment cannot be resumed, start a new sweep")
    return RankSearchError(f"Tune's experiment state {name} in {path!r} is damaged ({why}){hint}")


def read_tune_state(path: str) -> TuneState | None:
    """Tune's newest experiment snapshot of ``path``; None when there is none."""
    loc = Location(path)
    names = sorted(n for n in loc.listdir() if n.startswith(STATE_PREFIX) and n.endswith(".json"))
    if not names:
        return None
    name, older = names[-1], names[:-1]  # the one Tune restores from (the newest name)
    try:
        data = json.loads(loc.read_bytes(name).decode("utf-8"))
    except UnicodeDecodeError:
        raise _damaged(path, name, "not UTF-8 text", older) from None
    except json.JSONDecodeError as exc:
        raise _damaged(path, name, f"not valid JSON: {exc.msg} at character {exc.pos}", older) from None
    items = data.get("trial_data") if isinstance(data, dict) else None
    if not isinstance(items, list) or "runner_data" not in data:
        raise _damaged(path, name, "no trial_data list or runner_data", older)
    statuses, folders = {}, {}
    for i, item in enumerate(items):
        try:
            meta = json.loads(item[0]) if isinstance(item[0], str) else item[0]
            trial_id, status = meta["trial_id"], meta["status"]
        except (TypeError, KeyError, IndexError, json.JSONDecodeError):
            raise _damaged(path, name, f"trial entry {i} is unreadable", older) from None
        statuses[str(trial_id)] = str(status)
        folders[str(trial_id)] = str(meta.get("relative_logdir") or meta.get("custom_dirname") or "")
    return TuneState(name, statuses, folders)


#: where ``set_aside_orphans`` moves trial folders Tune's snapshot does not list
ORPHANED_DIR = "orphaned"


def set_aside_orphans(path: str, state: TuneState) -> list[str]:
    """Move the trial folders of ``path`` that Tune's snapshot ``state`` does not list (a trial
    whose folder was written just before the driver was killed, ahead of the snapshot naming it)
    into ``orphaned/``, so no trial is shown twice; their study trials are enqueued again when
    the searcher is restored (``_private_api.reclaim_orphans``). Nothing is deleted. Returns the
    folders moved."""
    loc = Location(path)
    known = set(state.folders.values())
    orphans = [n for n in loc.listdir() if n.startswith("trial_") and n not in known and loc.is_dir(n)]
    for name in orphans:
        loc.move_dir(name, f"{ORPHANED_DIR}/{name}")
    return orphans

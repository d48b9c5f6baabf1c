"""What `resume` checks and fixes before and while Tune restores an experiment.

* ``read_tune_state``: Tune's newest ``experiment_state-*.json``, parsed as plain JSON (no
  unpickling): a damaged one is a one-line error, never a resume that starts trials again.
* ``moved_experiment``: Tune keeps the experiment's launch location inside its pickled searcher
  state, so the trials a resumed searcher creates after the folder was moved or copied (off a
  cluster, say) would try to write to the old place. The block re-points them at the folder
  being resumed.
* ``eager_snapshots`` (launch and resume): Tune's snapshot never lags a trial start or a trial
  checkpoint, so a kill at any moment orphans no trial and loses no checkpoint.
"""
from __future__ import annotations

import copy
import json
import posixpath
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

from ..errors import RankSearchError
from ..schema import is_uri
from ..storage import Location, split_path

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


def _rebased(storage, path: str):
    """A copy of Tune's StorageContext ``storage`` pointing at the experiment folder ``path``
    (what Tune does itself for the trials it restores)."""
    from ray.train._internal.storage import get_fs_and_path

    parent, name = split_path(path)
    new = copy.copy(storage)
    new.storage_filesystem, fs_path = get_fs_and_path(parent)
    new.storage_fs_path = posixpath.normpath(fs_path) if fs_path else fs_path
    new.experiment_dir_name = name
    return new


def _rebase_study(searcher, path: str) -> None:
    """Point a restored OptunaSearch's journal study at ``path``'s ``optuna_study.log`` (its
    pickle names the journal file at the launch location)."""
    import os

    from .tune_setup import study_storage

    old = getattr(getattr(getattr(searcher, "_storage", None), "_backend", None), "_file_path", None)
    local = path[len("file://"):] if path.startswith("file://") else path
    if old is None or is_uri(local):
        return  # an in-memory study (URI experiments) lives in the pickle itself
    new = study_storage(local)
    if os.path.abspath(old) == os.path.abspath(new._backend._file_path):
        return
    searcher._storage = new
    if getattr(searcher, "_ot_study", None) is not None:
        searcher._ot_study._storage = new
    for trial in (getattr(searcher, "_ot_trials", None) or {}).values():
        trial.storage = new


@contextmanager
def moved_experiment(path: str) -> Iterator[None]:
    """While the block runs, what a restored Tune search algorithm reads back from its pickled
    state points at ``path`` (where the experiment is now), not at the launch location: the
    experiment spec new trials are created from, and the Optuna journal of the study."""
    from ray.tune.search.optuna import OptunaSearch
    from ray.tune.search.search_generator import SearchGenerator

    original_set_state, original_restore = SearchGenerator.set_state, OptunaSearch.restore

    def set_state(self, state):
        original_set_state(self, state)
        experiment = self._experiment
        storage = getattr(experiment, "storage", None)
        if storage is not None:
            experiment.storage = _rebased(storage, path)
            experiment.spec["storage"] = experiment.storage

    def restore(self, checkpoint_path):
        original_restore(self, checkpoint_path)
        _rebase_study(self, path)

    SearchGenerator.set_state, OptunaSearch.restore = set_state, restore
    try:
        yield
    finally:
        SearchGenerator.set_state, OptunaSearch.restore = original_set_state, original_restore


@contextmanager
def eager_snapshots() -> Iterator[None]:
    """While the block runs, Tune writes its experiment snapshot (trial states and the searcher)
    before it starts each trial and after each trial checkpoint, not every ten seconds or so: a
    driver killed at any moment leaves no trial folder the snapshot does not know (an orphan
    whose config would run again) and no checkpoint it does not list (epochs run twice)."""
    from ray.tune.execution.experiment_state import _ExperimentCheckpointManager
    from ray.tune.execution.tune_controller import TuneController

    original_on_checkpoint = _ExperimentCheckpointManager.on_trial_checkpoint
    original_schedule = TuneController._schedule_trial_actor

    def on_trial_checkpoint(self, trial):
        original_on_checkpoint(self, trial)
        self._should_force_sync_up = True  # the step's snapshot is written and synced now

    def schedule_trial_actor(self, trial):
        self._checkpoint_manager._should_force_sync_up = True
        self.checkpoint()  # the trial is in the snapshot before its folder exists
        return original_schedule(self, trial)

    _ExperimentCheckpointManager.on_trial_checkpoint = on_trial_checkpoint
    TuneController._schedule_trial_actor = schedule_trial_actor
    try:
        yield
    finally:
        _ExperimentCheckpointManager.on_trial_checkpoint = original_on_checkpoint
        TuneController._schedule_trial_actor = original_schedule

"""Every private Ray and Optuna name rank-search uses, in one module, behind a version check.

Each use says why no public API serves. ``check_versions`` refuses, in one line, a Ray or Optuna
outside ``TESTED``, the range the suite passes on (the same as ``pyproject.toml``'s, a test keeps
them equal); `launch`, `resume` and ``ray_session`` call it before anything else.

Resume goes through two subclasses a sweep hands to Tune, not through patches:
``SweepSearchGenerator`` and ``SweepOptunaSearch`` re-point, while ``resuming_at(path)`` is
active, what they read back from their pickles at the folder being resumed, and the restored
``SweepOptunaSearch`` takes back the study trials Tune's snapshot never knew (``reclaim_orphans``).

The snapshot is ordered with trial starts and checkpoints by the sweep's scheduler
(``SnapshotFirst``), which Tune is handed like any scheduler. No Ray or Optuna class is patched.
"""
from __future__ import annotations

import copy
import os
import posixpath
import re
from contextlib import contextmanager
from typing import Iterator

from ..errors import RankSearchError
from ..schema import is_uri
from ..storage import split_path

#: package -> (lowest tested, first untested): the ``pyproject.toml`` range of each dependency
#: whose private names are used below.
TESTED = {"ray": ((2, 41), (2, 61)), "optuna": ((4, 0), (5, 2))}

#: ``ray.init``'s root temp folder keyword. Ray lists ``_temp_dir`` among its "hidden" options and
#: has no public parameter: ``ray start --temp-dir`` is the CLI, and ``RAY_TMPDIR`` is process-wide
#: (every child inherits it) with Ray's own ``ray/`` level under it. A private folder per launch is
#: what lets ``ray_session`` remove it afterwards and keep socket paths short.
RAY_TEMP_DIR_KWARG = "_temp_dir"

#: Ray's logger of the token-auth notice (a line for clusters started by hand). Loggers are only
#: reachable by name, and this one lives in a private package.
RAY_AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"


def _release(text: str) -> tuple[int, int]:
    """(major, minor) of a version string; (0, 0), outside every range, when it has none."""
    match = re.match(r"(\d+)(?:\.(\d+))?", text)
    return (int(match[1]), int(match[2] or 0)) if match else (0, 0)


def check_versions(installed: dict[str, str] | None = None) -> None:
    """Raise a one-line ``RankSearchError`` when ``installed`` (default: the importable ray and
    optuna) falls outside ``TESTED``."""
    if installed is None:
        from importlib.metadata import version

        installed = {name: version(name) for name in TESTED}
    for name, version in installed.items():
        (low, high) = TESTED[name]
        if not low <= _release(version) < high:
            raise RankSearchError(
                f"{name} {version} is outside the range rank-search is tested on "
                f"(>={low[0]}.{low[1]},<{high[0]}.{high[1]}; its resume uses private {name} names): "
                f"install a {name} in that range")


def optuna_study(search):
    """The Optuna study a Ray ``OptunaSearch`` built. Ray creates it inside the searcher from
    metric/mode and has no accessor; ``optuna.load_study`` cannot reach an in-memory study (an
    experiment on a URI), and the direction check (ray#35909) must see this very object."""
    return search._ot_study


# -- resume of a moved experiment ------------------------------------------------------------
_RESUMED_AT: list[str] = []  # the folder being resumed, while ``resuming_at`` is active


@contextmanager
def resuming_at(path: str) -> Iterator[None]:
    """While the block runs, ``SweepSearchGenerator`` and ``SweepOptunaSearch`` restored by
    ``Tuner.restore`` point at ``path`` (where the experiment is now), not at the launch location."""
    _RESUMED_AT.append(path)
    try:
        yield
    finally:
        _RESUMED_AT.pop()


def _rebased(storage, path: str):
    """A copy of Tune's StorageContext ``storage`` pointing at the experiment folder ``path``, as
    Tune does itself for the trials it restores. ``StorageContext`` and ``get_fs_and_path`` are
    private (``ray.train._internal``); the experiment a searcher makes new trials from holds one,
    and Tune offers no public way to move it."""
    from ray.train._internal.storage import get_fs_and_path

    parent, name = split_path(path)
    new = copy.copy(storage)
    new.storage_filesystem, fs_path = get_fs_and_path(parent)
    new.storage_fs_path = posixpath.normpath(fs_path) if fs_path else fs_path
    new.experiment_dir_name = name
    return new


def _rebase_study(searcher, path: str) -> None:
    """Point a restored ``OptunaSearch``'s journal study at ``path``'s journal. Ray pickles the
    searcher's whole ``__dict__`` (the storage naming the journal at the launch location, the
    study and the running trials on it) and has no public way to give it another storage."""
    from .. import schema
    from .journal import journal_storage

    backend = getattr(getattr(searcher, "_storage", None), "_backend", None)
    old = getattr(backend, "file", None) or getattr(backend, "_file_path", None)
    local = path[len("file://"):] if path.startswith("file://") else path
    if old is None or is_uri(local):
        return  # an in-memory study (URI experiments) lives in the pickle itself
    new = journal_storage(os.path.join(local, schema.STUDY_FILE))  # what tune_setup.study_storage makes
    if os.path.abspath(old) == os.path.abspath(new._backend.file):
        return
    searcher._storage = new
    if getattr(searcher, "_ot_study", None) is not None:
        searcher._ot_study._storage = new
    for trial in (getattr(searcher, "_ot_trials", None) or {}).values():
        trial.storage = new


#: user attribute of a study trial enqueued again by ``reclaim_orphans``: the orphan's number
RECLAIMS_ATTR = "rank_search_reclaims"


def reclaim_orphans(searcher) -> list[int]:
    """Give back to the queue the study trials asked after the snapshot ``searcher`` was restored
    from: RUNNING in the journal but unknown to the restored searcher, their Tune trial never
    made it into that snapshot (a resume from an older snapshot, after a damaged newest one was
    moved away, or a driver killed between an ask and the snapshot that follows it). Each
    one's parameters are enqueued (so its configuration runs once, as the next trial) and the
    orphan is told FAIL; a reclaim cut short is finished, never enqueued twice. Returns the
    orphans' numbers. ``_ot_study``/``_ot_trials`` are the searcher's study and its trial ->
    study-trial map: Ray has no accessor for either."""
    from optuna.trial import TrialState

    study, known = getattr(searcher, "_ot_study", None), getattr(searcher, "_ot_trials", None) or {}
    if study is None:
        return []
    numbers = {t.number for t in known.values()}
    trials = study.get_trials(deepcopy=False)
    queued = {t.user_attrs.get(RECLAIMS_ATTR) for t in trials}
    orphans = [t for t in trials if t.state == TrialState.RUNNING and t.number not in numbers]
    for orphan in orphans:
        if orphan.number not in queued:
            study.enqueue_trial(orphan.params, user_attrs={RECLAIMS_ATTR: orphan.number})
        study.tell(orphan.number, state=TrialState.FAIL)
    return [t.number for t in orphans]


def _search_classes():
    from ray.tune.search import SearchGenerator
    from ray.tune.search.optuna import OptunaSearch

    class SweepSearchGenerator(SearchGenerator):
        """Tune's ``SearchGenerator``; restored inside ``resuming_at(path)``, the experiment spec it
        makes new trials from writes them to ``path``."""

        def set_state(self, state: dict) -> None:
            experiment = state.get("experiment")
            storage = getattr(experiment, "storage", None)
            if _RESUMED_AT and storage is not None:
                experiment.storage = _rebased(storage, _RESUMED_AT[-1])
                experiment.spec["storage"] = experiment.storage
            super().set_state(state)

    class SweepOptunaSearch(OptunaSearch):
        """Ray's ``OptunaSearch``; restored inside ``resuming_at(path)``, its study is the journal
        in ``path``; restored anywhere, orphaned study trials are enqueued again."""

        def restore(self, checkpoint_path: str) -> None:
            super().restore(checkpoint_path)
            if _RESUMED_AT:
                _rebase_study(self, _RESUMED_AT[-1])
            reclaim_orphans(self)

    return SweepSearchGenerator, SweepOptunaSearch


_LAZY = {"SweepSearchGenerator": "_search_classes", "SweepOptunaSearch": "_search_classes",
         "SnapshotFIFOScheduler": "_scheduler_classes", "SnapshotASHAScheduler": "_scheduler_classes"}


def __getattr__(name: str):
    # the classes subclass Ray's, so they are made on first use: importing this module imports no Ray
    if name in _LAZY:
        for cls in globals()[_LAZY[name]]():
            cls.__module__, cls.__qualname__ = __name__, cls.__name__
            globals()[cls.__name__] = cls
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# -- snapshot ordering, through the scheduler ------------------------------------------------
def _checkpoint_path(trial) -> str | None:
    checkpoint = trial.checkpoint
    return None if checkpoint is None else checkpoint.path


class SnapshotFirst:
    """Mixin of a Tune ``TrialScheduler``: Tune writes its experiment snapshot (trial states and
    the searcher) before it starts a trial the last snapshot did not list, and right after each
    trial checkpoint, not every ten seconds or so: a driver killed at any moment leaves no trial
    folder the snapshot does not know (an orphan whose configuration would run again) and no
    checkpoint it does not list (epochs run twice).

    Tune calls ``choose_trial_to_run`` at every controller step, after the searcher's new trials
    are added and before any trial is started, and a checkpoint is registered in the step before:
    a snapshot forced there orders both. Tune's public snapshot settings are a period
    (``TUNE_GLOBAL_CHECKPOINT_S``) and a checkpoint count (``CheckpointConfig.num_to_keep``) and
    order neither (docs/development.md), so the snapshot is the controller's own
    ``checkpoint(force=True)``, reached through the wrapper's private ``_tune_controller`` (the
    wrapper's public names do not include it). A snapshot before a trial starts waits for its copy
    to storage."""

    def choose_trial_to_run(self, tune_controller):
        now = {t.trial_id: _checkpoint_path(t) for t in tune_controller.get_trials()}
        seen = getattr(self, "_snapshot_listed", {})
        if now != seen:
            controller = getattr(tune_controller, "_tune_controller", tune_controller)
            controller.checkpoint(force=True, wait=any(k not in seen for k in now))
            self._snapshot_listed = now
        return super().choose_trial_to_run(tune_controller)


def _scheduler_classes():
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    class SnapshotFIFOScheduler(SnapshotFirst, FIFOScheduler):
        """Tune's first-in first-out scheduler (every trial trains its full budget), ``SnapshotFirst``."""

    class SnapshotASHAScheduler(SnapshotFirst, ASHAScheduler):
        """Ray's ASHA, ``SnapshotFirst``."""

    return SnapshotFIFOScheduler, SnapshotASHAScheduler

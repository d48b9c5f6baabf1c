"""Tune and Optuna objects of a sweep: the searcher, the scheduler, the trainable with its
resources and the run config (what `launch` and `resume` hand to ``tune.Tuner``)."""
from __future__ import annotations

from typing import Callable

from .. import schema
from ._private_api import optuna_study
from .searchers import SearchContext, create_sampler, name_objectives
from .settings import LaunchConfig


STUDY_NAME = schema.STUDY_NAME


def study_storage(path: str):
    """The Optuna study's storage: a journal file in a local experiment folder (``optuna-dashboard
    EXP/optuna_study.log`` opens it), None (in memory, restored from Tune's searcher state) for
    an experiment on a URI: a journal file needs a local file system with file locks."""
    import os

    from ..schema import is_uri

    if is_uri(path):
        return None
    from .journal import journal_storage

    return journal_storage(os.path.join(path, schema.STUDY_FILE))  # appends all-or-nothing


def make_searcher(context: SearchContext | LaunchConfig, sampler_fn: Callable, *, points: list[dict] | None = None,
                  storage=None):
    """OptunaSearch over the space's define-by-run sampler ``sampler_fn``, with the sampler the
    searcher registry builds from ``context`` (a bare ``LaunchConfig``: a context with nothing
    else known); ``points`` are enqueued first (the warm start), ``storage`` keeps the study
    (see ``study_storage``)."""
    import optuna

    from ._private_api import SweepOptunaSearch as OptunaSearch  # its study follows a moved experiment

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "study created" line per launch

    if isinstance(context, LaunchConfig):
        context = SearchContext(context)
    cfg = context.config
    sampler = create_sampler(context)
    metrics = [m for m, _ in cfg.objectives]
    modes = [m for _, m in cfg.objectives]
    common = dict(space=sampler_fn, sampler=sampler, seed=cfg.seed, points_to_evaluate=points or None,
                  storage=storage, study_name=STUDY_NAME)
    if len(metrics) == 1:
        search = OptunaSearch(metric=metrics[0], mode=modes[0], **common)
    else:
        search = OptunaSearch(metric=metrics, mode=modes, **common)
    check_directions(search, cfg)
    name_objectives(optuna_study(search), cfg)  # the study Ray built (see check_directions)
    return search


def make_search_alg(searcher, *, max_concurrent: int | None):
    """What ``tune.TuneConfig(search_alg=...)`` gets: ``searcher`` limited to ``max_concurrent``
    running trials (Tune's ``ConcurrencyLimiter``) in a ``SweepSearchGenerator``, the wrapping Tune
    itself does for ``max_concurrent_trials``, with a generator that follows a moved experiment
    (``_private_api.resuming_at``)."""
    from ray.tune.search import ConcurrencyLimiter

    from ._private_api import SweepSearchGenerator

    if max_concurrent:
        searcher = ConcurrencyLimiter(searcher, max_concurrent=max_concurrent)
    return SweepSearchGenerator(searcher)


def check_directions(search, cfg: LaunchConfig) -> None:
    """The Optuna study must really have one direction per objective (ray#35909 silently drops
    to single-objective when metric/mode are also set on TuneConfig)."""
    study = optuna_study(search)
    want = ["maximize" if m == "max" else "minimize" for _, m in cfg.objectives]
    got = [d.name.lower() for d in study.directions]
    if got != want:
        raise RuntimeError(f"Optuna study directions are {got}, expected {want}")


def make_scheduler(cfg: LaunchConfig, *, path: str, epochs: int, dense_accuracy: float | None = None):
    """The sweep's Tune scheduler: first-in first-out (``fifo``: every trial trains its full
    budget), Ray's ASHA on validation accuracy alone (``asha``), or MO-ASHA on the sweep's
    objectives (``mo-asha``, ``mo_asha.MOASHAScheduler``: its decisions are kept in the experiment
    folder ``path``; ``mo-asha-method``: each trial compared with the trials of its own method
    only). Each is a ``_private_api.SnapshotFirst``: resume's snapshots are ordered by it."""
    from . import _private_api

    if cfg.scheduler == "fifo":
        return _private_api.SnapshotFIFOScheduler()
    if cfg.scheduler in ("mo-asha", "mo-asha-method"):
        from .mo_asha import MOASHAScheduler

        floors = {} if dense_accuracy is None else {schema.VAL_ACCURACY: dense_accuracy - schema.ACCURACY_MARGIN}
        return MOASHAScheduler(cfg.objectives, max_epochs=epochs, path=path, floors=floors,
                               group_by=schema.METHOD_KEY if cfg.scheduler == "mo-asha-method" else None)
    # ASHA takes one metric: it stops trials early on val_accuracy only (documented).
    return _private_api.SnapshotASHAScheduler(metric=schema.VAL_ACCURACY, mode="max",
                                              time_attr="training_iteration", grace_period=1, reduction_factor=2)


def trial_dirname(trial) -> str:
    """Short trial folder names (Tune's default embeds every parameter)."""
    return f"trial_{trial.trial_id}"


def make_trainable(cfg: LaunchConfig):
    """The trial function with its per-trial resources."""
    from ray import tune

    from .trainable import rank_search_trainable

    resources = {"cpu": cfg.cpus_per_trial, "gpu": cfg.gpus_per_trial, **cfg.resources}
    return tune.with_resources(rank_search_trainable, resources)


def make_run_config(cfg: LaunchConfig, storage: str, name: str, epochs: int):
    """Where and how Tune keeps the experiment: storage, retries, checkpoints, progress lines and
    the trackers of ``cfg.log_to`` (``tracking``; Tune keeps them in ``tuner.pkl`` for ``resume``)."""
    from ray import tune

    from .progress import ProgressPrinter, say
    from .tracking import describe, make_callbacks

    trackers = make_callbacks(cfg.log_to, sweep=name, storage=storage)
    if trackers:
        say("tracking: " + describe(cfg.log_to, experiment=storage.rstrip("/") + "/" + name))
    return tune.RunConfig(
        name=name, storage_path=storage, verbose=0,
        failure_config=tune.FailureConfig(max_failures=cfg.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
        callbacks=[ProgressPrinter(cfg.num_samples, epochs), *trackers],
    )

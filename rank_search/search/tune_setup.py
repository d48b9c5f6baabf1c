"""Tune and Optuna objects of a sweep: the searcher, the scheduler, the trainable with its
resources and the run config (what `launch` and `resume` hand to ``tune.Tuner``)."""
from __future__ import annotations

import math
from typing import Callable

from .. import schema
from .settings import LaunchConfig


def nsga2_population(num_samples: int) -> int:
    """NSGA-II generation size for a budget: a quarter of the trials, clamped to [4, 50].

    Optuna's default of 50 means a sweep of fewer than 50 trials never leaves the first,
    purely random generation (then NSGA-II is exactly random search); four generations or
    more let selection and crossover act.
    """
    return max(4, min(50, num_samples // 4))


STUDY_NAME = "rank_search"


def study_storage(path: str):
    """The Optuna study's storage: a journal file in a local experiment folder (``optuna-dashboard
    EXP/optuna_study.log`` opens it), None (in memory, restored from Tune's searcher state) for
    an experiment on a URI: a journal file needs a local file system with file locks."""
    import os

    from ..schema import is_uri

    if is_uri(path):
        return None
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return JournalStorage(JournalFileBackend(os.path.join(path, schema.STUDY_FILE)))


def refine_settings(cfg: LaunchConfig, dense_accuracy: float | None,
                    target: tuple[float, float, bool] | None = None, allocations: tuple[str, ...] = (),
                    methods: tuple[str, ...] = ()) -> dict:
    """The ``refine`` searcher's view of the objectives: ratio objectives in log space, with a
    dense reference a parent floor on validation accuracy ``schema.ACCURACY_MARGIN`` below it, and
    with a searched target MACs compression ``target`` = (low, high, log) while MACs compression is
    maximised, gap fills along it at the spacing of a uniform grid of the sweep's budget, with the
    uniform allocation where the space searches ``allocations`` including it: on resnet20 it kept
    more accuracy than the profile's at 6.5-13x (benchmarks/RESULTS.md), where fills go; with two
    or more planned ``methods`` the method of a warm-start point that leaves it open is chosen by
    the methods' results (``FrontSampler``'s share)."""
    floors = {i: dense_accuracy - schema.ACCURACY_MARGIN for i, (m, mode) in enumerate(cfg.objectives)
              if m == schema.VAL_ACCURACY and mode == "max" and dense_accuracy is not None}
    logs = tuple(i for i, (m, mode) in enumerate(cfg.objectives) if m in schema.RATIO_METRICS and mode == "max")
    out = {"floors": floors, "log_objectives": logs}
    macs = [i for i, (m, mode) in enumerate(cfg.objectives) if m == schema.MACS_COMPRESSION and mode == "max"]
    if target is not None and macs and target[1] > target[0] and cfg.num_samples > 1:
        low, high, log = target
        spacing = (math.log(high / low) if log else high - low) / (cfg.num_samples - 1)
        out["fill"] = (schema.TARGET_KEY, macs[0], spacing)
        if len(allocations) > 1 and "uniform" in allocations:
            out["fill_fixed"] = {schema.ALLOCATION_KEY: "uniform"}
    if len(methods) > 1:
        out["share"] = (schema.METHOD_KEY, tuple(methods))
    return out


def make_searcher(cfg: LaunchConfig, sampler_fn: Callable, *, points: list[dict] | None = None, storage=None,
                  dense_accuracy: float | None = None, target: tuple[float, float, bool] | None = None,
                  allocations: tuple[str, ...] = (), methods: tuple[str, ...] = ()):
    """OptunaSearch over the space's define-by-run sampler; ``points`` are enqueued first (the
    warm start), ``storage`` keeps the study (see ``study_storage``), ``dense_accuracy`` (the
    dense reference's validation accuracy) sets the ``refine`` searcher's floor, ``target`` (a
    searched target compression: low, high, log) and ``allocations`` (the searched ones) its gap
    fills, ``methods`` (the planned ones) its choice of an open method (see ``refine_settings``)."""
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "study created" line per launch

    if cfg.searcher == "nsga2":
        from .nsga2 import PicklableNSGAIISampler

        sampler = PicklableNSGAIISampler(seed=cfg.seed, population_size=nsga2_population(cfg.num_samples))
    elif cfg.searcher == "tpe":
        sampler = optuna.samplers.TPESampler(seed=cfg.seed)
    elif cfg.searcher == "refine":
        from .front_sampler import FrontSampler

        sampler = FrontSampler(seed=cfg.seed, **refine_settings(cfg, dense_accuracy, target, allocations, methods))
    else:
        sampler = optuna.samplers.RandomSampler(seed=cfg.seed)
    metrics = [m for m, _ in cfg.objectives]
    modes = [m for _, m in cfg.objectives]
    common = dict(space=sampler_fn, sampler=sampler, seed=cfg.seed, points_to_evaluate=points or None,
                  storage=storage, study_name=STUDY_NAME)
    if len(metrics) == 1:
        search = OptunaSearch(metric=metrics[0], mode=modes[0], **common)
    else:
        search = OptunaSearch(metric=metrics, mode=modes, **common)
    check_directions(search, cfg)
    return search


def check_directions(search, cfg: LaunchConfig) -> None:
    """The Optuna study must really have one direction per objective (ray#35909 silently drops
    to single-objective when metric/mode are also set on TuneConfig)."""
    # Private on purpose: Ray 2.60's OptunaSearch has no public accessor for the study it
    # builds (it is created inside __init__ from metric/mode), and the public
    # ``optuna.load_study`` cannot reach it when the study lives in memory (no storage: an
    # experiment on a URI). The check guards against ray#35909, so it must see that very object.
    study = search._ot_study
    want = ["maximize" if m == "max" else "minimize" for _, m in cfg.objectives]
    got = [d.name.lower() for d in study.directions]
    if got != want:
        raise RuntimeError(f"Optuna study directions are {got}, expected {want}")


def make_scheduler(cfg: LaunchConfig):
    if cfg.scheduler == "fifo":
        return None
    from ray.tune.schedulers import ASHAScheduler

    # ASHA takes one metric: it stops trials early on val_accuracy only (documented).
    return ASHAScheduler(metric=schema.VAL_ACCURACY, mode="max", time_attr="training_iteration",
                         grace_period=1, reduction_factor=2)


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
    """Where and how Tune keeps the experiment: storage, retries, checkpoints, progress lines."""
    from ray import tune

    from .progress import ProgressPrinter

    return tune.RunConfig(
        name=name, storage_path=storage, verbose=0,
        failure_config=tune.FailureConfig(max_failures=cfg.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
        callbacks=[ProgressPrinter(cfg.num_samples, epochs)],
    )

"""Run a sweep with Ray Tune: `launch` a new one or `resume` an interrupted one."""
from __future__ import annotations

import dataclasses
import datetime as _dt
import os
from dataclasses import dataclass

from search_spaces import SpaceSampler, get_space

from ..errors import RankSearchError
from .check import check_space
from .progress import say
from .launcher import (LaunchConfig, config_from_record, init_ray, is_uri, make_scheduler, make_searcher, trial_dirname,
                       read_sweep_file, resolve_storage, write_sweep_file)


@dataclass(frozen=True)
class SweepOutcome:
    path: str
    complete: bool
    counts: dict
    num_samples: int


def _trainable(cfg: LaunchConfig):
    from ray import tune

    from .trainable import rank_search_trainable

    resources = {"cpu": cfg.cpus_per_trial, "gpu": cfg.gpus_per_trial, **cfg.resources}
    return tune.with_resources(rank_search_trainable, resources)


def _run_config(cfg: LaunchConfig, storage: str, name: str, epochs: int):
    from ray import tune

    from .progress import ProgressPrinter

    return tune.RunConfig(
        name=name, storage_path=storage, verbose=0,
        failure_config=tune.FailureConfig(max_failures=cfg.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
        callbacks=[ProgressPrinter(cfg.num_samples, epochs)],
    )


def launch(cfg: LaunchConfig) -> SweepOutcome:
    """Start a new sweep; returns when it ends or is interrupted (then ``complete`` is False)."""
    from ray import tune

    space = get_space(cfg.space)
    if cfg.epochs is not None:
        space = dataclasses.replace(space, epochs=cfg.epochs)
    groups = check_space(space)
    storage = resolve_storage(cfg)
    name = cfg.name or f"{space.name}-{_dt.datetime.now():%Y%m%d-%H%M%S}"
    path = f"{storage.rstrip('/')}/{name}"
    if not is_uri(path) and os.path.exists(path):
        raise RankSearchError(f"experiment {path!r} already exists; resume it with `rank-search resume {path}` "
                              "or choose another --name")
    cfg = dataclasses.replace(cfg, name=name, storage=storage)
    started = init_ray(cfg.address, num_gpus=None)
    try:
        write_sweep_file(path, cfg, space.to_plain())
        say(f"sweep {name}: {cfg.num_samples} trials of space {space.name!r} ({space.model} on {space.dataset}, "
            f"{space.epochs} epochs, methods {', '.join(space.methods)}, {space.grouping} ranks over "
            f"{len(groups)} group(s)), searcher {cfg.searcher}, scheduler {cfg.scheduler}")
        say(f"experiment folder: {path}")
        tuner = tune.Tuner(
            _trainable(cfg),
            tune_config=tune.TuneConfig(
                search_alg=make_searcher(cfg, SpaceSampler(space, groups)), scheduler=make_scheduler(cfg),
                num_samples=cfg.num_samples, max_concurrent_trials=cfg.max_concurrent, reuse_actors=True,
                trial_dirname_creator=trial_dirname,
            ),
            run_config=_run_config(cfg, storage, name, space.epochs),
        )
        tuner.fit()
    finally:
        if started:
            import ray

            ray.shutdown()
    return _outcome(path, cfg.num_samples)


def resume(path: str) -> SweepOutcome:
    """Finish an interrupted sweep: unfinished and errored trials continue from their checkpoints,
    the searcher state is restored, finished trials are left as they are."""
    from ray import tune

    path = path if is_uri(path) else os.path.abspath(path)
    cfg = config_from_record(read_sweep_file(path))
    if not tune.Tuner.can_restore(path):
        raise RankSearchError(f"{path!r} holds no Tune experiment state to resume (was the sweep ever started?)")
    started = init_ray(cfg.address)
    try:
        say(f"resuming sweep {cfg.name} at {path}")
        tuner = tune.Tuner.restore(path, trainable=_trainable(cfg), resume_unfinished=True, resume_errored=True,
                                   restart_errored=False)
        tuner.fit()
    finally:
        if started:
            import ray

            ray.shutdown()
    return _outcome(path, cfg.num_samples)


def _outcome(path: str, num_samples: int) -> SweepOutcome:
    from analysis.loading import trial_counts

    counts = trial_counts(path)
    complete = counts.get("TERMINATED", 0) + counts.get("ERROR", 0) >= num_samples
    return SweepOutcome(path, complete, counts, num_samples)

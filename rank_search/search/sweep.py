"""Run a sweep with Ray Tune: `launch` a new one or `resume` an interrupted one."""
from __future__ import annotations

import dataclasses
import datetime as _dt
import os
from dataclasses import dataclass

from search_spaces import SpaceSampler, get_space

from ..errors import RankSearchError
from ..schema import is_uri
from ..storage import Location
from .check import check_space
from .progress import say
from .ray_session import init_ray
from .settings import LaunchConfig, resolve_storage
from .sweep_record import config_from_record, read_sweep_record, write_sweep_record
from .reference import check_dense_weights, prepare_references
from .tune_setup import make_run_config, make_scheduler, make_searcher, make_trainable, study_storage, trial_dirname
from .warm_start import warm_start_points


def narrow_targets(space, low: float | None, high: float | None):
    """``space`` with its target range cut to [low, high] (`launch --min/--max-compression`)."""
    if low is None and high is None:
        return space
    if space.rank_mode != "sensitivity":
        raise RankSearchError("--min-compression/--max-compression need a budget-driven space "
                              "(ranks: {allocation: sensitivity, target: ...})")
    from search_spaces import Dim

    t = space.target
    lo, hi = space.target_bounds()
    lo, hi = max(lo, low or lo), min(hi, high or hi)
    if lo > hi:
        raise RankSearchError(f"--min/--max-compression leave no target in the space's range {t.to_plain()}")
    target = Dim("fixed", value=lo) if lo == hi else Dim("float", low=lo, high=hi, log=t.log or t.kind != "float")
    return dataclasses.replace(space, target=target)


@dataclass(frozen=True)
class SweepOutcome:
    path: str
    complete: bool
    counts: dict
    num_samples: int


def launch(cfg: LaunchConfig) -> SweepOutcome:
    """Start a new sweep; returns when it ends or is interrupted (then ``complete`` is False)."""
    from ray import tune

    space = narrow_targets(get_space(cfg.space), cfg.min_compression, cfg.max_compression)
    if cfg.epochs is not None:
        space = dataclasses.replace(space, epochs=cfg.epochs)
    groups = check_space(space)
    if cfg.dense:
        check_dense_weights(space, cfg.dense)
    storage = resolve_storage(cfg)
    name = cfg.name or f"{space.name}-{_dt.datetime.now():%Y%m%d-%H%M%S}"
    path = f"{storage.rstrip('/')}/{name}"
    if Location(path).exists():
        raise RankSearchError(f"experiment {path!r} already exists; resume it with `rank-search resume {path}` "
                              "or choose another --name")
    cfg = dataclasses.replace(cfg, name=name, storage=storage)
    started = init_ray(cfg.address, num_gpus=None)
    try:
        write_sweep_record(path, cfg, space.to_plain())
        ranks = (f"{space.grouping} ranks over {len(groups)} group(s)" if space.rank_mode == "per_group" else
                 f"ranks allocated ({', '.join(space.allocations)}) to targets {space.target.to_plain()}")
        say(f"sweep {name}: {cfg.num_samples} trials of space {space.name!r} ({space.model} on {space.dataset}, "
            f"{space.epochs} epochs, methods {', '.join(space.methods)}, {ranks}), searcher {cfg.searcher}, "
            f"scheduler {cfg.scheduler}")
        say(f"experiment folder: {path}")
        refs = prepare_references(path, space, cfg)
        points = warm_start_points(space, groups, cfg.num_samples, cfg.warm_start)
        if points:
            say(f"warm start: the first {len(points)} trials are enqueued (every method, "
                f"{'targets' if space.rank_mode == 'sensitivity' else 'uniform ratios'} over the range)")
        searcher = make_searcher(cfg, SpaceSampler(space, groups, refs.constants()), points=points,
                                 storage=study_storage(path))
        tuner = tune.Tuner(
            make_trainable(cfg),
            tune_config=tune.TuneConfig(
                search_alg=searcher, scheduler=make_scheduler(cfg),
                num_samples=cfg.num_samples, max_concurrent_trials=cfg.max_concurrent, reuse_actors=True,
                trial_dirname_creator=trial_dirname,
            ),
            run_config=make_run_config(cfg, storage, name, space.epochs),
        )
        results = tuner.fit()
    finally:
        if started:
            import ray

            ray.shutdown()
    return _outcome(path, results, cfg.num_samples)


def resume(path: str) -> SweepOutcome:
    """Finish an interrupted sweep: unfinished and errored trials continue from their checkpoints,
    the searcher state is restored, finished trials are left as they are.

    ``path`` is a local folder or a URI (``file://``, ``s3://``, ...). Tune restores its state by
    unpickling the experiment's ``tuner.pkl`` and searcher files: resume only experiments that you
    or your cluster wrote.
    """
    from ray import tune

    path = path if is_uri(path) else os.path.abspath(path)
    cfg = config_from_record(read_sweep_record(path))
    if not tune.Tuner.can_restore(path):
        raise RankSearchError(f"{path!r} holds no Tune experiment state to resume (was the sweep ever started?)")
    started = init_ray(cfg.address)
    try:
        say(f"resuming sweep {cfg.name} at {path}")
        tuner = tune.Tuner.restore(path, trainable=make_trainable(cfg), resume_unfinished=True, resume_errored=True,
                                   restart_errored=False)
        results = tuner.fit()
    finally:
        if started:
            import ray

            ray.shutdown()
    return _outcome(path, results, cfg.num_samples)


def _outcome(path: str, results, num_samples: int) -> SweepOutcome:
    """Trial counts by status from Tune's own ``ResultGrid`` (the search does not read its
    results back through ``analysis``)."""
    terminated, errored = results.num_terminated, results.num_errors
    counts = {"TERMINATED": terminated, "ERROR": errored, "UNFINISHED": len(results) - terminated - errored}
    counts = {k: v for k, v in counts.items() if v}
    return SweepOutcome(path, terminated + errored >= num_samples, counts, num_samples)

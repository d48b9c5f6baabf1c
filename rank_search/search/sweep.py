"""Run a sweep with Ray Tune: `launch` a new one or `resume` an interrupted one.

Everything a user can get wrong is checked before any folder is made or Ray started (the space,
the settings, the data set's files, ``--storage``, an existing experiment at any URI); with
``--download`` the data set is then fetched, once, in this process; what needs Ray (can any node
fit a trial?) right after it starts, before the experiment folder exists. A launch that fails
before its trials start removes the folder it made; one interrupted (Ctrl-C, SIGTERM) keeps it for
`resume`. One driver per sweep: launch and resume lock the experiment (``search.lock``).
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import os
from dataclasses import dataclass

from search_spaces import SpaceSampler, get_space

from .. import schema
from ..data import check_data
from ..errors import RankSearchError
from ..schema import is_uri
from ..storage import Location, split_path
from .driver import driver_file, full_disk_stops, remove_experiment
from .journal import check_journal
from .lock import DriverLock
from .check import check_recorded_data, check_space, download_data
from .progress import say
from .ray_session import ray_session
from ._private_api import check_versions, resuming_at
from .restore import FINISHED, ORPHANED_DIR, read_tune_state, set_aside_orphans
from .settings import LaunchConfig, check_storage, probe_storage, resolve_storage
from .sweep_record import config_from_record, read_sweep_record, record_num_samples, write_sweep_record
from .reference import check_dense_weights, check_given_profile, prepare_references
from .searchers import SearchContext
from .budget import BudgetSearcher, planned_trials, reference_seconds, spent_seconds
from .tune_setup import (make_run_config, make_scheduler, make_search_alg, make_searcher, make_trainable, study_storage,
                         trial_dirname)
from .warm_start import planned_methods, warm_start_points
from .oneshot_sweep import check_oneshot, prepare_oneshot


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
    nothing_to_do: bool = False  # `resume` of a sweep whose trials had all finished


@dataclass(frozen=True)
class Preflight:
    """A launch checked before anything is made: the space as run, its rank groups, the folder."""

    cfg: LaunchConfig
    space: object
    groups: list
    path: str


def preflight(cfg: LaunchConfig) -> Preflight:
    """Every check of `launch` that needs neither Ray nor a folder; raises ``RankSearchError``."""
    check_versions()  # a resume of this sweep would rely on private names of this Ray and Optuna
    try:
        space = get_space(cfg.space)
    except UnicodeDecodeError:
        raise RankSearchError(f"--space {cfg.space!r} is not a YAML text file (not UTF-8)") from None
    space = narrow_targets(space, cfg.min_compression, cfg.max_compression)
    if cfg.epochs is not None:
        space = dataclasses.replace(space, epochs=cfg.epochs)
    if cfg.train_seed is not None:  # every trial (and the dense reference) trains with it
        space = dataclasses.replace(space, seed=cfg.train_seed)
    if cfg.data_root is not None:  # absolute: trials run in other folders, resume from anywhere
        cfg = dataclasses.replace(cfg, data_root=os.path.abspath(os.path.expanduser(cfg.data_root)))
        space = dataclasses.replace(space, data_root=cfg.data_root)
    elif space.data_root and not is_uri(space.data_root) and not os.path.isabs(space.data_root):
        # a relative data_root in the space file means the launching folder, as --data-root does
        space = dataclasses.replace(space, data_root=os.path.abspath(os.path.expanduser(space.data_root)))
    groups = check_space(space)
    if cfg.searcher == "oneshot":
        space = check_oneshot(space, cfg)
    # the files are there (or can be fetched there), rather than every trial failing to find them
    check_data(space.dataset, data_root=space.data_root, download=cfg.download)
    if cfg.dense:
        check_dense_weights(space, cfg.dense)
    if cfg.profile:
        check_given_profile(space, cfg.profile)
        if not is_uri(cfg.profile):  # recorded absolute, as --data-root
            cfg = dataclasses.replace(cfg, profile=os.path.abspath(os.path.expanduser(cfg.profile)))
    storage = resolve_storage(cfg)
    check_storage(storage)
    name = cfg.name or f"{space.name}-{_dt.datetime.now():%Y%m%d-%H%M%S}"
    path = f"{storage.rstrip('/')}/{name}"
    if Location(path).exists():
        raise RankSearchError(f"experiment {path!r} already exists; resume it with `rank-search resume {path}` "
                              "or choose another --name")
    return Preflight(dataclasses.replace(cfg, name=name, storage=storage), space, groups, path)


def check_resources(cfg: LaunchConfig) -> None:
    """Some live node of the Ray cluster can run a trial; otherwise Tune would leave every trial
    PENDING for ever. Names what the nodes have."""
    import ray

    need = {"CPU": cfg.cpus_per_trial, "GPU": cfg.gpus_per_trial, **cfg.resources}
    need = {k: float(v) for k, v in need.items() if v > 0}
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if any(all(n.get("Resources", {}).get(k, 0.0) >= v for k, v in need.items()) for n in nodes):
        return
    shown = ("CPU", "GPU", *cfg.resources)
    have = "; ".join(
        f"{n.get('NodeManagerAddress', '?')}: " + ", ".join(f"{k} {n.get('Resources', {}).get(k, 0.0):g}" for k in shown)
        for n in nodes) or "no live node"
    want = ", ".join(f"{k} {v:g}" for k, v in need.items())
    raise RankSearchError(f"no node of the Ray cluster can ever run a trial needing {want} "
                          f"(--cpus-per-trial/--gpus-per-trial/--resource); the nodes have: {have}")


def launch(cfg: LaunchConfig) -> SweepOutcome:
    """Start a new sweep; returns when it ends or is interrupted (then ``complete`` is False)."""
    pre = preflight(cfg)
    if pre.cfg.download:
        download_data(pre.space.dataset, pre.space.data_root)
    held: list[DriverLock] = []
    try:
        with full_disk_stops(pre.path), ray_session(pre.cfg.address, num_gpus=None):
            check_resources(pre.cfg)
            try:
                # the folder appears locked: a `resume` pasted from the header cannot slip in
                write_sweep_record(pre.path, pre.cfg, pre.space.to_plain(),
                                   on_made=lambda folder: held.append(DriverLock.acquire(pre.path, folder=folder)))
                return _start(pre.cfg, pre.space, pre.groups, pre.path, made_here=True)
            finally:
                for lock in held:
                    lock.release()
    except KeyboardInterrupt:
        if not held:  # stopped before its folder appeared (the record is written whole or not at all)
            say(f"launch interrupted before its experiment folder was made: nothing was kept at {pre.path}")
        raise


def _searched_target(space) -> tuple[float, float, bool] | None:
    """(low, high, log) of a budget-driven space's searched float target, else None."""
    if space.rank_mode != "sensitivity" or space.target.kind != "float":
        return None
    low, high = space.target_bounds()
    return low, high, bool(space.target.log)


def _start(cfg: LaunchConfig, space, groups: list, path: str, *, made_here: bool) -> SweepOutcome:
    """The sweep's references, searcher and tuner, then its trials (Ray is up, the record written).
    A failure before the trials start removes the folder when this launch made it."""
    from ray import tune

    try:
        ranks = (f"{space.grouping} ranks over {len(groups)} group(s)" if space.rank_mode == "per_group" else
                 f"ranks allocated ({', '.join(space.allocations)}) to {space.budget} targets {'{:g}-{:g}x'.format(*space.target_bounds())}{' (log)' if space.target.log else ''}")
        if cfg.searcher == "oneshot":
            ranks = "ranks from the one-shot front of a nested model"
        trials = (f"{cfg.num_samples} trials" if cfg.budget_hours is None else
                  f"trials for {cfg.budget_hours:g} trial-hours (at most {cfg.num_samples})")
        say(f"sweep {cfg.name}: {trials} of space {space.name!r} ({space.model} on "
            f"{space.dataset}, {space.epochs} epochs, methods {', '.join(space.methods)}, {ranks}), "
            f"training seed {space.seed}, searcher {cfg.searcher} (seed {cfg.seed}), scheduler {cfg.scheduler}")
        say(f"experiment folder: {path}")
        if space.rank_mode == "sensitivity" and space.budget == "macs" and any(
                m.startswith("latency") for m, _ in cfg.objectives):
            say("note: a latency objective with MACs targets; ranks.budget: latency allocates from measured "
                "layer times instead (README, budget-driven spaces)")
        refs = prepare_references(path, space, cfg)
        epochs = space.epochs
        if cfg.searcher == "oneshot":  # the trials are the one-shot front's points
            oneshot = prepare_oneshot(path, space, cfg, refs)
            if len(oneshot.configs) != cfg.num_samples:  # a front of fewer points: the sweep runs them all
                cfg = dataclasses.replace(cfg, num_samples=len(oneshot.configs))
                record_num_samples(path, cfg.num_samples)
            sampler_fn, points, epochs = oneshot, oneshot.points(), oneshot.epochs
        else:
            planned = (cfg.num_samples if cfg.budget_hours is None
                       else planned_trials(cfg.budget_hours, path, cfg.num_samples))
            points = warm_start_points(space, groups, planned, cfg.warm_start, by_results=cfg.searcher == "refine")
            sampler_fn = SpaceSampler(space, groups, refs.constants())
        if points and cfg.searcher != "oneshot":
            open_ = sum(1 for p in points if schema.METHOD_KEY not in p) if len(space.methods) > 1 else 0
            say(f"warm start: the first {len(points)} trials are enqueued (every method, "
                f"{'targets' if space.rank_mode == 'sensitivity' else 'uniform ratios'} over the range"
                + (f"; the method of the last {open_ if open_ > 1 else 'one'} chosen by the methods' results so far)"
                   if open_ else ")"))
        context = SearchContext(cfg, dense_accuracy=refs.accuracy, target=_searched_target(space),
                                allocations=tuple(space.allocations), methods=tuple(planned_methods(space)))
        searcher = make_searcher(context, sampler_fn, points=points, storage=study_storage(path))
        if cfg.budget_hours is not None:
            searcher = BudgetSearcher(searcher, hours=cfg.budget_hours, reference=reference_seconds(path))
        tuner = tune.Tuner(
            make_trainable(cfg),
            tune_config=tune.TuneConfig(
                search_alg=make_search_alg(searcher, max_concurrent=cfg.max_concurrent),
                scheduler=make_scheduler(cfg, path=path, epochs=epochs, dense_accuracy=refs.accuracy),
                num_samples=cfg.num_samples, reuse_actors=True,
                trial_dirname_creator=trial_dirname,
            ),
            run_config=make_run_config(cfg, cfg.storage, cfg.name, epochs),
        )
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (ray_session): the folder resumes from here
        say(f"launch interrupted during its set-up; what it made is kept: finish it with "
            f"`rank-search resume {path}`")
        raise
    except BaseException:
        if made_here:
            remove_experiment(path)  # a failure, nothing ran yet: leave no half-made experiment behind
        raise
    with driver_file(path):
        tuner.fit()
    return _outcome(path, cfg)


# What a launch stopped before its first trial leaves besides its record and references: the
# study's enqueued warm start and Tune's pickles. A restart makes them afresh (kept, the enqueued
# points would run twice).
_UNSTARTED = ("tuner.pkl", "search_gen_state-", "searcher-state-")


def _restart(path: str, cfg: LaunchConfig, record: dict) -> SweepOutcome:
    """Start, in its folder, a sweep whose launch was stopped before its first trial (no Tune
    snapshot yet; the snapshot is written before any trial starts): its dense reference and
    profile, when they were made, are reused."""
    from search_spaces import space_from_mapping

    plain = record.get("space")
    if not isinstance(plain, dict):
        raise RankSearchError(f"{schema.SWEEP_FILE} in {path!r} has no 'space' mapping")
    space = space_from_mapping(plain, name=str(plain.get("name") or cfg.space))
    groups = check_space(space)
    storage, name = split_path(path)
    cfg = dataclasses.replace(cfg, storage=storage, name=name)  # where it is now
    cfg = _recorded_references(path, cfg, record, space)
    check_recorded_data(record, download=cfg.download)
    with ray_session(cfg.address):
        check_resources(cfg)
        say(f"sweep {name} was stopped before its first trial started: starting it now")
        loc = Location(path)
        for f in loc.listdir():
            if f == schema.STUDY_FILE or f.startswith(_UNSTARTED):
                loc.delete(f)
        return _start(cfg, space, groups, path, made_here=False)


def _check_made_references(path: str, record: dict) -> None:
    """Before `resume` starts Ray: the dense reference and profile its trials read from the
    experiment folder are whole and finite (a damaged one is one line here, not every trial
    failing its retries)."""
    from search_spaces import space_from_mapping

    plain = record.get("space")
    loc = Location(path)
    if not isinstance(plain, dict) or not loc.is_file(schema.DENSE_WEIGHTS_FILE):
        return
    space = space_from_mapping(plain, name=str(plain.get("name") or "space"))
    if loc.local_path() is not None:
        check_dense_weights(space, loc.local_path(schema.DENSE_WEIGHTS_FILE))
    if space.needs_profile:  # a uniform allocation reads no profile
        check_given_profile(space, path)


def _recorded_references(path: str, cfg: LaunchConfig, record: dict, space) -> LaunchConfig:
    """``cfg`` with the launch's ``--dense`` and ``--profile`` (from the record) for a restart:
    the copies in the experiment folder where the launch made them, else the original files,
    which must still be there (a restart must not train a reference of its own instead)."""
    launch = record.get("launch") or {}
    dense, profile = launch.get("dense"), launch.get("profile")
    if not isinstance(dense, str):
        return cfg
    loc = Location(path)
    if loc.is_file(schema.DENSE_WEIGHTS_FILE) and loc.local_path() is not None:
        dense_now = loc.local_path(schema.DENSE_WEIGHTS_FILE)
    elif os.path.isfile(dense):
        dense_now = dense
    else:
        raise RankSearchError(f"sweep {path!r} was stopped before it copied its --dense {dense!r}, which no longer "
                              "exists: put the file back there and resume again")
    have_profile = loc.is_file(schema.PROFILE_FILE) and loc.is_file(schema.PROFILE_META_FILE)
    if isinstance(profile, str) and not have_profile:
        check_given_profile(space, profile)  # still there, and still fits (finite, complete)
    check_dense_weights(space, dense_now)
    return dataclasses.replace(cfg, dense=dense_now, profile=profile if isinstance(profile, str) else None)


def resume(path: str) -> SweepOutcome:
    """Finish an interrupted sweep: unfinished and errored trials continue from their checkpoints,
    the searcher state is restored, finished trials are left as they are.

    ``path`` is a local folder or a URI (``file://``, ``s3://``, ...), wherever the experiment is
    now (it may have been moved since launch). Tune restores its state by unpickling the
    experiment's ``tuner.pkl`` and searcher files: resume only experiments that you or your
    cluster wrote. Damaged state is a one-line error, a sweep whose trials all finished is left
    alone (Ray is not started), and one stopped before its first trial is started afresh. The data
    set is checked (or, after a ``--download`` launch, fetched) before Ray starts. A second
    driver of the same experiment is refused (``search.lock``).
    """
    check_versions()  # before anything is read or repaired: resume relies on private Ray names
    path = path.rstrip("/") if is_uri(path) else os.path.abspath(path)
    if is_uri(path) and not path.startswith("file://"):
        probe_storage(path)  # a store that does not answer is one line, not a hang
    record = read_sweep_record(path)
    cfg = config_from_record(record, path=path)
    # checked before the lock too: damaged state, or nothing to do, leaves the folder untouched
    outcome = _nothing_to_do(path, cfg)
    if outcome is not None:
        return outcome
    with full_disk_stops(path), DriverLock.acquire(path):  # one driver per sweep
        return _resume_locked(path, cfg, record)


def _nothing_to_do(path: str, cfg: LaunchConfig) -> SweepOutcome | None:
    """The outcome of a sweep whose trials all finished (None otherwise); damaged state raises."""
    state = read_tune_state(path)
    if state is None:
        return None
    if not Location(path).is_file("tuner.pkl"):
        raise RankSearchError(f"{path!r} holds no Tune experiment state to resume (a snapshot but no tuner.pkl)")
    if (len(state.statuses) >= cfg.num_samples or _budget_spent(path, cfg)) and \
            all(s == FINISHED for s in state.statuses.values()):
        counts = {FINISHED: len(state.statuses)}
        return SweepOutcome(path, True, counts, cfg.num_samples, nothing_to_do=True)
    return None


def _resume_locked(path: str, cfg: LaunchConfig, record: dict) -> SweepOutcome:
    from ray import tune

    if read_tune_state(path) is None:
        return _restart(path, cfg, record)
    outcome = _nothing_to_do(path, cfg)  # again: a driver may have finished it meanwhile
    if outcome is not None:
        return outcome
    check_recorded_data(record, download=cfg.download)
    _check_made_references(path, record)
    state = read_tune_state(path)
    check_journal(path, trials_on_disk=len(state.statuses) if state else 0)  # before anything appends to it
    orphans = set_aside_orphans(path, state)
    if orphans:
        say(f"{len(orphans)} trial folder(s) Tune's snapshot does not list moved to {ORPHANED_DIR}/; "
            f"their configurations run again: {', '.join(orphans)}")
    with ray_session(cfg.address):
        check_resources(cfg)
        say(f"resuming sweep {cfg.name} at {path}")
        with resuming_at(path), driver_file(path):
            try:
                tuner = tune.Tuner.restore(path, trainable=make_trainable(cfg), resume_unfinished=True,
                                           resume_errored=True, restart_errored=False)
            except (ModuleNotFoundError, AttributeError) as exc:  # unpickling names this code no longer has
                if isinstance(exc, AttributeError) and "Can't get attribute" not in str(exc):
                    raise
                raise RankSearchError(f"cannot resume {path}: its saved Tune state names code this rank-search "
                                      f"does not have ({exc}); it was launched by another version: resume it "
                                      f"with that version, or launch the sweep again") from None
            tuner.fit()
        return _outcome(path, cfg)


def _budget_spent(path: str, cfg: LaunchConfig) -> bool:
    return cfg.budget_hours is not None and spent_seconds(path) >= cfg.budget_hours * 3600


def _outcome(path: str, cfg: LaunchConfig) -> SweepOutcome:
    """Trial counts by status from Tune's last snapshot on disk, written before ``fit`` returns.
    (Tune's ``ResultGrid`` calls the trials it stopped on Ctrl-C TERMINATED; the snapshot keeps
    them RUNNING, which is what they are: unfinished.) A sweep with a budget is complete once it
    is spent and no trial is unfinished."""
    num_samples = cfg.num_samples
    state = read_tune_state(path)
    statuses = list(state.statuses.values()) if state is not None else []
    terminated, errored = statuses.count(FINISHED), statuses.count("ERROR")
    counts = {"TERMINATED": terminated, "ERROR": errored, "UNFINISHED": len(statuses) - terminated - errored}
    counts = {k: v for k, v in counts.items() if v}
    enough = terminated + errored >= num_samples or _budget_spent(path, cfg)
    return SweepOutcome(path, enough and not counts.get("UNFINISHED"), counts, num_samples)

"""Launch and resume sweeps: Ray Tune distributes trials, Optuna searches (multi-objective).

Ray is started privately (``address="local"``) unless an address is given; nothing here runs
``ray stop``. Sweep settings are written next to Tune's files (``rank_search_sweep.yaml``) so
``status``, ``export``, ``analyze`` and ``resume`` read them without Ray.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import os
import tempfile
from dataclasses import dataclass, field
from typing import Any, Callable

import yaml

from .. import schema
from ..errors import RankSearchError

SEARCHERS = ("nsga2", "tpe", "random")
SCHEDULERS = ("fifo", "asha")
SWEEP_FILE = schema.SWEEP_FILE
URI_SCHEMES = ("s3://", "gs://", "gcs://", "abfs://", "hdfs://", "file://")


@dataclass(frozen=True)
class LaunchConfig:
    """Settings of one sweep (the `rank-search launch` flags)."""

    space: str
    num_samples: int = 16
    epochs: int | None = None
    searcher: str = "nsga2"
    scheduler: str = "fifo"
    max_concurrent: int | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    resources: dict[str, float] = field(default_factory=dict)
    address: str = "local"
    storage: str | None = None
    name: str | None = None
    seed: int = 0
    objectives: tuple[tuple[str, str], ...] = ((schema.VAL_ACCURACY, "max"), (schema.MACS_COMPRESSION, "max"))
    max_failures: int = 2

    def __post_init__(self) -> None:
        if self.num_samples < 1:
            raise RankSearchError(f"--num-samples must be >= 1, got {self.num_samples}")
        if self.epochs is not None and self.epochs < 1:
            raise RankSearchError(f"--epochs must be >= 1, got {self.epochs}")
        if self.searcher not in SEARCHERS:
            raise RankSearchError(f"--searcher must be one of {', '.join(SEARCHERS)}, got {self.searcher!r}")
        if self.scheduler not in SCHEDULERS:
            raise RankSearchError(f"--scheduler must be one of {', '.join(SCHEDULERS)}, got {self.scheduler!r}")
        if self.max_concurrent is not None and self.max_concurrent < 1:
            raise RankSearchError(f"--max-concurrent must be >= 1, got {self.max_concurrent}")
        if self.cpus_per_trial <= 0:
            raise RankSearchError(f"--cpus-per-trial must be > 0, got {self.cpus_per_trial}")
        if self.gpus_per_trial < 0:
            raise RankSearchError(f"--gpus-per-trial must be >= 0, got {self.gpus_per_trial}")
        if len(self.objectives) < 2 and self.searcher == "nsga2":
            raise RankSearchError("nsga2 is multi-objective: give at least two --objectives")
        for metric, mode in self.objectives:
            if mode not in ("max", "min"):
                raise RankSearchError(f"objective {metric!r} mode must be max or min, got {mode!r}")


def parse_objectives(text: str) -> tuple[tuple[str, str], ...]:
    """``val_accuracy:max,macs_compression:max`` -> ((metric, mode), ...)."""
    out = []
    for part in text.split(","):
        metric, _, mode = part.strip().partition(":")
        if not metric or mode not in ("max", "min"):
            raise RankSearchError(f"objective must be METRIC:max or METRIC:min, got {part.strip()!r}")
        out.append((metric, mode))
    return tuple(out)


def is_uri(path: str) -> bool:
    return path.startswith(URI_SCHEMES)


def resolve_storage(cfg: LaunchConfig) -> str:
    """Where the experiment lives; a cluster run without shared storage is refused."""
    if cfg.address != "local" and cfg.storage is None:
        raise RankSearchError(
            "a cluster run (--address other than local) needs --storage on storage every node shares: "
            "an s3://, gs:// or other pyarrow URI, or a path mounted on every node (NFS); trial "
            "checkpoints written to one node's local disk cannot be restored on another"
        )
    storage = cfg.storage or "runs"
    return storage if is_uri(storage) else os.path.abspath(storage)


def nsga2_population(num_samples: int) -> int:
    """NSGA-II generation size for a budget: a quarter of the trials, clamped to [4, 50].

    Optuna's default of 50 means a sweep of fewer than 50 trials never leaves the first,
    purely random generation (then NSGA-II is exactly random search); four generations or
    more let selection and crossover act.
    """
    return max(4, min(50, num_samples // 4))


def make_searcher(cfg: LaunchConfig, sampler_fn: Callable):
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    if cfg.searcher == "nsga2":
        sampler = optuna.samplers.NSGAIISampler(seed=cfg.seed, population_size=nsga2_population(cfg.num_samples))
    elif cfg.searcher == "tpe":
        sampler = optuna.samplers.TPESampler(seed=cfg.seed)
    else:
        sampler = optuna.samplers.RandomSampler(seed=cfg.seed)
    metrics = [m for m, _ in cfg.objectives]
    modes = [m for _, m in cfg.objectives]
    if len(metrics) == 1:
        search = OptunaSearch(space=sampler_fn, metric=metrics[0], mode=modes[0], sampler=sampler, seed=cfg.seed)
    else:
        search = OptunaSearch(space=sampler_fn, metric=metrics, mode=modes, sampler=sampler, seed=cfg.seed)
    check_directions(search, cfg)
    return search


def check_directions(search, cfg: LaunchConfig) -> None:
    """The Optuna study must really have one direction per objective (ray#35909 silently drops
    to single-objective when metric/mode are also set on TuneConfig)."""
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


def init_ray(address: str, *, num_gpus: float | None = None) -> bool:
    """Connect or start Ray; returns whether this call started it (and must shut it down)."""
    import ray

    if ray.is_initialized():
        return False
    # Tune warns about frequent snapshots: we checkpoint every epoch on purpose (exact resume).
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if address == "local":
        temp = tempfile.mkdtemp(prefix="rs-ray-")
        kwargs: dict[str, Any] = {"address": "local", "_temp_dir": temp, "include_dashboard": False,
                                  "configure_logging": True, "logging_level": "WARNING",
                                  # worker chatter (checkpoint notices) stays in the Ray logs;
                                  # trial errors are reported by Tune and kept in error.txt
                                  "log_to_driver": False}
        if num_gpus is not None:
            kwargs["num_gpus"] = num_gpus
        ray.init(**kwargs)
    else:
        ray.init(address=address, logging_level="WARNING", log_to_driver=False)
    return True


def trial_dirname(trial) -> str:
    """Short trial folder names (Tune's default embeds every parameter)."""
    return f"trial_{trial.trial_id}"


def write_sweep_file(path: str, cfg: LaunchConfig, space_plain: dict) -> None:
    record = {
        "launch": {**dataclasses.asdict(cfg), "objectives": [f"{m}:{d}" for m, d in cfg.objectives]},
        "space": space_plain,
        "created": _dt.datetime.now().isoformat(timespec="seconds"),
    }
    text = yaml.safe_dump(record, sort_keys=False)
    if is_uri(path):
        import pyarrow.fs as pafs

        fs, root = pafs.FileSystem.from_uri(path)
        fs.create_dir(root, recursive=True)
        with fs.open_output_stream(f"{root}/{SWEEP_FILE}") as fh:
            fh.write(text.encode())
    else:
        os.makedirs(path, exist_ok=True)
        with open(os.path.join(path, SWEEP_FILE), "w", encoding="utf-8") as fh:
            fh.write(text)


def read_sweep_file(path: str) -> dict:
    file = os.path.join(path, SWEEP_FILE)
    if not os.path.isfile(file):
        raise RankSearchError(f"{path!r} is not a rank-search experiment (no {SWEEP_FILE})")
    with open(file, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def config_from_record(record: dict) -> LaunchConfig:
    launch = dict(record["launch"])
    launch["objectives"] = parse_objectives(",".join(launch["objectives"]))
    launch["resources"] = dict(launch.get("resources") or {})
    return LaunchConfig(**launch)

"""The settings of one sweep (the `rank-search launch` flags), validated; no ray here."""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field

from .. import schema
from ..errors import RankSearchError
from ..schema import is_uri

SEARCHERS = ("refine", "nsga2", "tpe", "random")
SCHEDULERS = ("fifo", "asha", "mo-asha")
_BUILTIN_RESOURCES = ("CPU", "GPU", "MEMORY", "OBJECT_STORE_MEMORY")


@dataclass(frozen=True)
class LaunchConfig:
    """Settings of one sweep (the `rank-search launch` flags)."""

    space: str
    num_samples: int = 16
    epochs: int | None = None
    searcher: str = "refine"  # see search/front_sampler.py and benchmarks/RESULTS.md
    scheduler: str = "fifo"
    max_concurrent: int | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    resources: dict[str, float] = field(default_factory=dict)
    address: str = "local"
    storage: str | None = None
    name: str | None = None
    seed: int = 0  # the Optuna sampler's seed (`--searcher-seed`)
    train_seed: int | None = None  # every trial's training seed (`--train-seed`; None: the space's `seed`)
    objectives: tuple[tuple[str, str], ...] = schema.DEFAULT_OBJECTIVES
    max_failures: int = 2
    dense: str | None = None  # the user's trained dense weights (a state_dict file)
    profile: str | None = None  # a sensitivity profile measured on those weights (`rank-search profile --out`)
    data_root: str | None = None  # every trial's data folder (`--data-root`; None: the space's `data_root`)
    download: bool = False  # fetch the data set into it once, in the driver, before Ray starts
    min_compression: float | None = None  # narrow a budget-driven space's target range
    max_compression: float | None = None
    warm_start: int | None = None  # trials enqueued first (None: search.warm_start.warm_start_size)

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
        if self.warm_start is not None and not 0 <= self.warm_start <= self.num_samples:
            raise RankSearchError(f"--warm-start must be in [0, --num-samples={self.num_samples}], got {self.warm_start}")
        if self.dense is not None and not os.path.isfile(self.dense):
            raise RankSearchError(f"--dense {self.dense!r} does not exist")
        if self.profile is not None and self.dense is None:
            raise RankSearchError(f"--profile {self.profile!r} needs --dense: the dense weights it was measured on "
                                  "(the sweep would otherwise train its own reference, which the profile did not see)")
        for flag, value in (("--min-compression", self.min_compression), ("--max-compression", self.max_compression)):
            if value is not None and not value >= 1:
                raise RankSearchError(f"{flag} must be a MACs compression >= 1, got {value}")
        if self.min_compression and self.max_compression and self.min_compression > self.max_compression:
            raise RankSearchError(f"--min-compression ({self.min_compression}) must be <= --max-compression "
                                  f"({self.max_compression})")
        for metric, mode in self.objectives:
            if mode not in schema.OBJECTIVE_MODES:
                raise RankSearchError(f"objective {metric!r} mode must be max or min, got {mode!r}")
            if metric not in schema.OBJECTIVE_METRICS:
                raise RankSearchError(f"objective metric must be one every trial reports "
                                      f"({', '.join(schema.OBJECTIVE_METRICS)}), got {metric!r}")
        if len({m for m, _ in self.objectives}) != len(self.objectives):
            raise RankSearchError(f"--objectives must name each metric once, got "
                                  f"{','.join(schema.format_objectives(self.objectives))!r}")
        if self.train_seed is not None and (isinstance(self.train_seed, bool) or self.train_seed < 0):
            raise RankSearchError(f"--train-seed must be an integer >= 0, got {self.train_seed!r}")
        if self.data_root is not None and (not isinstance(self.data_root, str) or not self.data_root.strip()):
            raise RankSearchError(f"--data-root must name a folder, got {self.data_root!r}")
        if self.data_root is not None and is_uri(self.data_root):
            raise RankSearchError(f"--data-root must be a local folder (a path every node reads, e.g. on NFS), "
                                  f"not a URI, got {self.data_root!r}")
        if not isinstance(self.download, bool):
            raise RankSearchError(f"--download must be true or false, got {self.download!r}")
        if self.max_failures < 0:
            raise RankSearchError(f"--max-failures must be >= 0, got {self.max_failures}")
        for name, amount in self.resources.items():
            if not name or name.upper() in _BUILTIN_RESOURCES:
                raise RankSearchError(f"--resource names a custom resource, not {name!r} "
                                      "(use --cpus-per-trial / --gpus-per-trial)")
            if not amount > 0:
                raise RankSearchError(f"--resource {name}={amount:g}: the amount must be > 0")
        if self.name is not None and (not self.name or self.name in (".", "..") or "/" in self.name
                                      or "\\" in self.name):
            raise RankSearchError(f"--name must be a plain folder name (no '/', not '.' or '..'), got {self.name!r}")


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


def check_storage(storage: str) -> None:
    """A local ``--storage`` (a path or ``file://``) must be a folder, or creatable, and writable:
    checked before any folder is made or Ray started. Other URIs are checked by the first write."""
    if is_uri(storage) and not storage.startswith("file://"):
        return
    local = storage[len("file://"):] if storage.startswith("file://") else storage
    local = os.path.abspath(local)
    if os.path.exists(local) and not os.path.isdir(local):
        raise RankSearchError(f"--storage {storage!r} is a file, not a folder")
    existing = local
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise RankSearchError(f"--storage {storage!r} cannot be created: {existing} is a file")
    try:  # a real write: os.access says yes to root even where nothing can be written (/proc)
        probe = tempfile.mkdtemp(prefix=".rank-search-probe-", dir=existing)
        os.rmdir(probe)
    except OSError as exc:
        raise RankSearchError(f"--storage {storage!r} is not writable: {existing}: "
                              f"{exc.strerror or type(exc).__name__}") from None

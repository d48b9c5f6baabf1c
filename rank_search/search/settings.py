"""The settings of one sweep (the `rank-search launch` flags), validated; no ray here."""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from .. import schema
from ..errors import RankSearchError
from ..schema import is_uri

SEARCHERS = ("nsga2", "tpe", "random")
SCHEDULERS = ("fifo", "asha")


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
    objectives: tuple[tuple[str, str], ...] = schema.DEFAULT_OBJECTIVES
    max_failures: int = 2
    dense: str | None = None  # the user's trained dense weights (a state_dict file)
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
        for flag, value in (("--min-compression", self.min_compression), ("--max-compression", self.max_compression)):
            if value is not None and not value >= 1:
                raise RankSearchError(f"{flag} must be a MACs compression >= 1, got {value}")
        if self.min_compression and self.max_compression and self.min_compression > self.max_compression:
            raise RankSearchError(f"--min-compression ({self.min_compression}) must be <= --max-compression "
                                  f"({self.max_compression})")
        for metric, mode in self.objectives:
            if mode not in schema.OBJECTIVE_MODES:
                raise RankSearchError(f"objective {metric!r} mode must be max or min, got {mode!r}")


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

"""The settings of one sweep (the `rank-search launch` flags), validated; no ray here."""
from __future__ import annotations

import math
import os
import re
import tempfile
from dataclasses import dataclass, field

from .. import schema
from ..errors import RankSearchError
from ..schema import is_number, is_uri

SEARCHERS = ("refine", "nsga2", "tpe", "random", "oneshot")
SCHEDULERS = ("fifo", "asha", "mo-asha", "mo-asha-method")
ABLATIONS = ("method-share",)  # parts of the refine searcher on by default, which `--ablate` turns off
EXTRAS = ("gap-fill", "parent-weighting")  # parts off by default (they did not pay on the task suite), `--refine-extra`
BUDGET_SAMPLES = 1000  # --num-samples when --budget-hours is given without it: the budget ends the sweep
LOG_TO = ("mlflow", "tensorboard", "wandb")  # the trackers of search/tracking.py
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
    log_to: tuple[str, ...] = ()  # experiment trackers (`--log-to`, search/tracking.py)
    ablate: tuple[str, ...] = ()  # parts of the default search switched off (`--ablate`, ablation studies)
    refine_extras: tuple[str, ...] = ()  # opt-in parts of the refine searcher switched on (`--refine-extra`)
    budget_hours: float | None = None  # stop sampling at this many trial-hours (`--budget-hours`, search/budget.py)
    nested_epochs: int | None = None  # --searcher oneshot: the nested training's epochs (None: oneshot_sweep's default)
    nested_lr: float | None = None  # --searcher oneshot: the nested training's learning rate (None: the model's)

    def __post_init__(self) -> None:
        if self.num_samples < 1:
            raise RankSearchError(f"--num-samples must be >= 1, got {self.num_samples}")
        if self.epochs is not None and self.epochs < 1:
            raise RankSearchError(f"--epochs must be >= 1, got {self.epochs}")
        for flag, value in (("--train-seed", self.train_seed), ("--searcher-seed", self.seed)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise RankSearchError(f"{flag} must be an integer >= 0, got {value!r}")
        _check_int("--num-samples", self.num_samples, MAX_SAMPLES)
        if self.epochs is not None:
            _check_int("--epochs", self.epochs, MAX_EPOCHS)
        for flag, value, what in (("--nested-epochs", self.nested_epochs, "epochs"),
                                  ("--nested-lr", self.nested_lr, "learning rate")):
            if value is not None and self.searcher != "oneshot":
                raise RankSearchError(f"{flag} applies to --searcher oneshot only (it sets the nested training's "
                                      f"{what}), got --searcher {self.searcher}")
        if self.nested_epochs is not None:
            _check_int("--nested-epochs", self.nested_epochs, MAX_EPOCHS)
            if self.nested_epochs < 1:
                raise RankSearchError(f"--nested-epochs must be >= 1, got {self.nested_epochs}")
        if self.nested_lr is not None and not (is_number(self.nested_lr) and self.nested_lr > 0):
            raise RankSearchError(f"--nested-lr must be a number > 0, got {self.nested_lr!r}")
        _check_int("--searcher-seed", self.seed, MAX_SEED, why=" (numpy's seed range)")
        if self.train_seed is not None:
            _check_int("--train-seed", self.train_seed, MAX_SEED, why=" (numpy's seed range)")
        for flag, value in (("--cpus-per-trial", self.cpus_per_trial), ("--gpus-per-trial", self.gpus_per_trial),
                            ("--min-compression", self.min_compression),
                            ("--max-compression", self.max_compression)):
            if value is not None and not is_number(value):
                raise RankSearchError(f"{flag} must be a finite number, got {value!r}")
        for part in self.ablate:
            if part in EXTRAS:
                raise RankSearchError(f"--ablate {part}: that part is off by default (--refine-extra {part} "
                                      f"switches it on); --ablate names one of {', '.join(ABLATIONS)}")
            if part not in ABLATIONS:
                raise RankSearchError(f"--ablate must name one of {', '.join(ABLATIONS)}, got {part!r}")
        for part in self.refine_extras:
            if part not in EXTRAS:
                raise RankSearchError(f"--refine-extra must name one of {', '.join(EXTRAS)}, got {part!r}")
        if self.budget_hours is not None and not (is_number(self.budget_hours) and self.budget_hours > 0):
            raise RankSearchError(f"--budget-hours must be a finite number of hours > 0, got {self.budget_hours!r}")
        if self.max_concurrent is not None and self.max_concurrent >= 1:
            _check_int("--max-concurrent", self.max_concurrent, MAX_SAMPLES)
        if self.max_failures >= 0:
            _check_int("--max-failures", self.max_failures, MAX_FAILURES)
        if self.name is not None:
            _check_name(self.name)
        if self.storage is not None:
            check_storage_scheme(self.storage)
        match = _ADDRESS.match(self.address) if isinstance(self.address, str) else None
        if match is None or (match.group(4) and not 1 <= int(match.group(4)) <= 65535):
            raise RankSearchError(f"--address must be local, auto or HOST:PORT (a port in 1-65535; ray:// allowed), "
                                  f"got {self.address!r}")
        if self.searcher not in SEARCHERS:
            raise RankSearchError(f"--searcher must be one of {', '.join(SEARCHERS)}, got {self.searcher!r}")
        if self.searcher == "oneshot":  # its trials are the one-shot front's points (search/oneshot_sweep.py)
            for flag, value in (("--budget-hours", self.budget_hours), ("--warm-start", self.warm_start)):
                if value is not None:
                    raise RankSearchError(f"{flag} does not apply to --searcher oneshot (its trials are the one-shot "
                                          f"front's points, at most --num-samples), got {flag} {value}")
        if self.scheduler not in SCHEDULERS:
            raise RankSearchError(f"--scheduler must be one of {', '.join(SCHEDULERS)}, got {self.scheduler!r}")
        _check_log_to(self.log_to)
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
            if not math.isfinite(amount):
                raise RankSearchError(f"--resource {name}={amount:g}: the amount must be a finite number")


# *our choice*: far above any real sweep, far below what breaks Ray (a thread per 10^12 samples)
MAX_SAMPLES = 100_000
MAX_EPOCHS = 100_000
MAX_FAILURES = 1_000
MAX_SEED = 2**32 - 1  # numpy's seed range (torch takes more)
MAX_NAME_BYTES = 200  # a folder name is at most 255 bytes; launch adds '.NAME.partial-XXXXXXXX' beside it
_ADDRESS = re.compile(r"^(local|auto|((ray|rays)://)?[A-Za-z0-9._\[\]:-]+:([1-9][0-9]{0,4}))$")
# URI schemes of --storage, and the pyarrow file system each needs
STORAGE_SCHEMES = {"file": None, "s3": "S3FileSystem", "gs": "GcsFileSystem", "gcs": "GcsFileSystem",
                   "abfs": "AzureFileSystem", "hdfs": "HadoopFileSystem"}


def _check_int(flag: str, value, high: int, *, why: str = "") -> None:
    """An integer at most ``high`` (the lower bounds are checked, with their own words, before)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise RankSearchError(f"{flag} must be an integer, got {value!r}")
    if value > high:
        raise RankSearchError(f"{flag} must be <= {high}{why}, got {value}")


def _check_name(name) -> None:
    """An experiment name is one plain folder name, printable, of at most ``MAX_NAME_BYTES``."""
    if (not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name
            or not name.isprintable()):
        raise RankSearchError(f"--name must be a plain folder name (printable, no '/', not '.' or '..'), got {name!r}")
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        raise RankSearchError(f"--name must be at most {MAX_NAME_BYTES} bytes, got {len(name.encode('utf-8'))} "
                              f"({name[:40]!r}...)")


def check_storage_scheme(storage: str) -> None:
    """A ``--storage`` URI names a scheme the installed pyarrow reads (``foo://x`` is no local path)."""
    if not isinstance(storage, str) or not storage.strip() or not storage.isprintable():
        raise RankSearchError(f"--storage must name a folder or URI, got {storage!r}")
    scheme, sep, _ = storage.partition("://")
    if not sep:
        return
    if scheme not in STORAGE_SCHEMES:
        raise RankSearchError(f"--storage scheme {scheme!r} is not supported: use one of "
                              f"{', '.join(s + '://' for s in STORAGE_SCHEMES)} or a local path, got {storage!r}")
    needed = STORAGE_SCHEMES[scheme]
    if needed is not None:
        import pyarrow.fs as pafs

        if not hasattr(pafs, needed):
            raise RankSearchError(f"--storage {storage!r} needs pyarrow's {needed}, which this pyarrow lacks")


def _check_log_to(log_to) -> None:
    """``--log-to``: a tuple of distinct tracker names (``LOG_TO``)."""
    if not isinstance(log_to, tuple) or not all(isinstance(t, str) for t in log_to):
        raise RankSearchError(f"--log-to must be a tuple of tracker names, got {log_to!r}")
    for tracker in log_to:
        if tracker not in LOG_TO:
            raise RankSearchError(f"--log-to must be one of {', '.join(LOG_TO)}, got {tracker!r}")
    if len(set(log_to)) != len(log_to):
        raise RankSearchError(f"--log-to must name each tracker once, got {', '.join(log_to)}")


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


PROBE_S = 15.0  # *our choice*: an object store answers in well under a second when it answers at all


def probe_storage(storage: str, *, timeout: float | None = None) -> None:
    """A remote ``--storage`` answers (pyarrow reaches it and can tell whether the path exists)
    within ``timeout`` seconds; a missing network, a bucket that does not exist or absent
    credentials is one line instead of a traceback or a hang (``gs://`` retried for minutes)."""
    import threading

    timeout = PROBE_S if timeout is None else timeout
    outcome: list[BaseException | None] = []

    def probe() -> None:
        try:
            from ..storage import Location

            Location(storage).exists()
            outcome.append(None)
        except BaseException as exc:  # anything pyarrow raises is the answer
            outcome.append(exc)

    worker = threading.Thread(target=probe, name="rank-search-storage-probe", daemon=True)
    worker.start()
    worker.join(timeout)
    if not outcome:
        raise RankSearchError(f"--storage {storage!r} did not answer within {timeout:g} s (no network, or no such "
                              "bucket?)")
    if outcome[0] is not None:
        first = (str(outcome[0]).strip().splitlines() or [type(outcome[0]).__name__])[0][:200]
        raise RankSearchError(f"--storage {storage!r} cannot be reached: {first}")


def check_storage(storage: str) -> None:
    """A local ``--storage`` (a path or ``file://``) must be a folder, or creatable, and writable;
    another URI must answer (``probe_storage``): checked before any folder is made or Ray started."""
    if is_uri(storage) and not storage.startswith("file://"):
        probe_storage(storage)
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

"""One training run from a validated spec: what `rank-search train` and the Tune trainable share."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping

from . import schema
from .config import replace_validated, split_prefixed
from .errors import RankSearchError

RUN_KEYS = ("model", "dataset", "method", "ranks", "scheme", "epochs", "seed", "data_root", "download", "settings")


@dataclass(frozen=True)
class RunSpec:
    """Everything that defines a run; ``settings`` holds ``train.*`` and ``<method>.*`` keys."""

    model: str
    dataset: str
    method: str
    ranks: Any = None
    scheme: str | None = None
    epochs: int = 10
    seed: int = 0
    data_root: str | None = None
    download: bool = False
    settings: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise RankSearchError(f"epochs must be an integer >= 1, got {self.epochs!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise RankSearchError(f"seed must be an integer, got {self.seed!r}")
        allowed = ("train.", f"{self.method}.")
        for key in self.settings:
            if not key.startswith(allowed):
                raise RankSearchError(
                    f"setting {key!r} must start with 'train.' or '{self.method}.' (the method's knobs)"
                )

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["settings"] = dict(self.settings)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "config") -> "RunSpec":
        if not isinstance(data, Mapping):
            raise RankSearchError(f"{source} must be a mapping, got {type(data).__name__}")
        unknown = set(data) - set(RUN_KEYS)
        if unknown:
            raise RankSearchError(f"unknown key(s) {sorted(unknown)} in {source}; valid keys: {', '.join(RUN_KEYS)}")
        missing = [k for k in ("model", "dataset", "method") if k not in data]
        if missing:
            raise RankSearchError(f"{source} is missing required key(s): {', '.join(missing)}")
        values = {k: v for k, v in data.items() if k in RUN_KEYS}
        if values.get("settings") is None:
            values["settings"] = {}
        elif not isinstance(values["settings"], Mapping):
            raise RankSearchError(f"'settings' in {source} must map KEY to VALUE, got {type(values['settings']).__name__}")
        return cls(**values)


def prepare(spec: RunSpec, *, progress: Callable[[str], None] | None = None):
    """Validate the spec against the registries, data and model; return a ready ``Trainer``.

    Every user-input error (names, knobs, ranks, data paths) is raised here, before training.
    """
    from .data import dataset_info, load_dataset
    from .engine import TrainConfig, Trainer
    from .engine.trainer import seed_everything
    from .methods import create_method
    from .models import create_model

    train_cfg = replace_validated(TrainConfig(), split_prefixed(spec.settings, "train"), prefix="train.")
    info = dataset_info(spec.dataset, data_root=spec.data_root)
    train_cfg = train_cfg.with_defaults(lr=info.lr, batch_size=info.batch_size)
    method = create_method(spec.method, split_prefixed(spec.settings, spec.method), ranks=spec.ranks, scheme=spec.scheme)
    data = load_dataset(spec.dataset, data_root=spec.data_root, download=spec.download, seed=spec.seed,
                        batch_size=train_cfg.batch_size)
    seed_everything(spec.seed)
    dense = create_model(spec.model, in_channels=data.in_channels, num_classes=data.num_classes,
                         image_size=data.image_size)
    if method.uses_plan:
        method.resolve_plan(dense)  # fail fast on a bad plan
    return Trainer(dense, method, data, train_cfg, epochs=spec.epochs, seed=spec.seed, progress=progress)


def final_metrics(trainer, *, wall_seconds: float) -> dict[str, Any]:
    """Accuracy of the compact model on val and test, exact costs and compression ratios."""
    from .cost import compression_metrics, model_cost
    from .engine import evaluate

    compact = trainer.compact_model()
    val_acc, val_loss = evaluate(compact, trainer.data.val, trainer.device)
    test_acc, _ = evaluate(compact, trainer.data.test, trainer.device)
    metrics: dict[str, Any] = {
        schema.VAL_ACCURACY: val_acc,
        schema.TEST_ACCURACY: test_acc,
        schema.VAL_LOSS: val_loss,
        schema.TRAIN_LOSS: trainer.last_loss,
    }
    metrics.update(compression_metrics(model_cost(trainer.dense, trainer.input_shape),
                                       model_cost(compact, trainer.input_shape)))
    metrics[schema.EPOCHS] = trainer.epoch
    metrics[schema.WALL_SECONDS] = wall_seconds
    return metrics


@dataclass
class RunResult:
    metrics: dict[str, Any]
    trainer: Any


def train(spec: RunSpec, *, on_epoch: Callable | None = None, progress: Callable[[str], None] | None = None) -> RunResult:
    """Prepare, fit and measure one run."""
    start = time.perf_counter()
    trainer = prepare(spec, progress=progress)
    trainer.fit(on_epoch)
    return RunResult(final_metrics(trainer, wall_seconds=time.perf_counter() - start), trainer)

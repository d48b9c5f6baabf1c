"""One training run from a ``RunSpec``: prepare it (every user-input error raised before
training), train it, measure it. What `rank-search train` and the Tune trainable share."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

from .. import schema
from ..allocation import BudgetRanks
from ..overrides import replace_validated
from .spec import RunSpec


def prepare(spec: RunSpec, *, progress: Callable[[str], None] | None = None):
    """Validate the spec against the registries, data and model; return a ready ``Trainer``.

    The dense model is built and the rank plan resolved here, once; every user-input error
    (names, knobs, ranks, data paths) is raised here, before training.
    """
    from ..data import dataset_info, load_dataset
    from ..engine import DistillConfig, TrainConfig, Trainer
    from ..engine.trainer import seed_everything
    from ..methods import create_method
    from ..models import create_model_for

    train_cfg = replace_validated(TrainConfig(), spec.train_settings, prefix="train.")
    distill = replace_validated(DistillConfig(), spec.distill_settings, prefix="distill.")
    info = dataset_info(spec.dataset, data_root=spec.data_root)
    train_cfg = train_cfg.with_defaults(lr=info.lr, batch_size=info.batch_size)
    ranks = spec.ranks
    if isinstance(ranks, BudgetRanks):  # a uniform allocation has no profile to read the input shape from
        ranks = ranks.with_input_shape((info.in_channels, info.image_size, info.image_size))
    method = create_method(spec.method, spec.knobs, ranks=ranks, scheme=spec.scheme)
    data = load_dataset(spec.dataset, data_root=spec.data_root, download=spec.download, seed=spec.seed,
                        batch_size=train_cfg.batch_size)
    seed_everything(spec.seed)
    dense = create_model_for(spec.model, data)
    if spec.init is not None:
        from ..weights import load_weights

        load_weights(dense, spec.init, what="init")
    method.initialized = spec.init is not None  # e.g. posthoc then spends every epoch fine-tuning
    if method.uses_plan:
        method.resolve_plan(dense)  # fail fast on a bad plan
    return Trainer(dense, method, data, train_cfg, epochs=spec.epochs, seed=spec.seed, progress=progress,
                   distill=distill, teacher=_teacher(spec, dense, data) if distill.enabled else None)


def _teacher(spec: RunSpec, dense, data):
    """The dense teacher of a distilled run: ``spec.teacher``'s weights, else the ``init`` dense
    model; None when the run has neither (the trainer then refuses ``distill.weight > 0``)."""
    if spec.teacher is None or spec.teacher == spec.init:
        return dense if spec.init is not None else None
    import torch

    from ..models import create_model_for
    from ..weights import load_weights

    with torch.random.fork_rng():  # building it must not move the run's random stream
        teacher = create_model_for(spec.model, data)
    load_weights(teacher, spec.teacher, what="teacher")
    return teacher


def compression(trainer) -> dict[str, Any]:
    """Exact params and MACs of the dense and the compact model of the current state, and their ratios."""
    from ..cost import compression_metrics, model_cost

    return compression_metrics(model_cost(trainer.dense, trainer.input_shape),
                               model_cost(trainer.compact_model(), trainer.input_shape))


def latency(trainer, *, batch_size: int = schema.DEFAULT_LATENCY_BATCH_SIZE, compact: bool = True) -> dict[str, float]:
    """Measured latency of the compact model of the current state against the dense model, on
    the run's device with its thread count, interleaved in one run (``rank_search.latency``).

    Args:
        batch_size: the batch one forward pass takes (the deployment's, not training's).
        compact: False when there is no usable compact model (a diverged run): the dense
            model is timed alone and stands in for it (speed-up 1), as in ``compression``.
    """
    from ..latency import measure_latency

    return measure_latency(trainer.dense, trainer.compact_model() if compact else None, trainer.input_shape,
                           batch_size=batch_size, device=trainer.device, threads=trainer.threads,
                           channels_last=trainer.config.channels_last)


def accuracy_on_test(trainer) -> float:
    """Accuracy of the current compact model on the test split."""
    from ..engine import evaluate

    return evaluate(trainer.compact_model(), trainer.data.test, trainer.device)[0]


def final_metrics(trainer, *, wall_seconds: float) -> dict[str, Any]:
    """Accuracy of the compact model on val and test, exact costs and compression ratios."""
    from ..engine import evaluate

    val_acc, val_loss = evaluate(trainer.compact_model(), trainer.data.val, trainer.device)
    metrics: dict[str, Any] = {
        schema.VAL_ACCURACY: val_acc,
        schema.TEST_ACCURACY: accuracy_on_test(trainer),
        schema.VAL_LOSS: val_loss,
        schema.TRAIN_LOSS: trainer.last_loss,
    }
    metrics.update(compression(trainer))
    metrics[schema.EPOCHS] = trainer.epoch
    metrics[schema.WALL_SECONDS] = wall_seconds
    return metrics


@dataclass
class RunResult:
    metrics: dict[str, Any]
    trainer: Any


def train(spec: RunSpec, *, on_epoch: Callable | None = None, progress: Callable[[str], None] | None = None,
          on_prepared: Callable | None = None) -> RunResult:
    """Prepare, fit and measure one run.

    Args:
        on_epoch: ``fn(trainer, EpochResult)`` after every epoch.
        progress: per-batch progress text.
        on_prepared: ``fn(trainer)`` once the run is prepared, before training (the CLI prints
            what it is about to train).
    """
    start = time.perf_counter()
    trainer = prepare(spec, progress=progress)
    if on_prepared is not None:
        on_prepared(trainer)
    trainer.fit(on_epoch)
    with trainer.using_threads():
        metrics = final_metrics(trainer, wall_seconds=time.perf_counter() - start)
    return RunResult(metrics, trainer)

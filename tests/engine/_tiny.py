"""Tiny trainers for the precision tests (test_amp.py on CPU, test_gpu.py on CUDA)."""
from __future__ import annotations

import torch

from rank_search.data import load_dataset
from rank_search.engine import TrainConfig, Trainer
from rank_search.engine.trainer import seed_everything
from rank_search.methods import create_method
from rank_search.models import create_model_for

#: knobs that make each method's periodic work happen within a few iterations
FAST_KNOBS = {"deeptwist": {"distortion_step": 2}, "trp": {"interval": 2},
              "lrpet": {"interval": 2, "interval_unit": "iter"}}


def tiny_data(*, in_channels: int = 1):
    """Three 32-image training batches of the 8x8 ``synthetic`` shape."""
    return load_dataset("synthetic", seed=0, batch_size=32, sizes=(96, 32, 32), in_channels=in_channels)


def tiny_trainer(method: str, data, *, epochs: int = 2, distill=None, teacher=None, **config) -> Trainer:
    """A lenet5 ``Trainer`` of ``method`` on ``data`` (CPU unless ``device`` is given), prepared
    as ``run.prepare`` does; ``distill`` and ``teacher`` as ``Trainer`` takes them."""
    cfg = TrainConfig(**{"lr": 0.05, "batch_size": 32, "device": "cpu", **config})
    m = create_method(method, FAST_KNOBS.get(method), ranks="ratio:0.5")
    seed_everything(0)
    dense = create_model_for("lenet5", data)
    if m.uses_plan:
        m.resolve_plan(dense)
    return Trainer(dense, m, data, cfg, epochs=epochs, seed=0, distill=distill, teacher=teacher)


HOOKS = ("validate", "build_model", "on_train_start", "on_epoch_start", "before_forward", "regularization_loss",
         "after_backward", "on_epoch_end", "finalize", "compact_model")


def record_hooks(trainer: Trainer, monkeypatch, device_type: str) -> list[tuple[str, bool]]:
    """(hook, autocast on ``device_type``) for every call of the trainer's method hooks from now on."""
    calls: list[tuple[str, bool]] = []
    for name in HOOKS:
        real = getattr(trainer.method, name)

        def wrapped(*args, _name=name, _real=real, **kw):
            calls.append((_name, torch.is_autocast_enabled(device_type)))
            return _real(*args, **kw)

        monkeypatch.setattr(trainer.method, name, wrapped)
    return calls


def record_svds(monkeypatch, device_type: str) -> list[tuple[str, torch.dtype, bool]]:
    """(function, input dtype, autocast on ``device_type``) for every SVD computed through torch."""
    calls: list[tuple[str, torch.dtype, bool]] = []
    for owner, name in ((torch.linalg, "svd"), (torch.linalg, "svdvals"), (torch, "svd_lowrank")):
        real = getattr(owner, name)

        def wrapped(a, *args, _name=name, _real=real, **kw):
            calls.append((_name, a.dtype, torch.is_autocast_enabled(device_type)))
            return _real(a, *args, **kw)

        monkeypatch.setattr(owner, name, wrapped)
    return calls

"""Training engine (never imports ray)."""
from __future__ import annotations

from .train_config import SCHEDULES, DistillConfig, TrainConfig
from .hooks import TrainingHooks
from .trainer import DivergedError, EpochResult, Trainer, evaluate, resolve_device

__all__ = ["SCHEDULES", "DistillConfig", "DivergedError", "EpochResult", "TrainConfig", "Trainer", "TrainingHooks",
           "evaluate", "resolve_device"]

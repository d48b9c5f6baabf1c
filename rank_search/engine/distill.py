"""Distillation from a dense teacher: the frozen teacher and the loss (``DistillConfig``).

The teacher is a copy of the dense model in eval mode with every parameter frozen; the trainer
runs it under ``no_grad`` on each training batch (its time is the epoch's time) and keeps it
beside, never inside, the trained model, so no compact model, checkpoint or export holds it.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from .train_config import DistillConfig


def frozen_teacher(teacher: nn.Module | None, device: torch.device) -> nn.Module | None:
    """A copy of ``teacher`` on ``device`` in eval mode with every parameter frozen (never
    trained, never given a gradient); None for None."""
    if teacher is None:
        return None
    frozen = copy.deepcopy(teacher).to(device).eval()
    for p in frozen.parameters():
        p.requires_grad_(False)
    return frozen


def distill_loss(hard: torch.Tensor, logits: torch.Tensor, teacher_logits: torch.Tensor,
                 config: DistillConfig) -> torch.Tensor:
    """``(1 - w) * hard + w * T^2 * KL(teacher || student)`` at temperature T (batch mean)."""
    t = config.temperature
    soft = nn.functional.kl_div(nn.functional.log_softmax(logits / t, dim=1),
                                nn.functional.log_softmax(teacher_logits / t, dim=1),
                                reduction="batchmean", log_target=True)
    return (1 - config.weight) * hard + config.weight * t * t * soft

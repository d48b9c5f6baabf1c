"""Distillation from a dense teacher: the frozen teacher, its logits and the loss (``DistillConfig``).

The teacher is a copy of the dense model in eval mode with every parameter frozen, kept beside,
never inside, the trained model, so no compact model, checkpoint or export holds it. It runs
under ``no_grad``: where the training loader's inputs are fixed (``fixed_inputs``: no
augmentation) once per sample at the first epoch (``teacher_table``, looked up by each batch's
indices), else on every batch; either way inside the epoch's time. Eval mode makes a sample's
logits independent of its batch, so both give the same logits (to float rounding).
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from .precision import autocast, batch_to
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


def teacher_table(teacher: nn.Module, loader, device: torch.device, *, amp: str = "off",
                  channels_last: bool = False) -> torch.Tensor:
    """``[samples, classes]``: ``teacher``'s logits of every sample of ``loader`` (a loader with
    ``in_order``), on ``device``, computed as the trainer's per-batch pass computes them."""
    rows = []
    with torch.no_grad(), autocast(amp, device):
        for x, _ in loader.in_order():
            rows.append(teacher(batch_to(x, device, channels_last=channels_last)))
    return torch.cat(rows)


def distill_loss(hard: torch.Tensor, logits: torch.Tensor, teacher_logits: torch.Tensor,
                 config: DistillConfig) -> torch.Tensor:
    """``(1 - w) * hard + w * T^2 * KL(teacher || student)`` at temperature T (batch mean)."""
    t = config.temperature
    soft = nn.functional.kl_div(nn.functional.log_softmax(logits / t, dim=1),
                                nn.functional.log_softmax(teacher_logits / t, dim=1),
                                reduction="batchmean", log_target=True)
    return (1 - config.weight) * hard + config.weight * t * t * soft

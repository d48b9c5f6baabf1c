"""Mixed precision (``train.amp``) and memory format (``train.channels_last``) of the training step.

Only the forward pass and the loss run under autocast; the weights, the optimizer and every
method hook (SVDs, projections, regularizers) stay in float32, and so does the evaluation
(*our choice*: the accuracy a search optimises is that of the float32 model that is exported,
the same number whatever ``train.amp`` trained it).
"""
from __future__ import annotations

import contextlib
from typing import ContextManager

import torch
from torch import nn

from ..errors import RankSearchError
from .train_config import fp16_needs_cuda

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check_amp(amp: str, device: torch.device, *, setting: str) -> None:
    """Raise a one-line error where ``train.amp`` cannot run on ``device`` (``setting``: the
    ``train.device`` value it was resolved from, for the message)."""
    where = f"train.device={setting!r}" + ("" if setting == str(device) else f" ({device} on this machine)")
    if amp == "fp16" and device.type != "cuda":
        raise fp16_needs_cuda(where)
    if amp == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise RankSearchError(f"train.amp='bf16' needs a GPU with bfloat16 support (use train.amp=fp16), got {where}")


def autocast(amp: str, device: torch.device) -> ContextManager:
    """The autocast context of one training forward pass (a no-op for ``amp='off'``)."""
    if amp == "off":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=AUTOCAST_DTYPES[amp])


def grad_scaler(amp: str, device: torch.device) -> torch.amp.GradScaler | None:
    """A grad scaler for ``fp16`` (float16 gradients underflow without one), else None:
    bfloat16 has float32's exponent range."""
    return torch.amp.GradScaler(device.type) if amp == "fp16" else None


def to_channels_last(model: nn.Module) -> nn.Module:
    """``model`` with its 4-D parameters and buffers in ``channels_last`` (in place)."""
    return model.to(memory_format=torch.channels_last)


def batch_to(x: torch.Tensor, device: torch.device, *, channels_last: bool) -> torch.Tensor:
    """An input batch on ``device``, in ``channels_last`` where asked and the batch is 4-D."""
    if channels_last and x.dim() == 4:
        return x.to(device, non_blocking=True, memory_format=torch.channels_last)
    return x.to(device, non_blocking=True)

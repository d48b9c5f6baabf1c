"""Full precision for the linear algebra of compression, whatever autocast the caller trains in.

Mixed-precision training (``train.amp``) runs the forward pass under ``torch.autocast``; SVDs,
projections, reconstructions and regularizers must not: a bf16 matmul keeps 8 bits of mantissa,
enough to move a projected weight off its rank and to blur a spectrum that picks ranks.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch

#: The device types whose autocast :func:`full_precision` turns off where it is on.
AUTOCAST_DEVICES = ("cpu", "cuda")


@contextlib.contextmanager
def full_precision() -> Iterator[None]:
    """Autocast off for the enclosed ops (context manager or, called, a decorator): they run in
    their tensors' own dtype, so float32 weights are decomposed and rebuilt in float32."""
    with contextlib.ExitStack() as stack:
        for device_type in AUTOCAST_DEVICES:
            if torch.is_autocast_enabled(device_type):
                stack.enter_context(torch.autocast(device_type, enabled=False))
        yield

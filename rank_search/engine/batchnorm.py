"""BatchNorm re-estimation: running statistics recomputed on training images after a
decomposition changed what each BatchNorm sees (no gradient, weights untouched)."""
from __future__ import annotations

import torch
from torch import nn

from ..decomp.calibrated import forward_images


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


@torch.no_grad()
def reestimate_batchnorm(model: nn.Module, loader, *, images: int = 512, device: torch.device | None = None) -> int:
    """Reset every BatchNorm's running mean and variance and re-estimate them as a cumulative
    average over the first ``images`` training images, passed in train mode; returns how many
    images were used (0 when the model has no BatchNorm). The model's mode, its weights and the
    loader's epoch order are left as they were; the global RNG is not touched (dropout draws
    happen under ``fork_rng``)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms or images <= 0:
        return 0
    device = device or next(model.parameters()).device
    was_training = model.training
    saved = [(m.momentum, m.num_batches_tracked.clone() if m.num_batches_tracked is not None else None) for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: every batch counts equally
    model.train()
    seen = forward_images(model, loader, images=images, device=device)
    for m, (momentum, _) in zip(norms, saved):
        m.momentum = momentum
    model.train(was_training)
    return seen

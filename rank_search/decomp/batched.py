"""Many truncated SVDs at once: same-shape matrices are stacked into one batched call.

Projection methods (TRP, LRPET) decompose every eligible layer at each interval; ResNets
have many layers of identical shape, so grouping them turns dozens of small SVD calls into
a few batched ones, on the tensors' own device.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import torch

from .precision import full_precision
from .svd import truncated_svd

Factors = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


@full_precision()
def batched_truncated_svd(matrices: Sequence[torch.Tensor], ranks: Sequence[int], *,
                          randomized: bool | None = None) -> list[Factors]:
    """``truncated_svd(m, r, randomized=randomized)`` for every pair, computed in same-shape batches.

    Each group is decomposed at the largest rank it needs (by default randomized when that rank
    is far below the matrix size; ``randomized=False`` always exact) and every member's factors
    are sliced to its own rank.
    """
    if len(matrices) != len(ranks):
        raise ValueError(f"got {len(matrices)} matrices but {len(ranks)} ranks")
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, m in enumerate(matrices):
        groups[(tuple(m.shape), m.dtype, m.device)].append(i)
    out: list[Factors | None] = [None] * len(matrices)
    for idx in groups.values():
        top = max(ranks[i] for i in idx)
        stack = torch.stack([matrices[i] for i in idx]) if len(idx) > 1 else matrices[idx[0]].unsqueeze(0)
        u, s, vh = truncated_svd(stack, top, randomized=randomized)
        for j, i in enumerate(idx):
            r = ranks[i]
            out[i] = (u[j, :, :r], s[j, :r], vh[j, :r, :])
    return out  # type: ignore[return-value]


@full_precision()
def batched_low_rank(matrices: Sequence[torch.Tensor], ranks: Sequence[int], *,
                     randomized: bool | None = None) -> list[torch.Tensor]:
    """Best rank-r approximations of every matrix, batched by shape."""
    return [(u * s) @ vh for u, s, vh in batched_truncated_svd(matrices, ranks, randomized=randomized)]

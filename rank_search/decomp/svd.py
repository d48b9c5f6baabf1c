"""Truncated SVD helpers (batched, randomized where the rank is far below the matrix size)."""
from __future__ import annotations

import torch

from .precision import full_precision

# Below this rank fraction of min(m, n) (and above a minimum size) a randomized SVD is used.
RANDOMIZED_MAX_FRACTION = 0.25
RANDOMIZED_MIN_SIZE = 64
OVERSAMPLE = 8


def as_working(matrix: torch.Tensor) -> torch.Tensor:
    """``matrix`` in a dtype the SVD routines take: half precision promoted to float32, float32
    and float64 kept (a float64 model is decomposed in float64)."""
    return matrix.float() if matrix.dtype in (torch.float16, torch.bfloat16) else matrix


@full_precision()
def truncated_svd(
    matrix: torch.Tensor, rank: int, *, randomized: bool | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top-``rank`` SVD of ``matrix`` ([..., m, n]): ``U [..., m, r]``, ``S [..., r]``, ``Vh [..., r, n]``.

    Args:
        matrix: one matrix or a batch of same-shape matrices, on any device.
        rank: number of singular triplets kept.
        randomized: force (True) or forbid (False) ``torch.svd_lowrank``; by default it is used
            when the rank is far below the matrix size. ``torch.svd_lowrank`` draws from the
            global RNG of the matrix's device; the exact path draws nothing.
    """
    m, n = matrix.shape[-2:]
    k = min(m, n)
    if not 1 <= rank <= k:
        raise ValueError(f"rank must be in [1, {k}] for a {m}x{n} matrix, got {rank}")
    work = as_working(matrix)
    if randomized is None:
        randomized = k >= RANDOMIZED_MIN_SIZE and rank + OVERSAMPLE <= RANDOMIZED_MAX_FRACTION * k
    if randomized:
        q = min(rank + OVERSAMPLE, k)
        u, s, v = torch.svd_lowrank(work, q=q, niter=2)
        u, s, vh = u[..., :rank], s[..., :rank], v[..., :rank].transpose(-2, -1)
    else:
        u, s, vh = torch.linalg.svd(work, full_matrices=False)
        u, s, vh = u[..., :rank], s[..., :rank], vh[..., :rank, :]
    return u.to(matrix.dtype), s.to(matrix.dtype), vh.to(matrix.dtype)


@full_precision()
def low_rank_approx(matrix: torch.Tensor, rank: int, *, randomized: bool | None = None) -> torch.Tensor:
    """Best rank-``rank`` approximation (Eckart-Young) of ``matrix`` ([..., m, n]); ``randomized``
    as in :func:`truncated_svd` (False: exactly the ``torch.linalg.svd`` truncation)."""
    u, s, vh = truncated_svd(matrix, rank, randomized=randomized)
    return (u * s.unsqueeze(-2)) @ vh


@full_precision()
def singular_values(matrix: torch.Tensor) -> torch.Tensor:
    """All singular values, descending."""
    return torch.linalg.svdvals(as_working(matrix)).to(matrix.dtype)

"""Orthogonality regularizers of ELRT (METHODS.md section 5), as pure batched functions.

Every regularizer takes factor matrices ``u`` of shape ``(..., m, r)`` (rank on the columns)
and returns one value per matrix, shape ``(...)``; the Gram matrix is ``G = u^T u`` (r x r).
``orthogonality_penalty`` sums a regularizer over a list of factors of mixed shapes,
stacking same-shape factors so that each shape costs one batched call.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Callable, Sequence

import torch
from torch.nn import functional as F

from .._registry import Registry
from ..decomp import as_working, full_precision

Regularizer = Callable[..., torch.Tensor]
REGULARIZERS: Registry[Regularizer] = Registry("orthogonality regularizer")


def gram_deviation(u: torch.Tensor) -> torch.Tensor:
    """``u^T u - I`` (r x r) for each matrix of the batch."""
    gram = u.mT @ u
    return gram - torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)


@REGULARIZERS.register("so")
def soft_orthogonality(u: torch.Tensor) -> torch.Tensor:
    """SO: ``||u^T u - I||_F^2``."""
    return gram_deviation(u).square().sum(dim=(-2, -1))


@REGULARIZERS.register("dso")
def double_soft_orthogonality(u: torch.Tensor) -> torch.Tensor:
    """DSO: ``||u^T u - I_r||_F^2 + ||u u^T - I_m||_F^2`` (ELRT's choice).

    Both terms share the nonzero spectrum of the smaller Gram ``S`` (k x k, k = min(m, r)),
    so the value is ``2 ||S - I_k||_F^2 + |m - r|`` without forming the m x m matrix. For a
    tall ``u`` with orthonormal columns it is therefore ``m - r``, not zero: the constant does
    not change the gradient, which is twice SO's.
    """
    m, r = u.shape[-2:]
    short_side = u.mT if m <= r else u  # soft_orthogonality of it works on the k x k Gram
    return 2.0 * soft_orthogonality(short_side) + abs(m - r)


@lru_cache(maxsize=64)
def _start_vector(size: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    # A fixed seeded vector: no draw from the global RNG, the same estimate for the same
    # matrix, so training stays reproducible and a resume needs no power-iteration state.
    gen = torch.Generator().manual_seed(0x5121)
    return F.normalize(torch.randn(size, generator=gen, dtype=torch.float64), dim=0).to(device, dtype)


@REGULARIZERS.register("srip")
def spectral_restricted_isometry(u: torch.Tensor, *, iters: int = 2) -> torch.Tensor:
    """SRIP: ``sigma_max(u^T u - I)`` estimated by ``iters`` power-iteration steps.

    From a fixed start ``v_0``, each step is ``v <- normalize(A v)`` with ``A = u^T u - I``
    (symmetric), under ``no_grad`` as in spectral normalisation; the estimate is
    ``sigma = w^T A v_k`` with ``w = normalize(A v_k)`` detached, i.e. ``||A v_k||``. It is a
    lower bound of ``sigma_max`` that does not decrease with ``iters``, and its gradient
    ``w v_k^T`` is the spectral norm's gradient once the vectors have converged.
    """
    dev = gram_deviation(u)
    v = _start_vector(dev.shape[-1], dev.device, dev.dtype).expand(dev.shape[:-1])
    with torch.no_grad():
        for _ in range(iters):
            v = F.normalize((dev @ v.unsqueeze(-1)).squeeze(-1), dim=-1)
    av = (dev @ v.unsqueeze(-1)).squeeze(-1)
    w = F.normalize(av.detach(), dim=-1)
    return (w * av).sum(dim=-1)


@REGULARIZERS.register("mc")
def mutual_coherence(u: torch.Tensor) -> torch.Tensor:
    """MC: ``max_ij |(u^T u - I)_ij|``."""
    return gram_deviation(u).abs().amax(dim=(-2, -1))


def get_regularizer(name: str, *, srip_iters: int = 2) -> Callable[[torch.Tensor], torch.Tensor]:
    """The batched regularizer ``name`` as a one-argument function (unknown names list the valid)."""
    fn = REGULARIZERS.get(name)
    if fn is spectral_restricted_isometry:
        return lambda u: spectral_restricted_isometry(u, iters=srip_iters)
    return fn


@full_precision()
def orthogonality_penalty(factors: Sequence[torch.Tensor], regularizer: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Sum of ``regularizer`` over ``factors`` (2-D, rank on the columns), one call per shape; in
    full precision (half-precision factors promoted to float32) under any autocast."""
    groups: dict[tuple, list[torch.Tensor]] = {}
    for f in map(as_working, factors):
        groups.setdefault((tuple(f.shape), f.dtype, f.device), []).append(f)
    if not groups:
        raise ValueError("orthogonality_penalty needs at least one factor matrix")
    terms = [regularizer(torch.stack(fs) if len(fs) > 1 else fs[0].unsqueeze(0)).sum() for fs in groups.values()]
    return torch.stack(terms).sum() if len(terms) > 1 else terms[0]

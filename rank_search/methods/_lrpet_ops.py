"""LRPET's projection math (METHODS.md section 3), free of any training state.

Steps, on the ``channel`` matrix ``M [n, c*kh*kw]`` of one layer:
    1. BN rectification: ``M~ = diag(a) M``, ``a = gamma / sqrt(running_var + eps)``;
    2. top-k SVD of ``M~`` (same-shape layers batched; exact by default, as the authors' code);
    3. energy transfer: ``s_i <- sqrt(alpha) s_i`` (i <= k), ``s_i <- beta s_i`` (i > k),
       ``alpha = (||s||^2 - beta^2 ||s_{k+1:}||^2) / ||s_{1:k}||^2``;
    4. undo the BN scaling with a regularised inverse ``diag(a / (a^2 + 1e-5))``;
    5. layers whose ``s_1 < 1e-4`` are left alone (alpha would divide by ~0).

Only the top-k triplets are computed: ``||s||^2 = ||M~||_F^2`` gives the tail energy, and the
tail itself is ``M~ - U_k S_k V_k^T``.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import torch
from torch import nn

from ..decomp import batched_truncated_svd, full_precision, low_rank_approx

#: The regulariser of the inverse BN scale in step 4: ``a / (a^2 + BN_REGULARIZER)``.
BN_REGULARIZER = 1e-5
#: Step 5: layers whose largest (rectified) singular value is below this are not projected.
SKIP_BELOW = 1e-4
DEGENERATE = ("skip", "truncate")


def bn_scale(bn: nn.Module) -> torch.Tensor | None:
    """``a = gamma / sqrt(running_var + eps)`` of a BatchNorm (gamma = 1 without affine), or None
    when it keeps no running statistics (its eval-time scale is then unknown)."""
    var = getattr(bn, "running_var", None)
    if var is None:
        return None
    var = var.detach().float()
    gamma = bn.weight.detach().float() if getattr(bn, "weight", None) is not None else torch.ones_like(var)
    return gamma / torch.sqrt(var + bn.eps)


def rectify(matrix: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Step 1: ``diag(a) M``."""
    return scale.unsqueeze(1) * matrix


def unrectify(matrix: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Step 4: ``diag(a / (a^2 + 1e-5)) M`` (a regularised ``diag(1/a)``: a zero gamma gives a zero row)."""
    return (scale / (scale * scale + BN_REGULARIZER)).unsqueeze(1) * matrix


def _work(matrix: torch.Tensor) -> torch.Tensor:
    """The matrix in its computing dtype (half precision is promoted to float32)."""
    return matrix.float() if matrix.dtype in (torch.float16, torch.bfloat16) else matrix


@full_precision()
def project_matrices(
    matrices: Sequence[torch.Tensor],
    ranks: Sequence[int],
    *,
    scales: Sequence[torch.Tensor | None] | None = None,
    beta: float = 0.0,
    energy_transfer: bool = True,
    degenerate: str = "skip",
    randomized: bool | None = False,
) -> list[torch.Tensor | None]:
    """Steps 1-5 for many layers at once, on the matrices' own device.

    Args:
        matrices: the layers' ``channel`` matrices ``M``.
        ranks: the keep rank ``k`` of each.
        scales: the BN scale ``a`` of each layer, or None (no BN, or rectification off: steps 1
            and 4 are skipped exactly, rather than applying ``1 / (1 + 1e-5)``).
        beta: factor kept on the tail singular values (0: rank exactly k).
        energy_transfer: rescale the head by ``sqrt(alpha)``; False keeps ``alpha = 1`` (plain
            truncation for beta = 0, an uncompensated soft truncation for beta > 0).
        degenerate: what a layer with ``s_1 < SKIP_BELOW`` gets: ``skip`` (None, left as it is)
            or ``truncate`` (the plain rank-k truncation of ``M``, for a final projection that
            must leave every layer at rank <= k).
        randomized: the SVD of step 2 (``decomp.truncated_svd``): False (default) the exact one,
            as the authors' code; None randomized where k is far below the matrix size (this
            draws from the global RNG: the caller forks it).

    Returns:
        The projected matrices (input dtype), None for skipped layers.
    """
    if len(matrices) != len(ranks):
        raise ValueError(f"got {len(matrices)} matrices but {len(ranks)} ranks")
    if degenerate not in DEGENERATE:
        raise ValueError(f"degenerate must be one of {', '.join(DEGENERATE)}, got {degenerate!r}")
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must be in [0, 1], got {beta}")
    if not matrices:
        return []
    scales = list(scales) if scales is not None else [None] * len(matrices)
    work = []
    for m, a in zip(matrices, scales):
        w = _work(m)
        work.append(w if a is None else rectify(w, a.to(w.device, w.dtype)))
    factors = batched_truncated_svd(work, [int(k) for k in ranks], randomized=randomized)
    top = torch.stack([s[0].to(work[0].device) for _, s, _ in factors]).tolist()  # one sync
    out: list[torch.Tensor | None] = []
    for m, mt, a, (u, s, vh), k, s1 in zip(matrices, work, scales, factors, ranks, top):
        if s1 < SKIP_BELOW:
            out.append(None if degenerate == "skip" else
                       low_rank_approx(mt if a is None else _work(m), int(k), randomized=randomized).to(m.dtype))
            continue
        low = (u * s.unsqueeze(0)) @ vh
        new = low
        if energy_transfer:
            head = s.double().square().sum()
            tail = (mt.double().square().sum() - head).clamp_min(0.0)
            # alpha = (head + tail - beta^2 tail) / head, written without the cancellation.
            alpha = 1.0 + (1.0 - beta * beta) * tail / head
            new = low * alpha.sqrt().to(low.dtype)
        if beta > 0:
            new = new + beta * (mt - low)
        if a is not None:
            new = unrectify(new, a.to(m.device, new.dtype))
        out.append(new.to(m.dtype))
    return out


@torch.no_grad()
def following_batchnorms(model: nn.Module, example: torch.Tensor, names: Iterable[str]) -> dict[str, str | None]:
    """For each named layer, the BatchNorm that normalises its output directly, or None.

    One eval-mode forward pass of ``example`` with hooks: a BatchNorm follows a layer when its
    input tensor *is* that layer's output, unmodified (same tensor version, so an in-place
    ReLU in between breaks the match). Works for any wiring (Sequential, residual blocks,
    torchvision ResNets). No module state or RNG changes.
    """
    names = list(names)
    modules = dict(model.named_modules())
    produced: dict[int, tuple[str, int, torch.Tensor]] = {}  # id -> (layer, version, tensor kept alive)
    found: dict[str, str | None] = {n: None for n in names}

    def layer_hook(name):
        def hook(_mod, _inp, out):
            if isinstance(out, torch.Tensor):
                produced[id(out)] = (name, out._version, out)
        return hook

    def bn_hook(name):
        def hook(_mod, args):
            x = args[0] if args else None
            hit = produced.get(id(x)) if isinstance(x, torch.Tensor) else None
            if hit is not None and hit[2] is x and hit[1] == x._version and found[hit[0]] is None:
                found[hit[0]] = name
        return hook

    handles = [modules[n].register_forward_hook(layer_hook(n)) for n in names]
    handles += [m.register_forward_pre_hook(bn_hook(n)) for n, m in modules.items()
                if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        model(example)
    finally:
        for h in handles:
            h.remove()
        for m, mode in modes.items():
            m.training = mode
    return found

"""Data-aware decompositions: factors that minimise a layer's *output* error on calibration inputs.

A layer computes ``Y = M X`` on its unfolded inputs ``X`` (a conv's patches as ``F.unfold`` lays
them out, channel-major; a Linear's rows), ``M`` the weight as a matrix. The output error of an
approximation ``M'`` is ``||(M - M') X||_F^2 = tr((M - M') C (M - M')^T)`` with ``C = X X^T / N``,
the inputs' uncentred second moment (a bias cancels), so every closed form here reads ``C`` only.

- Low rank (the ``channel`` scheme, and Linear): ``M' = U_r U_r^T M`` with ``U_r`` the top-r
  eigenvectors of the output moment ``M C M^T``: the exact minimiser (response reconstruction,
  Zhang et al. 2015), no inverse of ``C`` needed, so a singular ``C`` (dead channels) is fine.
- Tucker-2 (``U_out . G . R`` with ``R`` the input-channel map): no closed form is known for all
  three, so for a fixed ``R`` the core and output factor are the exact reduced-rank regression
  of the dense outputs on the reduced patches; ``R`` is whichever of two candidates fits better on
  ``C``: the weight Tucker-2's input factor (so the result never fits worse than it) or the mode-1
  factor of the weight whitened by the per-pixel input covariance (activation-aware SVD).

Every computation runs in float64 under ``full_precision``; the results come back in the weight's
dtype. The moments are collected by :func:`collect_input_moments` on the model being decomposed.
"""
from __future__ import annotations

from typing import Iterable

import torch
from torch import nn
from torch.nn import functional as F

from .precision import full_precision

# *our choice*: the sequential fit's ridge, relative to the mean input energy. Without it LeNet-5
# wide's 1024-input classifier, fitted on 256 images, got factors 5x the weight's and fine-tuning
# diverged; 1e-3 to 1e-1 all fixed it (docs/training.md).
SEQUENTIAL_RIDGE = 1e-2


def unfolded_inputs(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The inputs ``X`` [d, N] that ``layer``'s weight matrix multiplies: a conv's patches
    (``F.unfold`` with its kernel, stride, padding and dilation), a Linear's input rows."""
    if isinstance(layer, nn.Linear):
        return x.reshape(-1, x.shape[-1]).t()
    if isinstance(layer, nn.Conv2d):
        padding = (0, 0) if layer.padding == "valid" else layer.padding
        patches = F.unfold(x, layer.kernel_size, dilation=layer.dilation, padding=padding, stride=layer.stride)
        return patches.transpose(0, 1).reshape(patches.shape[1], -1)
    raise TypeError(f"data-aware decomposition takes a Conv2d or Linear, got {type(layer).__name__}")


def input_moment(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``C = X X^T / N`` (float64) of ``layer``'s unfolded inputs for the batch ``x``."""
    cols = unfolded_inputs(layer, x.detach()).double()
    return cols @ cols.t() / max(cols.shape[1], 1)


@torch.no_grad()
def forward_images(model: nn.Module, loader, *, images: int, device: torch.device) -> int:
    """Run ``model`` (in its current mode) on the first ``images`` images of ``loader``, under a
    forked RNG (dropout draws leave the global stream alone); returns how many it saw."""
    seen = 0
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        for x, _ in loader:
            take = min(x.shape[0], images - seen)
            model(x[:take].to(device, non_blocking=True))
            seen += take
            if seen >= images:
                break
    return seen


@torch.no_grad()
def collect_input_moments(model: nn.Module, names: Iterable[str], loader, *, images: int,
                          device: torch.device | None = None) -> dict[str, torch.Tensor]:
    """The input moment of every named layer over the first ``images`` images of ``loader``,
    drawn through ``model`` in eval mode (its mode, weights and the global RNG left as they were).

    Raises:
        ValueError: ``images`` < 1, or the loader yields no image.
    """
    if images < 1:
        raise ValueError(f"calibration images must be >= 1, got {images}")
    device = device or next(model.parameters()).device
    modules = dict(model.named_modules())
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}

    def hook(name: str):
        def record(module, args) -> None:
            # one batch's product in float32 (half the time of float64), the sum over batches in float64
            cols = unfolded_inputs(module, args[0].detach()).float()
            sums[name] = sums.get(name, 0) + (cols @ cols.t()).double()
            counts[name] = counts.get(name, 0) + cols.shape[1]
        return record

    handles = [modules[n].register_forward_pre_hook(hook(n)) for n in names]
    was_training = model.training
    model.eval()
    try:
        seen = forward_images(model, loader, images=images, device=device)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    if seen == 0:
        raise ValueError("the calibration loader yielded no image")
    return {n: sums[n] / counts[n] for n in sums}


@torch.no_grad()
def collect_paired_moments(dense: nn.Module, compressed: nn.Module, name: str, loader, *, images: int,
                           device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``(X~ X~^T / N, X X~^T / N)`` of layer ``name``: ``X`` its inputs in ``dense``, ``X~`` those in
    ``compressed`` (the same model with earlier layers compressed), on the same first ``images``
    images of ``loader``; both models run in eval mode (left in their modes), the global RNG untouched."""
    inputs: dict[str, torch.Tensor] = {}

    def hook(key: str):
        def record(module, args) -> None:
            inputs[key] = unfolded_inputs(module, args[0].detach()).float()
        return record

    models = {"dense": dense, "compressed": compressed}
    modes = {k: m.training for k, m in models.items()}
    handles = [m.get_submodule(name).register_forward_pre_hook(hook(k)) for k, m in models.items()]
    moment = cross = 0
    count = seen = 0
    try:
        for m in models.values():
            m.eval()
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            for x, _ in loader:
                x = x[:images - seen].to(device, non_blocking=True)
                for m in models.values():
                    m(x)
                a, b = inputs["dense"], inputs["compressed"]
                moment = moment + (b @ b.t()).double()
                cross = cross + (a @ b.t()).double()
                count, seen = count + b.shape[1], seen + x.shape[0]
                if seen >= images:
                    break
    finally:
        for h in handles:
            h.remove()
        for k, m in models.items():
            m.train(modes[k])
    if count == 0:
        raise ValueError("the calibration loader yielded no image")
    return moment / count, cross / count


def output_error(matrix: torch.Tensor, approx: torch.Tensor, moment: torch.Tensor) -> float:
    """``tr((M - M') C (M - M')^T)``: the mean squared output error per input column."""
    diff = matrix.detach().double() - approx.detach().double()
    return float(torch.einsum("ij,jk,ik->", diff, moment.double(), diff))


def _top_eigvecs(sym: torch.Tensor, r: int) -> torch.Tensor:
    _, vecs = torch.linalg.eigh((sym + sym.t()) / 2)  # ascending
    return vecs[:, -r:].flip(-1)


def _relative_error(mat: torch.Tensor, approx: torch.Tensor, moment: torch.Tensor, cross: torch.Tensor) -> float:
    """``||M X - M' X~||^2 / N`` less the constant ``tr(M C M^T)``: what a fit minimises."""
    fit = torch.einsum("ij,jk,ik->", approx, moment, approx)
    return float(fit - 2 * torch.einsum("ij,jk,ik->", mat, cross, approx))


@full_precision()
def output_aware_low_rank(matrix: torch.Tensor, moment: torch.Tensor, rank: int, *,
                          cross: torch.Tensor | None = None, ridge: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(U_r [m, r], U_r^T M^ [r, n])``, the rank-``rank`` factorisation of ``matrix`` [m, n]
    minimising the output error on the inputs whose moment is ``moment`` [n, n] (``M^ = M``).

    With ``cross = X X~^T / N`` (the dense inputs ``X`` against the inputs ``X~`` the layer gets
    once earlier layers are compressed, ``moment`` then being ``X~ X~^T / N``) it minimises
    ``||M X - M' X~||^2 / N + lam ||M' - M||^2`` with ``lam = ridge * tr(C~) / n``:
    ``M^ = (M D + lam M)(C~ + lam I)^-1`` (``ridge=0``: ``M D C~^+``, the least-squares map), then
    the same projection. The ridge keeps the weights in directions the calibration inputs barely
    span (fewer images than inputs) instead of inflating them.
    """
    m, n = matrix.shape
    if not 1 <= rank <= min(m, n):
        raise ValueError(f"rank must be in [1, {min(m, n)}] for a {m}x{n} matrix, got {rank}")
    if not (ridge >= 0 and ridge < float("inf")):
        raise ValueError(f"ridge must be a finite number >= 0, got {ridge}")
    mat, mom = matrix.double(), moment.double()
    if cross is not None and ridge > 0:
        lam = float(ridge * mom.diagonal().mean().clamp_min(1e-150))
        eye = torch.eye(n, dtype=mom.dtype, device=mom.device)
        mat = torch.linalg.solve(mom + lam * eye, (mat @ cross.double() + lam * mat).t()).t()  # symmetric C~
    elif cross is not None:
        mat = mat @ cross.double() @ torch.linalg.pinv(mom, hermitian=True)
    u = _top_eigvecs(mat @ mom @ mat.t(), rank)
    return u.to(matrix.dtype), (u.t() @ mat).to(matrix.dtype)


def _regression(mat: torch.Tensor, moment: torch.Tensor, cross: torch.Tensor, reduce: torch.Tensor, taps: int,
                r_out: int):
    """For the input map ``reduce`` [r_in, c]: the reduced-rank regression ``(U_out, G)`` of the
    dense outputs on the reduced patches, and the output error of ``U_out G T`` (less a constant)."""
    t = torch.kron(reduce, torch.eye(taps, dtype=mat.dtype))
    cz = t @ moment @ t.t()
    h = mat @ cross @ t.t() @ torch.linalg.pinv(cz, hermitian=True)
    u = _top_eigvecs(h @ cz @ h.t(), r_out)
    g = u.t() @ h
    return u, g, _relative_error(mat, u @ g @ t, moment, cross)


def _whitened_input_factor(weight: torch.Tensor, moment: torch.Tensor, r_in: int) -> torch.Tensor:
    """``R`` [r_in, c] from the mode-1 SVD of the weight whitened by the per-pixel input covariance."""
    n, c = weight.shape[:2]
    taps = weight[0, 0].numel()
    sigma = moment.reshape(c, taps, c, taps).diagonal(dim1=1, dim2=3).mean(-1)
    vals, vecs = torch.linalg.eigh((sigma + sigma.t()) / 2)
    vals = vals.clamp_min(vals.max().clamp_min(1e-300) * 1e-10)
    root, inv_root = (vecs * vals.sqrt()) @ vecs.t(), (vecs * vals.rsqrt()) @ vecs.t()
    mode1 = weight.transpose(0, 1).reshape(c, -1)
    left = torch.linalg.svd(root @ mode1, full_matrices=False)[0][:, :r_in]
    return torch.linalg.qr((left.t() @ inv_root).t())[0].t()  # same row space, orthonormal rows


@full_precision()
def output_aware_tucker2(weight: torch.Tensor, moment: torch.Tensor, ranks: tuple[int, int], *,
                         cross: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Tucker-2 of ``W[n, c, kh, kw]`` fitted to the outputs: ``core [r_out, r_in, kh, kw]``,
    ``U_out [n, r_out]`` (orthonormal columns), ``U_in [c, r_in]`` (orthonormal columns; the
    reduce conv is ``U_in^T``), with an output error on ``moment`` no larger than the weight
    Tucker-2's at the same ranks; ``cross`` as in :func:`output_aware_low_rank`."""
    from .tucker import tucker2  # tensorly, loaded only where Tucker-2 is used

    r_out, r_in = ranks
    n, c, kh, kw = weight.shape
    if not (1 <= r_out <= n and 1 <= r_in <= c):
        raise ValueError(f"Tucker-2 ranks must be in [1, {n}] x [1, {c}], got {ranks}")
    w = weight.detach().double()
    mom = moment.double()
    crs = mom if cross is None else cross.double()
    mat = w.reshape(n, -1)
    candidates = [tucker2(w, (r_out, r_in))[2].t(), _whitened_input_factor(w, mom, r_in)]
    best = min((_regression(mat, mom, crs, r, kh * kw, r_out) + (r,) for r in candidates), key=lambda fit: fit[2])
    u, g, _, reduce = best
    dtype = weight.dtype
    return g.reshape(r_out, r_in, kh, kw).to(dtype), u.to(dtype), reduce.t().contiguous().to(dtype)



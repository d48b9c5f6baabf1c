"""Tucker-2 decomposition of conv kernels on the (out, in) modes, with tensorly's torch backend."""
from __future__ import annotations

import tensorly as tl
import torch
from tensorly.decomposition import partial_tucker

from .precision import full_precision
from .svd import singular_values

#: tensorly's backend for our calls only, set per call in this thread (``tl.backend_context``): a
#: global ``tl.set_backend`` at import would switch it for every other tensorly user of the process.
BACKEND = "pytorch"


def mode_spectra(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Singular values of the mode-0 (out) and mode-1 (in) unfoldings of ``W[n, c, kh, kw]``."""
    n, c = weight.shape[:2]
    out_unfold = weight.reshape(n, -1)
    in_unfold = weight.transpose(0, 1).reshape(c, -1)
    return singular_values(out_unfold), singular_values(in_unfold)


@full_precision()
def tucker2(
    weight: torch.Tensor, ranks: tuple[int, int], *, n_iter_max: int = 20
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Tucker-2 of ``W[n, c, kh, kw]``: returns ``core [r_out, r_in, kh, kw]``, ``U_out [n, r_out]``,
    ``U_in [c, r_in]`` with orthonormal factor columns, ``W ~ core x0 U_out x1 U_in``."""
    r_out, r_in = ranks
    n, c = weight.shape[:2]
    if not (1 <= r_out <= n and 1 <= r_in <= c):
        raise ValueError(f"Tucker-2 ranks must be in [1, {n}] x [1, {c}], got {ranks}")
    with torch.no_grad(), tl.backend_context(BACKEND, local_threadsafe=True):
        work = weight.detach().double()
        (core, factors), _ = partial_tucker(
            work, rank=[r_out, r_in], modes=[0, 1], init="svd", n_iter_max=n_iter_max, tol=1e-10
        )
        u_out, u_in = factors
    dtype = weight.dtype
    return core.to(dtype), u_out.to(dtype), u_in.to(dtype)


@full_precision()
def tucker2_reconstruct(core: torch.Tensor, u_out: torch.Tensor, u_in: torch.Tensor) -> torch.Tensor:
    """``core x0 U_out x1 U_in`` -> ``W[n, c, kh, kw]``."""
    return torch.einsum("abhw,na,cb->nchw", core, u_out, u_in)

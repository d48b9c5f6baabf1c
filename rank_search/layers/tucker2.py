"""`tucker2` scheme: W ~ G x0 U_out x1 U_in; Conv(c->r_in, 1x1) -> Conv(r_in->r_out, k) -> Conv(r_out->n, 1x1)."""
from __future__ import annotations

import torch
from torch import nn

from ..decomp.calibrated import output_aware_tucker2
from ..decomp.tucker import mode_spectra, tucker2, tucker2_reconstruct
from ..errors import RankSearchError
from .base import FactorizedLayer, Rank, conv_geometry


def as_pair(rank: Rank) -> tuple[int, int]:
    if isinstance(rank, int) and not isinstance(rank, bool):
        return rank, rank
    if isinstance(rank, (tuple, list)) and len(rank) == 2 and all(
        isinstance(r, int) and not isinstance(r, bool) for r in rank
    ):
        return int(rank[0]), int(rank[1])
    raise RankSearchError(f"tucker2 rank must be an int or [r_out, r_in], got {rank!r}")


def tucker2_dense_weight(reduce: torch.Tensor, core: torch.Tensor, expand: torch.Tensor) -> torch.Tensor:
    """The dense weight of a Tucker-2 triple: ``reduce`` [ri, c, 1, 1], ``core`` [ro, ri, kh, kw],
    ``expand`` [n, ro, 1, 1] -> [n, c, kh, kw]; differentiable."""
    return tucker2_reconstruct(core, expand[:, :, 0, 0], reduce[:, :, 0, 0].t())


class Tucker2Factorized(FactorizedLayer):
    scheme = "tucker2"
    data_aware = True
    scale_factor_name = "core"
    output_name = "expand"
    rank_dims = 2

    def __init__(self, reduce: nn.Conv2d, core: nn.Conv2d, expand: nn.Conv2d, rank: tuple[int, int]) -> None:
        super().__init__()
        self.reduce = reduce
        self.core = core
        self.expand = expand
        self.rank = rank

    @classmethod
    def unsupported_reason(cls, layer: nn.Module) -> str | None:
        if isinstance(layer, nn.Linear):
            return "the tucker2 scheme applies to convolutions only"
        if isinstance(layer, nn.Conv2d) and tuple(layer.kernel_size) == (1, 1):
            return "1x1 convolutions are eligible for the channel scheme only"
        return super().unsupported_reason(layer)

    @classmethod
    def max_rank(cls, layer: nn.Module, **opts) -> tuple[int, int]:
        n, c = layer.weight.shape[:2]
        return n, c

    @classmethod
    def spectra(cls, weight: torch.Tensor, **opts) -> list[torch.Tensor]:
        return list(mode_spectra(weight))

    @classmethod
    def project(cls, weight: torch.Tensor, rank: Rank, **opts) -> torch.Tensor:
        core, u_out, u_in = tucker2(weight, as_pair(rank))
        return tucker2_reconstruct(core, u_out, u_in).to(weight.device)

    @classmethod
    def build(cls, layer: nn.Module, rank: Rank, *, name: str = "layer", **opts) -> "Tucker2Factorized":
        cls.check_supported(layer, name)
        r_out, r_in = as_pair(rank)
        n, c = cls.max_rank(layer)
        if not (1 <= r_out <= n and 1 <= r_in <= c):
            raise RankSearchError(
                f"rank for layer {name!r} must be in [1, {n}] x [1, {c}] (out, in), got {[r_out, r_in]}"
            )
        reduce = nn.Conv2d(c, r_in, 1, bias=False)
        core = nn.Conv2d(r_in, r_out, bias=False, **conv_geometry(layer))
        expand = nn.Conv2d(r_out, n, 1, bias=layer.bias is not None)
        where = {"device": layer.weight.device, "dtype": layer.weight.dtype}  # the dense layer's
        return cls(reduce.to(**where), core.to(**where), expand.to(**where), (r_out, r_in))

    @classmethod
    def from_dense(cls, layer: nn.Module, rank: Rank, *, balance: bool = True, name: str = "layer",
                   input_moment: torch.Tensor | None = None, input_cross: torch.Tensor | None = None, **opts):
        new = cls.build(layer, rank, name=name)
        if input_moment is not None:
            core_w, u_out, u_in = output_aware_tucker2(layer.weight.detach(), input_moment, new.rank,
                                                      cross=input_cross)
        else:
            core_w, u_out, u_in = tucker2(layer.weight.detach(), new.rank)
        with torch.no_grad():
            new.reduce.weight.copy_(u_in.t().reshape(new.reduce.weight.shape))
            new.core.weight.copy_(core_w)
            new.expand.weight.copy_(u_out.reshape(new.expand.weight.shape))
            if layer.bias is not None:
                new.expand.bias.copy_(layer.bias.detach())
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.expand(self.core(self.reduce(x)))

    def to_dense_weight(self) -> torch.Tensor:
        return tucker2_dense_weight(self.reduce.weight, self.core.weight, self.expand.weight)

    def factor_matrices(self) -> list[torch.Tensor]:
        return [self.expand.weight[:, :, 0, 0], self.reduce.weight[:, :, 0, 0].t()]


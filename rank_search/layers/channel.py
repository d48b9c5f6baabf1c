"""`channel` scheme: M = W.reshape(n, c*kh*kw); Conv(c->r, k) -> Conv(r->n, 1x1) (Linear alike)."""
from __future__ import annotations

import torch
from torch import nn

from ..decomp.calibrated import SEQUENTIAL_RIDGE, output_aware_low_rank
from ..decomp.svd import as_working, low_rank_approx, singular_values, truncated_svd
from .base import FactorizedLayer, Rank, check_rank, conv_geometry


def channel_dense_weight(reduce: torch.Tensor, expand: torch.Tensor) -> torch.Tensor:
    """The dense weight ``expand @ reduce`` of a channel pair: ``reduce`` [r, c, kh, kw] (or [r, c]),
    ``expand`` [n, r, 1, 1] (or [n, r]) -> [n, c, kh, kw] (or [n, c]); differentiable."""
    r = reduce.shape[0]
    return (expand.reshape(-1, r) @ reduce.reshape(r, -1)).reshape((expand.shape[0],) + tuple(reduce.shape[1:]))


def _split(s: torch.Tensor, balance: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Scales for (output factor, input factor)."""
    return (s.sqrt(), s.sqrt()) if balance else (s, torch.ones_like(s))


class ChannelFactorized(FactorizedLayer):
    scheme = "channel"
    data_aware = True
    scale_factor_name = "expand"
    output_name = "expand"

    def __init__(self, reduce: nn.Module, expand: nn.Module, rank: int) -> None:
        super().__init__()
        self.reduce = reduce
        self.expand = expand
        self.rank = rank

    @staticmethod
    def matrix(weight: torch.Tensor) -> torch.Tensor:
        return weight.reshape(weight.shape[0], -1)

    @classmethod
    def max_rank(cls, layer: nn.Module, **opts) -> int:
        rows, cols = layer.weight.shape[0], layer.weight[0].numel()
        return min(rows, cols)

    @classmethod
    def spectra(cls, weight: torch.Tensor, **opts) -> list[torch.Tensor]:
        return [singular_values(cls.matrix(weight))]

    @classmethod
    def project(cls, weight: torch.Tensor, rank: Rank, *, randomized: bool | None = None, **opts) -> torch.Tensor:
        return low_rank_approx(cls.matrix(weight), int(rank), randomized=randomized).reshape(weight.shape)

    @classmethod
    def build(cls, layer: nn.Module, rank: Rank, *, name: str = "layer", **opts) -> "ChannelFactorized":
        cls.check_supported(layer, name)
        rank = int(rank) if not isinstance(rank, bool) else rank
        check_rank(name, rank, cls.max_rank(layer))
        has_bias = layer.bias is not None
        if isinstance(layer, nn.Linear):
            reduce = nn.Linear(layer.in_features, rank, bias=False)
            expand = nn.Linear(rank, layer.out_features, bias=has_bias)
        else:
            reduce = nn.Conv2d(layer.in_channels, rank, bias=False, **conv_geometry(layer))
            expand = nn.Conv2d(rank, layer.out_channels, 1, bias=has_bias)
        where = {"device": layer.weight.device, "dtype": layer.weight.dtype}  # the dense layer's
        return cls(reduce.to(**where), expand.to(**where), rank)

    @classmethod
    def from_dense(cls, layer: nn.Module, rank: Rank, *, balance: bool = True, name: str = "layer",
                   input_moment: torch.Tensor | None = None, input_cross: torch.Tensor | None = None, **opts):
        new = cls.build(layer, rank, name=name)
        w = layer.weight.detach()
        with torch.no_grad():
            m = as_working(cls.matrix(w))
            if input_moment is not None:  # the output-error optimum M' = U_r U_r^T M, re-split below
                left, right = output_aware_low_rank(m, input_moment, new.rank, cross=input_cross,
                                                    ridge=SEQUENTIAL_RIDGE)
                p, s, vh = truncated_svd(right, new.rank, randomized=False)
                u = left @ p
            else:
                u, s, vh = truncated_svd(m, new.rank, randomized=False)
            out_scale, in_scale = _split(s, balance)
            new.reduce.weight.copy_((vh * in_scale.unsqueeze(1)).reshape(new.reduce.weight.shape))
            new.expand.weight.copy_((u * out_scale.unsqueeze(0)).reshape(new.expand.weight.shape))
            if layer.bias is not None:
                new.expand.bias.copy_(layer.bias.detach())
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.expand(self.reduce(x))

    def to_dense_weight(self) -> torch.Tensor:
        return channel_dense_weight(self.reduce.weight, self.expand.weight)

    def factor_matrices(self) -> list[torch.Tensor]:
        # The input-side factor (columns = rank); the output side carries the scale.
        return [self.reduce.weight.reshape(self.rank, -1).t()]


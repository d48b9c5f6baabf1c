"""`spatial` scheme: M = W.permute(1,2,0,3).reshape(c*kh, n*kw); Conv(kh x 1) -> Conv(1 x kw)."""
from __future__ import annotations

import torch
from torch import nn

from ..decomp.svd import as_working, low_rank_approx, singular_values, truncated_svd
from .base import FactorizedLayer, Rank, check_rank, conv_geometry
from .channel import _split


def spatial_dense_weight(vertical: torch.Tensor, horizontal: torch.Tensor) -> torch.Tensor:
    """The dense weight of a spatial pair: ``vertical`` [r, c, kh, 1], ``horizontal`` [n, r, 1, kw]
    -> [n, c, kh, kw]; differentiable."""
    return torch.einsum("rci,nrj->ncij", vertical[..., 0], horizontal[:, :, 0, :])


def spatial_dense_geometry(vertical: nn.Conv2d, horizontal: nn.Conv2d) -> dict:
    """Stride, padding and dilation of the dense convolution a spatial pair computes (the vertical
    factor's on the height, the horizontal one's on the width)."""
    v, h = vertical, horizontal
    return {"stride": (v.stride[0], h.stride[1]), "padding": (v.padding[0], h.padding[1]),
            "dilation": (v.dilation[0], h.dilation[1])}


class SpatialFactorized(FactorizedLayer):
    scheme = "spatial"
    scale_factor_name = "horizontal"
    output_name = "horizontal"

    def __init__(self, vertical: nn.Conv2d, horizontal: nn.Conv2d, rank: int) -> None:
        super().__init__()
        self.vertical = vertical
        self.horizontal = horizontal
        self.rank = rank

    @classmethod
    def unsupported_reason(cls, layer: nn.Module) -> str | None:
        if isinstance(layer, nn.Linear):
            return "the spatial scheme applies to convolutions only"
        if isinstance(layer, nn.Conv2d) and tuple(layer.kernel_size) == (1, 1):
            return "1x1 convolutions are eligible for the channel scheme only"
        return super().unsupported_reason(layer)

    @staticmethod
    def matrix(weight: torch.Tensor) -> torch.Tensor:
        n, c, kh, kw = weight.shape
        return weight.permute(1, 2, 0, 3).reshape(c * kh, n * kw)

    @staticmethod
    def unmatrix(matrix: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        n, c, kh, kw = shape
        return matrix.reshape(c, kh, n, kw).permute(2, 0, 1, 3)

    @classmethod
    def max_rank(cls, layer: nn.Module, **opts) -> int:
        n, c, kh, kw = layer.weight.shape
        return min(c * kh, n * kw)

    @classmethod
    def spectra(cls, weight: torch.Tensor, **opts) -> list[torch.Tensor]:
        return [singular_values(cls.matrix(weight))]

    @classmethod
    def project(cls, weight: torch.Tensor, rank: Rank, *, randomized: bool | None = None, **opts) -> torch.Tensor:
        return cls.unmatrix(low_rank_approx(cls.matrix(weight), int(rank), randomized=randomized), weight.shape)

    @classmethod
    def build(cls, layer: nn.Module, rank: Rank, *, name: str = "layer", **opts) -> "SpatialFactorized":
        cls.check_supported(layer, name)
        check_rank(name, rank, cls.max_rank(layer))
        n, c, kh, kw = layer.weight.shape
        g = conv_geometry(layer)
        (sh, sw), (ph, pw), (dh, dw) = g["stride"], g["padding"], g["dilation"]
        vertical = nn.Conv2d(c, rank, (kh, 1), stride=(sh, 1), padding=(ph, 0), dilation=(dh, 1), bias=False)
        horizontal = nn.Conv2d(
            rank, n, (1, kw), stride=(1, sw), padding=(0, pw), dilation=(1, dw), bias=layer.bias is not None
        )
        where = {"device": layer.weight.device, "dtype": layer.weight.dtype}  # the dense layer's
        return cls(vertical.to(**where), horizontal.to(**where), rank)

    @classmethod
    def from_dense(cls, layer: nn.Module, rank: Rank, *, balance: bool = True, name: str = "layer", **opts):
        new = cls.build(layer, rank, name=name)
        w = layer.weight.detach()
        n, c, kh, kw = w.shape
        with torch.no_grad():
            u, s, vh = truncated_svd(as_working(cls.matrix(w)), rank, randomized=False)
            out_scale, in_scale = _split(s, balance)
            a = (u * in_scale.unsqueeze(0)).t()  # [r, c*kh]
            b = vh * out_scale.unsqueeze(1)  # [r, n*kw]
            new.vertical.weight.copy_(a.reshape(rank, c, kh, 1))
            new.horizontal.weight.copy_(b.reshape(rank, n, kw).permute(1, 0, 2).unsqueeze(2))
            if layer.bias is not None:
                new.horizontal.bias.copy_(layer.bias.detach())
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.horizontal(self.vertical(x))

    def dense_geometry(self) -> dict:
        """Stride, padding and dilation of the dense convolution this layer computes."""
        return spatial_dense_geometry(self.vertical, self.horizontal)

    def to_dense_weight(self) -> torch.Tensor:
        return spatial_dense_weight(self.vertical.weight, self.horizontal.weight)

    def factor_matrices(self) -> list[torch.Tensor]:
        return [self.vertical.weight.reshape(self.rank, -1).t()]


"""`tiled` scheme (DeepTwist's 2-D SVD): the channel matrix cut into a grid of tiles, each of rank r.

Row tiles split the output channels and column tiles split the input channels (each column
tile holds whole kh x kw kernels), so the compact form is two convolutions: a grouped
Conv(c -> col_tiles*row_tiles*r, k) and, after a channel shuffle, a grouped 1x1
Conv(row_tiles*col_tiles*r -> n). Params: sum over tiles of r * (rows_t + cols_t).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..decomp.svd import as_working, low_rank_approx, singular_values, truncated_svd
from ..errors import RankSearchError
from .base import FactorizedLayer, Rank, check_rank, conv_geometry

DEFAULT_TILES = (2, 2)


def _divisor_at_most(size: int, wanted: int) -> int:
    return max(d for d in range(1, min(size, wanted) + 1) if size % d == 0)


def tile_grid(layer_or_weight, tiles: tuple[int, int] | None = None) -> tuple[int, int]:
    """The (row_tiles, col_tiles) grid used for a layer: the wanted grid, each count lowered to
    the largest divisor of the out/in channels so every tile has the same shape."""
    weight = getattr(layer_or_weight, "weight", layer_or_weight)
    want = tiles or DEFAULT_TILES
    if not isinstance(want, (list, tuple)) or len(want) != 2 or not all(
        isinstance(t, int) and not isinstance(t, bool) and t >= 1 for t in want
    ):
        raise RankSearchError(f"tiles must be two integers >= 1, got {tiles!r}")
    return _divisor_at_most(weight.shape[0], want[0]), _divisor_at_most(weight.shape[1], want[1])


def _blocks(weight: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """[R, C, rows_t, cols_t] tiles of the channel matrix (cols grouped by input channel)."""
    n, c = weight.shape[:2]
    rt, ct = grid
    k = weight[0, 0].numel()
    m = weight.reshape(rt, n // rt, ct, (c // ct) * k)
    return m.permute(0, 2, 1, 3)


def _unblocks(blocks: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    return blocks.permute(0, 2, 1, 3).reshape(shape)


class TiledFactorized(FactorizedLayer):
    scheme = "tiled"
    scale_factor_name = "expand"
    output_name = "expand"

    def __init__(self, reduce: nn.Conv2d, expand: nn.Conv2d, rank: int, grid: tuple[int, int], linear: bool) -> None:
        super().__init__()
        self.reduce = reduce
        self.expand = expand
        self.rank = rank
        self.grid = grid
        self.linear = linear

    @classmethod
    def max_rank(cls, layer: nn.Module, *, tiles=None, **opts) -> int:
        rt, ct = tile_grid(layer, tiles)
        n, c = layer.weight.shape[:2]
        return min(n // rt, (c // ct) * layer.weight[0, 0].numel())

    @classmethod
    def spectra(cls, weight: torch.Tensor, *, tiles=None, **opts) -> list[torch.Tensor]:
        # Policies see the spectrum averaged over tiles (one rank is shared by all tiles).
        s = singular_values(_blocks(weight, tile_grid(weight, tiles)))
        return [s.mean(dim=(0, 1))]

    @classmethod
    def project(cls, weight: torch.Tensor, rank: Rank, *, tiles=None, randomized: bool | None = None,
                **opts) -> torch.Tensor:
        blocks = _blocks(weight, tile_grid(weight, tiles))
        return _unblocks(low_rank_approx(blocks, int(rank), randomized=randomized), weight.shape)

    @classmethod
    def build(cls, layer: nn.Module, rank: Rank, *, name: str = "layer", tiles=None, **opts) -> "TiledFactorized":
        cls.check_supported(layer, name)
        check_rank(name, rank, cls.max_rank(layer, tiles=tiles))
        rt, ct = grid = tile_grid(layer, tiles)
        linear = isinstance(layer, nn.Linear)
        n, c = layer.weight.shape[:2]
        g = {"kernel_size": (1, 1)} if linear else conv_geometry(layer)
        reduce = nn.Conv2d(c, ct * rt * rank, groups=ct, bias=False, **g)
        expand = nn.Conv2d(rt * ct * rank, n, 1, groups=rt, bias=layer.bias is not None)
        where = {"device": layer.weight.device, "dtype": layer.weight.dtype}  # the dense layer's
        return cls(reduce.to(**where), expand.to(**where), rank, grid, linear)

    @classmethod
    def from_dense(cls, layer: nn.Module, rank: Rank, *, balance: bool = True, name: str = "layer", tiles=None, **opts):
        new = cls.build(layer, rank, name=name, tiles=tiles)
        rt, ct = new.grid
        w = layer.weight.detach()
        w4 = w[:, :, None, None] if new.linear else w
        n, c, kh, kw = w4.shape
        with torch.no_grad():
            u, s, vh = truncated_svd(as_working(_blocks(w4, new.grid)), rank, randomized=False)
            scale = s.sqrt() if balance else torch.ones_like(s)
            a = vh * scale.unsqueeze(-1)  # [R, C, r, cols_t]
            b = u * (s / scale).unsqueeze(-2)  # [R, C, rows_t, r]
            # reduce output channel order: (col tile j, row tile i, k)
            new.reduce.weight.copy_(a.permute(1, 0, 2, 3).reshape(ct * rt * rank, c // ct, kh, kw))
            # expand input channel order after the shuffle: (row tile i, col tile j, k)
            new.expand.weight.copy_(b.permute(0, 2, 1, 3).reshape(n, ct * rank, 1, 1))
            if layer.bias is not None:
                new.expand.bias.copy_(layer.bias.detach())
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = None
        if self.linear:
            lead = x.shape[:-1]
            x = x.reshape(-1, x.shape[-1], 1, 1)
        z = self.reduce(x)
        rt, ct = self.grid
        b, _, h, w = z.shape
        z = z.reshape(b, ct, rt, self.rank, h, w).transpose(1, 2).reshape(b, -1, h, w)
        y = self.expand(z)
        return y.reshape(*lead, -1) if self.linear else y

    def to_dense_weight(self) -> torch.Tensor:
        rt, ct = self.grid
        r = self.rank
        a = self.reduce.weight.reshape(ct, rt, r, -1)  # [C, R, r, cols_t]
        b = self.expand.weight.reshape(rt, -1, ct, r)  # [R, rows_t, C, r]
        tiles = torch.einsum("iojr,jirc->ijoc", b, a)  # [R, C, rows_t, cols_t]
        n = self.expand.weight.shape[0]
        k = self.reduce.weight.shape[2:]
        c = self.reduce.weight.shape[1] * ct
        dense = _unblocks(tiles, torch.Size((n, c, *k)))
        return dense[:, :, 0, 0] if self.linear else dense

    def factor_matrices(self) -> list[torch.Tensor]:
        rt, ct = self.grid
        a = self.reduce.weight.reshape(ct * rt, self.rank, -1)
        return [m.t() for m in a]


    def extra_repr(self) -> str:
        return f"rank={self.rank}, grid={self.grid}"

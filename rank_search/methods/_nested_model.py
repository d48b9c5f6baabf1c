"""Nested-rank layers and models (issue 31): a factorized layer held at full rank, its components
in a fixed importance order, run at any prefix (a truncation) by slicing its weights.

Contract:
- ``NestedChannel.from_dense(layer)``: the exact full-rank SVD of the channel matrix, components
  in descending singular value, sqrt(S) on each factor. ``NestedTucker2.from_dense(layer)``: the
  full-rank HOSVD (U_out, U_in: left singular vectors of the mode-0 / mode-1 unfoldings,
  completed to square; core = W x0 U_out^T x1 U_in^T), components in descending mode singular
  value. ``NestedSpatial``: the exact full-rank SVD of the spatial matrix, as channel. At full
  rank each computes the dense layer's function (up to float error).
- ``layer.active`` is the rank the forward pass uses (None: full). Rank r uses the first r
  components through slices of the full weights: nothing is copied or reallocated, and the
  gradient reaches the prefix only. It runs the factors, or one dense convolution of their
  composed prefix where that is cheaper (``COMPOSE_SHARE``): the same function.
- ``set_truncation(model, ranks)`` sets every nested layer (a layer missing from ``ranks``: full).
- ``export_truncation(model, plan)``: a copy of ``model`` where each nested layer in ``plan`` is
  the ordinary compact layer of its scheme at the plan's rank and every other nested layer is a
  dense ``Conv2d``/``Linear`` computing it at full rank; its output equals the nested model's
  truncated to ``truncation_of(plan)`` (same BatchNorm statistics).
"""
from __future__ import annotations

import copy
from typing import Mapping

import torch
from torch import nn
from torch.nn import functional as F

from ..decomp.svd import as_working
from ..errors import RankSearchError
from ..layers import ChannelFactorized, Rank, SpatialFactorized, Tucker2Factorized, as_pair
from ..layers.base import conv_geometry
from ..layers.channel import channel_dense_weight
from ..layers.spatial import spatial_dense_geometry, spatial_dense_weight
from ..layers.tucker2 import tucker2_dense_weight
from ..plan import RankPlan


def _filled(module: nn.Module, weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Module:
    """``module`` moved to ``weight``'s device and dtype, holding copies of ``weight`` and ``bias``."""
    module = module.to(weight.device, weight.dtype)
    with torch.no_grad():
        module.weight.copy_(weight)
        if bias is not None:
            module.bias.copy_(bias)
    return module


def _conv_like(conv: nn.Conv2d, weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Conv2d:
    """A new Conv2d with ``conv``'s geometry holding copies of ``weight`` and ``bias``."""
    new = nn.Conv2d(weight.shape[1], weight.shape[0], bias=bias is not None, **conv_geometry(conv))
    return _filled(new, weight, bias)


def _linear(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Linear:
    return _filled(nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None), weight, bias)


def _strides(conv: nn.Conv2d) -> dict:
    """Stride, padding and dilation of ``conv``."""
    return {key: value for key, value in conv_geometry(conv).items() if key != "kernel_size"}


def _conv(x: torch.Tensor, conv: nn.Conv2d, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation)


#: a nested layer runs as one dense convolution of its composed prefix (exact; one op instead of
#: two or three) once the factors' MACs reach this share of the composed form's (the dense layer's
#: plus composing the weight): below it the factors are cheaper (measured: benchmarks/nested_compose.py)
COMPOSE_SHARE = 0.5


class NestedLayer(nn.Module):
    """Base of the nested layers: ``max_rank`` (an int, or Tucker-2's (out, in) pair), ``active``.

    A subclass gives its factors' forward pass, their MACs per output position and the dense
    weight of a prefix (differentiable); ``forward`` runs whichever form is cheaper."""

    scheme: str
    max_rank: Rank
    active: Rank | None
    _macs: tuple[int, int]  # a two-factor layer's MACs per output position: per rank, and dense

    def check(self, name: str, rank: Rank) -> Rank:
        """``rank`` validated against ``max_rank`` (one line naming the layer and the value)."""
        if isinstance(self.max_rank, tuple):
            pair = as_pair(rank)
            if not all(1 <= r <= m for r, m in zip(pair, self.max_rank)):
                raise RankSearchError(f"nested rank for layer {name!r} must be in [1, {self.max_rank[0]}] x "
                                      f"[1, {self.max_rank[1]}] (out, in), got {list(pair)}")
            return pair
        if isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= self.max_rank:
            raise RankSearchError(f"nested rank for layer {name!r} must be in [1, {self.max_rank}], got {rank}")
        return rank

    factorized: type | None = None  # a two-factor scheme's compact layer: its full-rank SVD starts the layer
    parts: tuple[str, ...] = ()  # that layer's two factors, in order, which become this layer's

    @classmethod
    def from_dense(cls, layer: nn.Module, *, name: str = "layer") -> "NestedLayer":
        """``layer`` at full rank: the exact SVD, sqrt(S) on each factor, components in descending
        singular value."""
        full = cls.factorized.from_dense(layer, cls.factorized.max_rank(layer), balance=True, name=name)
        return cls(*(getattr(full, part) for part in cls.parts))

    @property
    def rank_now(self) -> Rank:
        """The rank the forward pass runs at: ``active``, else ``max_rank``."""
        return self.max_rank if self.active is None else self.active

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rank = self.rank_now
        if not self.composes(rank, x):
            return self.factor_forward(x, rank)
        weight, bias = self.dense_weight(rank), self.dense_bias
        if weight.dim() == 2:
            return F.linear(x, weight, bias)
        return F.conv2d(x, weight, bias, **self.dense_geometry())

    def composes(self, rank: Rank, x: torch.Tensor) -> bool:
        """Whether ``forward`` runs the composed dense form at ``rank`` on input ``x``: MACs of the
        factors >= ``COMPOSE_SHARE`` x those of the dense layer plus composing its weight."""
        if x.dim() != 4:  # a Linear layer's input: positions are all but the feature dimension
            positions = x.numel() // x.shape[-1]
        else:
            stride = self.dense_geometry()["stride"]
            positions = x.shape[0] * (x.shape[2] // stride[0]) * (x.shape[3] // stride[1])
        return positions * self.factor_macs(rank) >= COMPOSE_SHARE * (positions * self.dense_macs()
                                                                       + self.compose_macs(rank))

    def factor_forward(self, x: torch.Tensor, rank: Rank) -> torch.Tensor:
        """The factors' forward pass at ``rank``."""
        raise NotImplementedError

    def compose_macs(self, rank: Rank) -> int:
        """Multiply-adds of ``dense_weight(rank)``."""
        return rank * self.dense_macs()

    def factor_macs(self, rank: Rank) -> int:
        """The factors' multiply-adds per output position at ``rank``."""
        return rank * self._macs[0]

    def dense_macs(self) -> int:
        """The dense layer's multiply-adds per output position."""
        return self._macs[1]

    def dense_weight(self, rank: Rank) -> torch.Tensor:
        """The dense weight the prefix at ``rank`` computes (differentiable)."""
        raise NotImplementedError

    def dense_geometry(self) -> dict:
        """Stride, padding and dilation of the dense convolution this layer computes."""
        raise NotImplementedError

    @property
    def dense_bias(self) -> torch.Tensor | None:
        """The layer's bias (on its output factor)."""
        raise NotImplementedError

    def to_compact(self, rank: Rank) -> nn.Module:
        """The scheme's ordinary compact layer at ``rank``, holding copies of the prefix."""
        raise NotImplementedError

    @torch.no_grad()
    def to_dense(self) -> nn.Module:
        """A dense ``Conv2d``/``Linear`` computing this layer at full rank."""
        weight, bias = self.dense_weight(self.max_rank), self.dense_bias
        if weight.dim() == 2:
            return _linear(weight, bias)
        conv = nn.Conv2d(weight.shape[1], weight.shape[0], tuple(weight.shape[2:]), bias=bias is not None,
                         **self.dense_geometry())
        return _filled(conv, weight, bias)


class NestedChannel(NestedLayer):
    """The channel scheme at full rank: ``reduce`` (c -> R, the dense geometry), ``expand`` (R -> n, 1x1)."""

    scheme, factorized, parts = "channel", ChannelFactorized, ("reduce", "expand")

    def __init__(self, reduce: nn.Module, expand: nn.Module) -> None:
        super().__init__()
        self.reduce, self.expand = reduce, expand
        self.max_rank = int(reduce.weight.shape[0])
        self.active = None
        n, inner = expand.weight.shape[0], reduce.weight[0].numel()
        self._macs = (inner + n, n * inner)  # per rank, dense

    @property
    def dense_bias(self) -> torch.Tensor | None:
        return self.expand.bias

    def factor_forward(self, x: torch.Tensor, rank: Rank) -> torch.Tensor:
        a, b = self.reduce.weight[:rank], self.expand.weight[:, :rank]
        if isinstance(self.reduce, nn.Linear):
            return F.linear(F.linear(x, a), b, self.expand.bias)
        return _conv(_conv(x, self.reduce, a, None), self.expand, b, self.expand.bias)

    def dense_weight(self, rank: Rank) -> torch.Tensor:
        return channel_dense_weight(self.reduce.weight[:rank], self.expand.weight[:, :rank])

    def dense_geometry(self) -> dict:
        return _strides(self.reduce)

    def to_compact(self, rank: Rank) -> ChannelFactorized:
        a, b, bias = self.reduce.weight[:rank], self.expand.weight[:, :rank], self.expand.bias
        if isinstance(self.reduce, nn.Linear):
            return ChannelFactorized(_linear(a, None), _linear(b, bias), rank)
        return ChannelFactorized(_conv_like(self.reduce, a, None), _conv_like(self.expand, b, bias), rank)


class NestedTucker2(NestedLayer):
    """Tucker-2 at full rank (n, c): ``reduce`` (c -> c, 1x1), ``core`` (c -> n), ``expand`` (n -> n, 1x1)."""

    scheme = "tucker2"

    def __init__(self, reduce: nn.Conv2d, core: nn.Conv2d, expand: nn.Conv2d) -> None:
        super().__init__()
        self.reduce, self.core, self.expand = reduce, core, expand
        self.max_rank = (int(core.weight.shape[0]), int(core.weight.shape[1]))
        self.active = None

    @classmethod
    def from_dense(cls, layer: nn.Conv2d, *, name: str = "layer") -> "NestedTucker2":
        shell = Tucker2Factorized.build(layer, Tucker2Factorized.max_rank(layer), name=name)
        w = as_working(layer.weight.detach())
        n, c = w.shape[:2]
        with torch.no_grad():
            # full_matrices: U square even where the unfolding is wide, so full rank is exact
            u_out = torch.linalg.svd(w.reshape(n, -1), full_matrices=True)[0]
            u_in = torch.linalg.svd(w.transpose(0, 1).reshape(c, -1), full_matrices=True)[0]
            core = torch.einsum("oikl,oa,ib->abkl", w, u_out, u_in)
            shell.reduce.weight.copy_(u_in.t().reshape(shell.reduce.weight.shape))
            shell.core.weight.copy_(core)
            shell.expand.weight.copy_(u_out.reshape(shell.expand.weight.shape))
            if layer.bias is not None:
                shell.expand.bias.copy_(layer.bias.detach())
        return cls(shell.reduce, shell.core, shell.expand)

    @property
    def dense_bias(self) -> torch.Tensor | None:
        return self.expand.bias

    def _weights(self, rank: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        ro, ri = rank
        return self.reduce.weight[:ri], self.core.weight[:ro, :ri], self.expand.weight[:, :ro]

    def factor_forward(self, x: torch.Tensor, rank: Rank) -> torch.Tensor:
        a, g, b = self._weights(rank)
        h = _conv(_conv(x, self.reduce, a, None), self.core, g, None)
        return _conv(h, self.expand, b, self.expand.bias)

    def factor_macs(self, rank: Rank) -> int:
        (ro, ri), (n, c) = rank, self.max_rank
        return ri * c + ro * ri * self.core.weight[0, 0].numel() + n * ro

    def dense_macs(self) -> int:
        n, c = self.max_rank
        return n * c * self.core.weight[0, 0].numel()

    def compose_macs(self, rank: Rank) -> int:
        (ro, ri), (n, c) = rank, self.max_rank
        return n * ri * (ro + c) * self.core.weight[0, 0].numel()

    def dense_weight(self, rank: Rank) -> torch.Tensor:
        return tucker2_dense_weight(*self._weights(rank))

    def dense_geometry(self) -> dict:
        return _strides(self.core)

    def to_compact(self, rank: Rank) -> Tucker2Factorized:
        a, g, b = self._weights(as_pair(rank))
        return Tucker2Factorized(_conv_like(self.reduce, a, None), _conv_like(self.core, g, None),
                                 _conv_like(self.expand, b, self.expand.bias), as_pair(rank))


class NestedSpatial(NestedLayer):
    """The spatial scheme at full rank R = min(c*kh, n*kw): ``vertical`` (c -> R, kh x 1),
    ``horizontal`` (R -> n, 1 x kw)."""

    scheme, factorized, parts = "spatial", SpatialFactorized, ("vertical", "horizontal")

    def __init__(self, vertical: nn.Conv2d, horizontal: nn.Conv2d) -> None:
        super().__init__()
        self.vertical, self.horizontal = vertical, horizontal
        self.max_rank, self.active = int(vertical.weight.shape[0]), None
        (_, c, kh, _), (n, _, _, kw) = vertical.weight.shape, horizontal.weight.shape
        self._macs = (c * kh + n * kw, n * c * kh * kw)  # per rank, dense

    @property
    def dense_bias(self) -> torch.Tensor | None:
        return self.horizontal.bias

    def factor_forward(self, x: torch.Tensor, rank: Rank) -> torch.Tensor:
        h = _conv(x, self.vertical, self.vertical.weight[:rank], None)
        return _conv(h, self.horizontal, self.horizontal.weight[:, :rank], self.horizontal.bias)

    def dense_weight(self, rank: Rank) -> torch.Tensor:
        return spatial_dense_weight(self.vertical.weight[:rank], self.horizontal.weight[:, :rank])

    def dense_geometry(self) -> dict:
        return spatial_dense_geometry(self.vertical, self.horizontal)

    def to_compact(self, rank: Rank) -> SpatialFactorized:
        return SpatialFactorized(_conv_like(self.vertical, self.vertical.weight[:rank], None),
                                 _conv_like(self.horizontal, self.horizontal.weight[:, :rank], self.horizontal.bias),
                                 rank)


def _replace(root: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, child, module)


NESTED = {"channel": NestedChannel, "spatial": NestedSpatial, "tucker2": NestedTucker2}


def nested_layers(model: nn.Module) -> dict[str, NestedLayer]:
    """Every nested layer of ``model``, in module order."""
    return {n: m for n, m in model.named_modules() if isinstance(m, NestedLayer)}


def nest(dense: nn.Module, schemes: Mapping[str, str]) -> nn.Module:
    """A copy of ``dense`` with each layer of ``schemes`` (name -> ``channel``/``tucker2``) nested
    at full rank from its current weights; ``dense`` is not mutated."""
    model = copy.deepcopy(dense)
    for name, scheme in schemes.items():
        if scheme not in NESTED:
            raise RankSearchError(f"nested layers exist for schemes {', '.join(NESTED)}; layer {name!r} has {scheme!r}")
        layer = model.get_submodule(name)
        _replace(model, name, NESTED[scheme].from_dense(layer, name=name).train(layer.training))
    return model


def set_truncation(model: nn.Module, ranks: Mapping[str, Rank] | None) -> None:
    """Run every nested layer of ``model`` at its rank in ``ranks`` (missing or None: full rank)."""
    layers = nested_layers(model)
    ranks = ranks or {}
    unknown = sorted(set(ranks) - set(layers))
    if unknown:
        raise RankSearchError(f"a truncation names layers that are not nested: {', '.join(unknown)}")
    for name, layer in layers.items():
        layer.active = None if ranks.get(name) is None else layer.check(name, ranks[name])


def truncation_of(plan: RankPlan) -> dict[str, Rank]:
    """The truncation ``export_truncation(model, plan)`` computes: the plan's ranks."""
    return {name: lp.rank for name, lp in plan.items()}


@torch.no_grad()
def export_truncation(model: nn.Module, plan: RankPlan) -> nn.Module:
    """The compact model of ``model`` truncated to ``plan`` (see the module docstring)."""
    layers = nested_layers(model)
    for name, lp in plan.items():
        if name not in layers:
            raise RankSearchError(f"plan layer {name!r} is not a nested layer of the model")
        if lp.scheme != layers[name].scheme:
            raise RankSearchError(
                f"plan layer {name!r} has scheme {lp.scheme!r}, the nested layer {layers[name].scheme!r}")
        layers[name].check(name, lp.rank)
    compact = copy.deepcopy(model)
    for name, layer in nested_layers(compact).items():
        new = layer.to_compact(plan[name].rank) if name in plan else layer.to_dense()
        _replace(compact, name, new.train(layer.training))
    return compact

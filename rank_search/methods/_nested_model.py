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
  gradient reaches the prefix only.
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


def _conv(x: torch.Tensor, conv: nn.Conv2d, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation)


class NestedLayer(nn.Module):
    """Base of the nested layers: ``max_rank`` (an int, or Tucker-2's (out, in) pair), ``active``."""

    scheme: str
    max_rank: Rank
    active: Rank | None

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

    def to_compact(self, rank: Rank) -> nn.Module:
        """The scheme's ordinary compact layer at ``rank``, holding copies of the prefix."""
        raise NotImplementedError

    def to_dense(self) -> nn.Module:
        """A dense ``Conv2d``/``Linear`` computing this layer at full rank."""
        raise NotImplementedError


class NestedChannel(NestedLayer):
    """The channel scheme at full rank: ``reduce`` (c -> R, the dense geometry), ``expand`` (R -> n, 1x1)."""

    scheme, factorized, parts = "channel", ChannelFactorized, ("reduce", "expand")

    def __init__(self, reduce: nn.Module, expand: nn.Module) -> None:
        super().__init__()
        self.reduce, self.expand = reduce, expand
        self.max_rank = int(reduce.weight.shape[0])
        self.active = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.rank_now
        a, b = self.reduce.weight[:r], self.expand.weight[:, :r]
        if isinstance(self.reduce, nn.Linear):
            return F.linear(F.linear(x, a), b, self.expand.bias)
        return _conv(_conv(x, self.reduce, a, None), self.expand, b, self.expand.bias)

    def to_compact(self, rank: Rank) -> ChannelFactorized:
        a, b, bias = self.reduce.weight[:rank], self.expand.weight[:, :rank], self.expand.bias
        if isinstance(self.reduce, nn.Linear):
            return ChannelFactorized(_linear(a, None), _linear(b, bias), rank)
        return ChannelFactorized(_conv_like(self.reduce, a, None), _conv_like(self.expand, b, bias), rank)

    def to_dense(self) -> nn.Module:
        a = self.reduce.weight.reshape(self.max_rank, -1)
        b = self.expand.weight.reshape(-1, self.max_rank)
        weight = (b @ a).reshape((b.shape[0],) + tuple(self.reduce.weight.shape[1:]))
        if isinstance(self.reduce, nn.Linear):
            return _linear(weight, self.expand.bias)
        return _conv_like(self.reduce, weight, self.expand.bias)


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

    def _weights(self, rank: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        ro, ri = rank
        return self.reduce.weight[:ri], self.core.weight[:ro, :ri], self.expand.weight[:, :ro]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, g, b = self._weights(self.rank_now)
        h = _conv(_conv(x, self.reduce, a, None), self.core, g, None)
        return _conv(h, self.expand, b, self.expand.bias)

    def to_compact(self, rank: Rank) -> Tucker2Factorized:
        a, g, b = self._weights(as_pair(rank))
        return Tucker2Factorized(_conv_like(self.reduce, a, None), _conv_like(self.core, g, None),
                                 _conv_like(self.expand, b, self.expand.bias), as_pair(rank))

    def to_dense(self) -> nn.Conv2d:
        u_in = self.reduce.weight[:, :, 0, 0]
        u_out = self.expand.weight[:, :, 0, 0]
        weight = torch.einsum("abkl,oa,bi->oikl", self.core.weight, u_out, u_in)
        return _conv_like(self.core, weight, self.expand.bias)


class NestedSpatial(NestedLayer):
    """The spatial scheme at full rank R = min(c*kh, n*kw): ``vertical`` (c -> R, kh x 1),
    ``horizontal`` (R -> n, 1 x kw)."""

    scheme, factorized, parts = "spatial", SpatialFactorized, ("vertical", "horizontal")

    def __init__(self, vertical: nn.Conv2d, horizontal: nn.Conv2d) -> None:
        super().__init__()
        self.vertical, self.horizontal = vertical, horizontal
        self.max_rank, self.active = int(vertical.weight.shape[0]), None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.rank_now
        h = _conv(x, self.vertical, self.vertical.weight[:r], None)
        return _conv(h, self.horizontal, self.horizontal.weight[:, :r], self.horizontal.bias)

    def to_compact(self, rank: Rank) -> SpatialFactorized:
        return SpatialFactorized(_conv_like(self.vertical, self.vertical.weight[:rank], None),
                                 _conv_like(self.horizontal, self.horizontal.weight[:, :rank], self.horizontal.bias),
                                 rank)

    def to_dense(self) -> nn.Conv2d:
        full = self.to_compact(self.max_rank)
        weight, bias = full.to_dense_weight(), full.horizontal.bias
        conv = nn.Conv2d(weight.shape[1], weight.shape[0], tuple(weight.shape[2:]), bias=bias is not None,
                         **full.dense_geometry())
        return _filled(conv, weight, bias)


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

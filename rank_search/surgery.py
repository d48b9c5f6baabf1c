"""Model surgery: dense model + resolved rank plan -> compact model (BatchNorm kept)."""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import Mapping

import torch
from torch import nn

from .errors import RankSearchError

from .cost import count_macs
from .layers import get_scheme
from .plan import RankPlan, candidate_layers


def data_aware_schemes() -> tuple[str, ...]:
    """The schemes with a data-aware (output-error) decomposition."""
    from .layers import SCHEMES

    return tuple(n for n in SCHEMES.names() if SCHEMES.get(n).data_aware)


def check_data_aware(plan: RankPlan, input_moments: Mapping[str, torch.Tensor] | None = None) -> None:
    """Every planned layer's scheme has a data-aware form (and, given ``input_moments``, a moment)."""
    for name, lp in plan.items():
        if not get_scheme(lp.scheme).data_aware:
            raise RankSearchError(f"init_decomposition=data needs schemes {', '.join(data_aware_schemes())}; "
                                  f"layer {name!r} has scheme {lp.scheme!r}")
        if input_moments is not None and name not in input_moments:
            raise RankSearchError(f"init_decomposition=data has no calibration moment for layer {name!r}")


def _set_submodule(root: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, module)


def compress(model: nn.Module, plan: RankPlan, *, balance: bool = True, decompose: bool = True,
             input_moments: Mapping[str, torch.Tensor] | None = None) -> nn.Module:
    """A compact copy of ``model`` with every planned layer factorized from its current weights.

    The dense model is never mutated.

    Args:
        balance: split singular values evenly between factors; False keeps the input-side
            factors orthonormal (ELRT's initialisation).
        decompose: False builds only the compact structure (default-initialised factors), e.g.
            to load saved compact weights without paying for the decompositions.
        input_moments: layer name -> the second moment of its unfolded inputs on calibration
            data (``decomp.collect_input_moments``): every planned layer is then decomposed
            data-aware (its output error minimised). Raises ``RankSearchError`` for a planned
            layer whose scheme has no data-aware form or whose moment is missing.
    """
    if input_moments is not None:
        check_data_aware(plan, input_moments)
    compact = copy.deepcopy(model)
    layers = candidate_layers(compact)
    for name, lp in plan.items():
        cls = get_scheme(lp.scheme)
        if decompose:
            extra = {"input_moment": input_moments[name]} if input_moments is not None else {}
            new = cls.from_dense(layers[name], lp.rank, balance=balance, name=name, tiles=lp.tiles, **extra)
        else:
            new = cls.build(layers[name], lp.rank, name=name, tiles=lp.tiles)
        _set_submodule(compact, name, new.train(layers[name].training))
    return compact


def compress_sequential(model: nn.Module, plan: RankPlan, loader, *, images: int, device: torch.device,
                        balance: bool = True) -> nn.Module:
    """Like ``compress(..., input_moments=...)``, but layer by layer in plan order, each layer fitted
    to reproduce its dense outputs from the inputs it gets with every earlier planned layer already
    compressed (``decomp.collect_paired_moments``: two forward passes of the first ``images``
    images of ``loader`` per layer). The dense model is never mutated; modes are kept."""
    from .decomp import collect_paired_moments

    check_data_aware(plan)
    compact = copy.deepcopy(model)
    layers = candidate_layers(model)
    for name, lp in plan.items():
        moment, cross = collect_paired_moments(model, compact, name, loader, images=images, device=device)
        new = get_scheme(lp.scheme).from_dense(layers[name], lp.rank, balance=balance, name=name,
                                               tiles=lp.tiles, input_moment=moment, input_cross=cross)
        _set_submodule(compact, name, new.train(layers[name].training))
    return compact


@dataclass(frozen=True)
class LayerReport:
    """One line of the surgery report."""

    name: str
    kind: str
    shape: tuple[int, ...]
    scheme: str
    rank: str
    max_rank: str
    dense_params: int
    compact_params: int
    dense_macs: int
    compact_macs: int

    def to_dict(self) -> dict:
        return asdict(self)


def format_rank(rank) -> str:
    """A rank as text: ``8``, or ``8x4`` for Tucker-2's (out, in) pair."""
    return "x".join(str(r) for r in rank) if isinstance(rank, tuple) else str(rank)


def layer_report(dense: nn.Module, compact: nn.Module, plan: RankPlan, input_shape: tuple[int, ...]) -> list[LayerReport]:
    """Per-layer (name, shape, scheme, rank, max rank, params and MACs dense/compact) for every
    candidate layer of ``dense``; layers outside the plan are reported as ``dense``."""
    _, dense_macs = count_macs(dense, input_shape)
    _, compact_macs = count_macs(compact, input_shape)
    rows = []
    for name, layer in candidate_layers(dense).items():
        kind = type(layer).__name__
        shape = tuple(layer.weight.shape)
        dense_params = sum(p.numel() for p in layer.parameters())
        if name in plan:
            lp = plan[name]
            cls = get_scheme(lp.scheme)
            sub = compact.get_submodule(name)
            compact_params = sum(p.numel() for p in sub.parameters())
            prefix = name + "."
            macs = sum(v for k, v in compact_macs.items() if k.startswith(prefix))
            rows.append(LayerReport(name, kind, shape, lp.scheme, format_rank(lp.rank),
                                    format_rank(cls.max_rank(layer, tiles=lp.tiles)),
                                    dense_params, compact_params, dense_macs.get(name, 0), macs))
        else:
            rows.append(LayerReport(name, kind, shape, "dense", "-", "-", dense_params, dense_params,
                                    dense_macs.get(name, 0), dense_macs.get(name, 0)))
    return rows


def format_report(rows: list[LayerReport]) -> str:
    """A fixed-width table of the report."""
    header = ("layer", "shape", "scheme", "rank", "max", "params", "->", "MACs", "->")
    lines = [header]
    for r in rows:
        lines.append((r.name, "x".join(map(str, r.shape)), r.scheme, r.rank, r.max_rank,
                      f"{r.dense_params:,}", f"{r.compact_params:,}", f"{r.dense_macs:,}", f"{r.compact_macs:,}"))
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines)

"""Measured per-layer latency, the cost a latency-budgeted allocation spends (``ranks.budget:
latency``): every eligible layer timed dense and factorized at a few ranks, alone, at the input
it sees in the model, at the space's latency batch size, on the trial's device and thread count.

Why a table of measured times rather than MACs: on a CPU the convolution kernels vectorise
over blocks of 16 output channels, so a factor of rank 5 costs what one of rank 16 costs (the
compact-model CPU speed benchmark). The ranks timed are 1, 2, 4, 8, then every
multiple of BLOCK up to the layer's MACs break-even, and the largest rank below it; a rank is
charged the least time of the timed ranks at or above it (a step up to the next timed rank, or
less where a larger timed rank measured faster: a larger rank can always stand in for it), so
the allocation, which minimises predicted accuracy loss for the time budget and has the timed
ranks among its candidates, takes the top of each step: ranks at block multiples where they
cost nothing more.

Each (layer, rank) is timed interleaved with its dense layer (``latency.median_forward_ms``);
the table keeps both medians, and a layer's factorized time is predicted as its dense median
(over all its rows) times the row's factorized / dense ratio, so load on a shared node largely
cancels. The whole dense model is timed too: what the eligible layers do not account for (ReLU,
pooling, residual adds, BatchNorm) is a fixed part no rank changes.
"""
from __future__ import annotations

import math
import statistics
import time
from typing import Any, Mapping, Sequence

from torch import nn

from .cost import layer_input_shapes, stays_dense
from .decomp.policies import RankPolicy
from .errors import RankSearchError
from .layers import get_scheme
from .plan import eligible_layers, resolve_rank, scheme_for
from .tables import LATENCY_COLUMNS as COLUMNS, LatencyTable, load_layer_latency, save_layer_latency

__all__ = ["BLOCK", "COLUMNS", "LOW_RANKS", "LatencyTable", "LayerLatency", "load_layer_latency",
           "measure_layer_latency", "save_layer_latency", "timed_ranks"]

LOW_RANKS = (1, 2, 4, 8)
BLOCK = 16  # output channels per vector block of oneDNN's / MLAS's CPU convolution kernels


def _covers(big, small) -> bool:
    """``big`` is at least ``small`` in every rank dimension."""
    bs = big if isinstance(big, tuple) else (big,)
    ss = small if isinstance(small, tuple) else (small,)
    return all(b >= s for b, s in zip(bs, ss))


def timed_ranks(name: str, layer: nn.Module, scheme: str) -> list:
    """The ranks of ``layer`` the table times (see the module docstring), smallest first."""
    cls = get_scheme(scheme)
    top = cls.max_rank(layer)
    top = max(top) if isinstance(top, tuple) else top

    def rank_at(k: float):
        return resolve_rank(name, layer, scheme, RankPolicy("ratio", min(1.0, k / top)))

    def saves(rank) -> bool:
        return not stays_dense(layer, scheme, rank)

    lo, hi = 1.0, float(top)  # the largest rank still below break-even, by bisection on k
    if not saves(rank_at(lo)):
        return []
    for _ in range(30):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if saves(rank_at(mid)) else (lo, mid)
    ks = [k for k in LOW_RANKS if k < lo] + list(range(BLOCK, int(lo) + 1, BLOCK)) + [lo]
    out: list = []
    for k in ks:
        rank = rank_at(k)
        if saves(rank) and rank not in out:
            out.append(rank)
    return out


def measure_layer_latency(model: nn.Module, input_shape: tuple[int, ...], schemes: Sequence[str], *,
                          batch_size: int, device="cpu", threads: int | None = None,
                          max_seconds: float = 0.25, progress=None) -> LatencyTable:
    """Time every eligible layer of ``model`` (dense and at its ``timed_ranks`` in each scheme
    of ``schemes``) alone on its own input, and the whole dense model; ``model`` is not changed."""
    import torch

    from .latency import REPEATS, median_forward_ms

    device = torch.device(device)
    shapes = layer_input_shapes(model, input_shape, eligible_layers(model))
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    before = torch.get_num_threads()
    rows: list[dict[str, Any]] = []
    start = time.perf_counter()
    generator = torch.Generator().manual_seed(0)
    try:
        if threads:
            torch.set_num_threads(threads)
        with torch.no_grad():
            layers = eligible_layers(model)
            for i, (name, layer) in enumerate(layers.items()):
                dense = _copy_to(layer, device)
                x = torch.randn((batch_size, *shapes[name]), generator=generator).to(device)
                for scheme in dict.fromkeys(scheme_for(layer, s) for s in schemes):
                    for rank in timed_ranks(name, layer, scheme):
                        built = get_scheme(scheme).build(layer, rank, name=name).to(device).eval()
                        dense_ms, ms = median_forward_ms([dense, built], x, repeats=REPEATS, max_seconds=max_seconds,
                                                         synchronize=sync)
                        rows.append({"layer": name, "scheme": scheme, "rank": rank, "latency_ms": ms,
                                     "dense_latency_ms": dense_ms})
                if progress is not None:
                    progress(f"layer latency: {i + 1}/{len(layers)} layers")
            whole = _copy_to(model, device)
            x = torch.randn((batch_size, *input_shape), generator=generator).to(device)
            model_ms = median_forward_ms([whole], x, repeats=REPEATS, max_seconds=4 * max_seconds, synchronize=sync)[0]
    finally:
        torch.set_num_threads(before)
    meta = {"batch_size": int(batch_size), "threads": int(threads or before), "device": str(device),
            "input_shape": list(input_shape), "model_ms": float(model_ms), "seconds": time.perf_counter() - start}
    return LatencyTable(tuple(rows), meta)


def _copy_to(module: nn.Module, device) -> nn.Module:
    import copy

    return copy.deepcopy(module).to(device).eval()


class LayerLatency:
    """The allocation's cost in predicted milliseconds (the interface of ``allocation.LayerMacs``:
    ``layers``, ``dense``, ``total``, ``factorized``), read from a ``LatencyTable``."""

    def __init__(self, model: nn.Module, table: LatencyTable) -> None:
        self.layers = eligible_layers(model)
        by_layer: dict[str, list[Mapping[str, Any]]] = {}
        for row in table.rows:
            by_layer.setdefault(row["layer"], []).append(row)
        missing = [n for n in self.layers if n not in by_layer]
        if missing:
            raise RankSearchError(f"the layer latency table has no rows for layer {missing[0]!r} "
                                  f"({len(missing)} of {len(self.layers)} layers missing): measured on another model?")
        self.dense = {n: statistics.median(r["dense_latency_ms"] for r in by_layer[n]) for n in self.layers}
        # (scheme, rank, factorized / dense) per layer, smallest rank first
        self._points = {n: sorted(((r["scheme"], r["rank"], r["latency_ms"] / r["dense_latency_ms"])
                                   for r in by_layer[n] if r["dense_latency_ms"] > 0),
                                  key=lambda p: (p[1] if isinstance(p[1], tuple) else (p[1],)))
                        for n in self.layers}
        model_ms = float(table.meta.get("model_ms", 0.0))
        self.total = max(model_ms, sum(self.dense.values()))
        if not math.isfinite(self.total) or self.total <= 0:
            raise RankSearchError(f"the layer latency table's model time must be a positive number, got {model_ms!r}")

    def timed(self, name: str, scheme: str) -> list:
        """The ranks of ``name`` the table timed in ``scheme`` (the allocation's extra candidates)."""
        return [rank for s, rank, _ in self._points[name] if s == scheme]

    def factorized(self, name: str, scheme: str, rank, tiles=None) -> float:
        """Predicted time of ``name`` at ``rank``: the least of the timed ranks covering it (at
        least as large in every dimension); the dense time (so the layer stays dense) above
        every timed rank."""
        ratios = [ratio for s, timed, ratio in self._points[name] if s == scheme and _covers(timed, rank)]
        return self.dense[name] * min(ratios) if ratios else self.dense[name]

"""Budget-driven rank allocation: the per-layer integer ranks that reach a target MACs
compression, either with one ratio for every layer (``uniform``) or at the least predicted loss
of accuracy from a layer sensitivity profile (``sensitivity``).

*Our choice* of solver (documented in docs/METHODS.md): each layer's profile curve (predicted
cost of compressing only that layer, against its rank ratio) is made non-increasing towards the
dense end, interpolated in log ratio, and evaluated on every rank of a log-spaced candidate
grid; layers choose a candidate (or stay dense) by a Lagrangian relaxation of the multiple-choice
knapsack (min sum cost + lambda * MACs, lambda bisected to fit the budget), then a greedy fill
spends the remaining MACs on the upgrades with the best cost saved per MAC. Candidates whose
factorized layer costs at least the dense layer's MACs (``cost.stays_dense``, the rule plans use)
are never chosen (the layer stays dense).
The single-layer costs are assumed additive.

The budget is MACs by default; with ``budget="latency"`` it is measured time: the same solver
spends predicted milliseconds from a layer latency table (``layer_latency.LayerLatency``, the
same interface as ``LayerMacs``), the target is a latency speed-up, and a rank whose measured
time is at least the dense layer's keeps the layer dense.
"""
from __future__ import annotations

import bisect
import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from torch import nn

from . import schema
from .cost import count_macs, layer_input_shapes, stays_dense
from .decomp.policies import RankPolicy
from .errors import RankSearchError
from .layer_latency import LayerLatency
from .layers import get_scheme
from .plan import LayerPlan, RankPlan, eligible_layers, resolve_rank, scheme_for
from .schema import BUDGETS
# the tables and their files, re-exported where callers have always found them
from .tables import (PROFILE_COLUMNS, Profile, load_layer_latency, load_profile, save_layer_latency,  # noqa: F401
                     save_profile)

ALLOCATIONS = schema.ALLOCATIONS
PROXIES = schema.PROFILE_PROXIES
GRID_POINTS = 48  # candidate ratios per layer, log-spaced from rank 1 to the max rank
SMALL_RANKS = 32  # and every rank up to this one
TOLERANCE = 0.05  # a budget allocation lands within this fraction of its target


def _interpolate(xs: Sequence[float], ys: Sequence[float], x: float) -> float:
    if x <= xs[0]:  # below the smallest profiled ratio: the first segment's slope continues
        slope = (ys[0] - ys[1]) / (xs[1] - xs[0]) if len(xs) > 1 and xs[1] > xs[0] else 0.0
        return ys[0] + max(slope, 0.0) * (xs[0] - x)
    if x >= xs[-1]:
        return ys[-1]
    i = bisect.bisect_right(xs, x)
    t = (x - xs[i - 1]) / (xs[i] - xs[i - 1])
    return ys[i - 1] + t * (ys[i] - ys[i - 1])


class LayerMacs:
    """Exact MACs of each eligible layer of a model, dense and factorized at any rank (cached)."""

    def __init__(self, model: nn.Module, input_shape: tuple[int, ...]) -> None:
        self.model = model
        self.layers = eligible_layers(model)
        self.inputs = layer_input_shapes(model, input_shape, self.layers)
        self.total, per_module = count_macs(model, input_shape)
        self.dense = {n: per_module[n] for n in self.layers}
        self._cache: dict[tuple, int] = {}

    def _measured(self, name: str, scheme: str, rank, tiles) -> int:
        key = (name, scheme, rank, tiles)
        if key not in self._cache:
            built = get_scheme(scheme).build(self.layers[name], rank, name=name, **({"tiles": tiles} if tiles else {}))
            self._cache[key] = count_macs(built, self.inputs[name])[0]
        return self._cache[key]

    def factorized(self, name: str, scheme: str, rank, tiles=None) -> int:
        """MACs of the factorized layer: every factor's MACs are linear in each rank, so four
        (Tucker-2's two ranks) or two measured small structures give any rank exactly."""
        if isinstance(rank, tuple):
            ro, ri = rank
            m11, m12 = self._measured(name, scheme, (1, 1), tiles), self._measured(name, scheme, (1, 2), tiles)
            m21, m22 = self._measured(name, scheme, (2, 1), tiles), self._measured(name, scheme, (2, 2), tiles)
            a = m22 - m21 - m12 + m11
            return int(m11 + (m21 - m11 - a) * (ro - 1) + (m12 - m11 - a) * (ri - 1) + a * (ro * ri - 1))
        m1, m2 = self._measured(name, scheme, 1, tiles), self._measured(name, scheme, 2, tiles)
        return int(m1 + (m2 - m1) * (rank - 1))


@dataclass
class _Choice:
    rank: Any  # None = dense
    macs: int
    cost: float


def _candidates(macs: LayerMacs, name: str, scheme: str, cost_of) -> list[_Choice]:
    """Dense plus every distinct rank of the candidate grid below break-even, cheapest first
    (``macs`` is a ``LayerMacs`` or a ``LayerLatency``: ``.macs`` is then milliseconds)."""
    layer = macs.layers[name]
    max_rank = get_scheme(scheme).max_rank(layer)
    top = max(max_rank) if isinstance(max_rank, tuple) else max_rank
    low = 1.0 / top
    choices = {None: _Choice(None, macs.dense[name], 0.0)}
    ratios = [low ** (1 - i / (GRID_POINTS - 1)) for i in range(GRID_POINTS)]
    if not isinstance(max_rank, tuple):  # every small rank too: at high compression a step of one is large
        ratios += [r / top for r in range(1, min(top, SMALL_RANKS) + 1)]
    timed = getattr(macs, "timed", None)  # a LayerLatency: its timed ranks too (the top of each step)
    ranks = [(ratio, resolve_rank(name, layer, scheme, RankPolicy("ratio", min(1.0, ratio))))
             for ratio in sorted(set(ratios))]
    if timed is not None:
        ranks += [(_ratio_of(macs, name, scheme, rank), rank) for rank in timed(name, scheme)]
    for ratio, rank in ranks:
        if rank in choices:
            continue
        m = macs.factorized(name, scheme, rank)
        # at or above break-even the dense layer is cheaper: the plans' rule (a plan of these
        # ranks keeps every layer), and dense stays the costliest choice of every layer
        if stays_dense(layer, scheme, rank, measured=(macs.dense[name], m)):
            continue
        choices[rank] = _Choice(rank, m, cost_of(ratio))
    return sorted(choices.values(), key=lambda c: c.macs)


def _plan(choices: Mapping[str, _Choice], schemes: Mapping[str, str],
          options: Mapping[str, Sequence[_Choice]]) -> RankPlan:
    """The chosen ranks; ``kept_dense`` lists the layers no rank makes cheaper than dense (by
    MACs, or by measured time under a latency budget), for the run record."""
    kept = tuple(n for n, opts in options.items() if all(c.rank is None for c in opts))
    return RankPlan(tuple((n, LayerPlan(schemes[n], c.rank)) for n, c in choices.items() if c.rank is not None), kept)


def uniform_allocation(macs: LayerMacs, target: float, *, scheme: str) -> RankPlan:
    """One rank ratio for every eligible layer (layers above break-even stay dense), the
    largest whose model reaches ``target`` MACs compression."""
    budget = macs.total / target
    schemes = {n: scheme_for(layer, scheme) for n, layer in macs.layers.items()}
    options = {n: _candidates(macs, n, schemes[n], lambda r: 0.0) for n in macs.layers}
    fixed = macs.total - sum(macs.dense.values())

    def at(ratio: float) -> dict[str, _Choice]:
        out = {}
        for n, layer in macs.layers.items():
            rank = resolve_rank(n, layer, schemes[n], RankPolicy("ratio", ratio))
            m = macs.factorized(n, schemes[n], rank)
            dense = stays_dense(layer, schemes[n], rank, measured=(macs.dense[n], m))
            out[n] = options[n][-1] if dense else _Choice(rank, m, 0.0)
        return out

    lo, hi = math.log(1e-4), 0.0
    for _ in range(40):
        mid = (lo + hi) / 2
        total = fixed + sum(c.macs for c in at(math.exp(mid)).values())
        lo, hi = (mid, hi) if total <= budget else (lo, mid)
    chosen = at(math.exp(lo))
    # the ratio's rounding leaves slack on a model of few layers: spend it one rank step at a
    # time on the layer furthest below the common ratio, so ranks stay as uniform as integers allow
    steps = {n: [c for c in options[n] if c.rank is not None] for n in macs.layers}
    while True:
        total = fixed + sum(c.macs for c in chosen.values())
        best = None
        for n, cur in chosen.items():
            if cur.rank is None:
                continue
            up = [c for c in steps[n] if c.macs > cur.macs]
            if up and total + up[0].macs - cur.macs <= budget:
                key = _ratio_of(macs, n, schemes[n], cur.rank)
                if best is None or key < best[0]:
                    best = (key, n, up[0])
        if best is None:
            break
        chosen[best[1]] = best[2]
    return _plan(chosen, schemes, options)


def _ratio_of(macs: LayerMacs, name: str, scheme: str, rank) -> float:
    top = get_scheme(scheme).max_rank(macs.layers[name])
    ranks = rank if isinstance(rank, tuple) else (rank,)
    tops = top if isinstance(top, tuple) else (top,) * len(ranks)
    return sum(r / t for r, t in zip(ranks, tops)) / len(ranks)


def sensitivity_allocation(macs: LayerMacs, target: float, profile: Profile, *, scheme: str,
                           proxy: str = "bn") -> RankPlan:
    """The integer ranks reaching ``target`` MACs compression at the least predicted cost."""
    budget = macs.total / target
    schemes = {n: scheme_for(layer, scheme) for n, layer in macs.layers.items()}
    curves = {n: profile.curve(n, schemes[n], proxy) for n in macs.layers}
    # a tie-break far below the profile's resolution: of two equally costly choices the less
    # compressed one wins, so the budget is spent rather than over-met
    eps = 1e-4 * max([max(ys) for _, ys in curves.values()] + [1e-6])
    options = {n: _candidates(macs, n, schemes[n],
                              lambda r, xs=xs, ys=ys: _interpolate(xs, ys, math.log(r)) - eps * math.log(r))
               for n, (xs, ys) in curves.items()}
    fixed = macs.total - sum(macs.dense.values())
    scale = 1.0 / macs.total

    def pick(lam: float) -> dict[str, _Choice]:
        return {n: min(opts, key=lambda c: (c.cost + lam * c.macs * scale, c.macs)) for n, opts in options.items()}

    lo, hi = -12.0, 6.0  # log10 lambda
    for _ in range(60):
        mid = (lo + hi) / 2
        total = fixed + sum(c.macs for c in pick(10 ** mid).values())
        lo, hi = (lo, mid) if total <= budget else (mid, hi)
    chosen = pick(10 ** hi)
    for _ in range(4 * len(options) + 8):
        _fill(chosen, options, fixed, budget)
        if not _swap(chosen, options, fixed, budget):
            break
    # still well below the budget (a flat profile gives no reason to move): exchange at the
    # least cost until the target is met within TOLERANCE
    for _ in range(4 * len(options) + 8):
        total = fixed + sum(c.macs for c in chosen.values())
        if total >= budget * (1 - TOLERANCE / 2) or not _swap(chosen, options, fixed, budget, need_gain=False):
            break
        _fill(chosen, options, fixed, budget)
    return _plan(chosen, schemes, options)


def _fill(chosen: dict[str, _Choice], options: Mapping[str, list[_Choice]], fixed: int, budget: float) -> None:
    """Greedy fill: spend what is left of the budget on the best cost saved per MAC."""
    while True:
        total = fixed + sum(c.macs for c in chosen.values())
        best, best_gain = None, 0.0
        for n, opts in options.items():
            cur = chosen[n]
            for c in opts:
                extra = c.macs - cur.macs
                if extra > 0 and total + extra <= budget and c.cost < cur.cost:
                    gain = (cur.cost - c.cost) / extra
                    if gain > best_gain:
                        best, best_gain = (n, c), gain
        if best is None:
            return
        chosen[best[0]] = best[1]


def _swap(chosen: dict[str, _Choice], options: Mapping[str, list[_Choice]], fixed: int, budget: float, *,
          need_gain: bool = True) -> bool:
    """One exchange when the slack is smaller than any single upgrade: upgrade one layer a step
    and pay for it by compressing another, if that lowers the total predicted cost (or, without
    ``need_gain``, at the least increase, to use the budget)."""
    total = fixed + sum(c.macs for c in chosen.values())
    best, best_net = None, (0.0 if need_gain else -math.inf)
    for a, opts_a in options.items():
        cur_a = chosen[a]
        up = next((c for c in opts_a if c.macs > cur_a.macs and (c.cost < cur_a.cost or not need_gain)), None)
        if up is None:
            continue
        needed = total + up.macs - cur_a.macs - budget
        gain = cur_a.cost - up.cost
        for b, opts_b in options.items():
            if b == a:
                continue
            cur_b = chosen[b]
            for d in reversed(opts_b):  # the least compression that frees enough first
                if d.macs < cur_b.macs and cur_b.macs - d.macs >= needed and \
                        (need_gain or cur_b.macs - d.macs < up.macs - cur_a.macs):  # a net gain in MACs
                    net = gain - (d.cost - cur_b.cost)
                    if net > best_net:
                        best, best_net = (a, up, b, d), net
                    break
    if best is None:
        return False
    chosen[best[0]], chosen[best[2]] = best[1], best[3]
    return True


@dataclass(frozen=True)
class BudgetRanks:
    """The rank spec of a budget-driven trial: reach ``target`` MACs compression with the
    ``uniform`` or the ``sensitivity`` allocation (which reads ``profile``, under ``proxy``).

    Built from its written form (a run config, a trial's decoded ranks) by ``from_dict`` only,
    which reads the tables from the profile's folder; defaults are ``schema.DEFAULT_*``.
    """

    target: float
    allocation: str = schema.DEFAULT_ALLOCATION
    proxy: str = schema.DEFAULT_PROXY
    profile: Profile | None = None
    profile_path: str | None = None  # the folder the profile was read from (for the record)
    budget: str = schema.DEFAULT_BUDGET  # or "latency": target is a speed-up predicted from ``latency``
    latency: Any = None  # tables.LatencyTable, read from the profile's folder
    input_shape: tuple[int, ...] | None = None  # one sample's shape, where no profile records it

    KEYS = ("target", "allocation", "proxy", "profile", "budget")

    def __post_init__(self) -> None:
        if not (isinstance(self.target, (int, float)) and math.isfinite(self.target) and self.target >= 1):
            raise RankSearchError(f"target MACs compression must be a number >= 1, got {self.target!r}")
        if self.allocation not in ALLOCATIONS:
            raise RankSearchError(f"allocation must be one of {', '.join(ALLOCATIONS)}, got {self.allocation!r}")
        if self.proxy not in PROXIES:
            raise RankSearchError(f"profile proxy must be one of {', '.join(PROXIES)}, got {self.proxy!r}")
        if self.allocation == "sensitivity" and self.profile is None:
            raise RankSearchError("the sensitivity allocation needs a profile (rank-search profile)")
        if self.budget not in BUDGETS:
            raise RankSearchError(f"budget must be one of {', '.join(BUDGETS)}, got {self.budget!r}")
        if self.budget == "latency" and self.latency is None:
            raise RankSearchError("a latency budget needs the layer latency table (measured by the sweep "
                                  "with the profile)")

    def to_dict(self) -> dict[str, Any]:
        out = {"target": float(self.target), "allocation": self.allocation, "proxy": self.proxy,
               "profile": self.profile_path}
        return {**out, "budget": self.budget} if self.budget != schema.DEFAULT_BUDGET else out

    @staticmethod
    def is_dict(data: Any) -> bool:
        """Whether a parsed config value is written in this form."""
        return isinstance(data, Mapping) and "target" in data and set(data) <= set(BudgetRanks.KEYS)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "BudgetRanks":
        """The one constructor from the written form ``{target, allocation?, proxy?, profile?,
        budget?}``: ``profile`` names the folder the profile (and, under a latency budget, the
        layer latency table) is read from."""
        path = data.get("profile")
        allocation = str(data.get("allocation") or schema.DEFAULT_ALLOCATION)
        # only the sensitivity allocation reads the profile (the uniform one needs no profile; its
        # input shape comes from the run: ``with_input_shape``)
        profile = load_profile(str(path)) if path and allocation == "sensitivity" else None
        budget = str(data.get("budget") or schema.DEFAULT_BUDGET)
        latency = load_layer_latency(str(path)) if path and budget == "latency" else None
        return cls(float(data["target"]), allocation, str(data.get("proxy") or schema.DEFAULT_PROXY), profile,
                   str(path) if path else None, budget, latency)

    def with_input_shape(self, input_shape: tuple[int, ...]) -> "BudgetRanks":
        """This spec, told the model's input shape where its profile does not record one."""
        if self.input_shape or (self.profile is not None and self.profile.meta.get("input_shape")):
            return self
        return dataclasses.replace(self, input_shape=tuple(int(s) for s in input_shape))

    def resolve(self, model: nn.Module, *, scheme: str, input_shape: tuple[int, ...] | None = None) -> RankPlan:
        shape = input_shape or self.input_shape or \
            tuple((self.profile.meta if self.profile else {}).get("input_shape") or ())
        if not shape:
            raise RankSearchError("a budget allocation needs the model's input shape")
        macs = _cost_model(model, tuple(int(s) for s in shape), self.latency if self.budget == "latency" else None)
        if self.allocation == "uniform":
            return uniform_allocation(macs, float(self.target), scheme=scheme)
        return sensitivity_allocation(macs, float(self.target), self.profile, scheme=scheme, proxy=self.proxy)


def _cost_model(model: nn.Module, input_shape: tuple[int, ...], latency=None) -> Any:
    """What an allocation spends: exact MACs, or predicted milliseconds from a ``latency`` table
    (then no MACs are counted)."""
    if latency is None:
        return LayerMacs(model, input_shape)
    return LayerLatency(model, latency)


def max_compression(model: nn.Module, input_shape: tuple[int, ...], *, scheme: str, latency=None) -> float:
    """The MACs compression of every eligible layer at its cheapest rank (the reachable maximum);
    with a ``latency`` table, the predicted latency speed-up of every layer at its fastest."""
    macs = _cost_model(model, input_shape, latency)
    least = 0
    for n, layer in macs.layers.items():
        s = scheme_for(layer, scheme)
        least += min(c.macs for c in _candidates(macs, n, s, lambda r: 0.0))
    return macs.total / (macs.total - sum(macs.dense.values()) + least)

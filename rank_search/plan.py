"""Rank plans: per-layer (scheme, rank) for the eligible layers of a model.

A plan is built uniform from a rank policy (``ratio:0.5``, ``energy:0.9``, ...) or read from
YAML, and always resolved to integer ranks validated against the model.

No layer slower than dense: in a plan from :func:`build_plan` (what every method resolves its
rank spec with), a layer whose factorized form at its resolved rank costs at least as many MACs
as the dense layer stays dense (``cost.stays_dense``, the rule the budget allocation uses too);
the plan lists it in ``kept_dense`` and `rank-search layers --ranks` shows it as
``dense: factorized cost >= dense``. A plan file forces such a layer with ``force: true``, per
layer (``conv2: {rank: 16, force: true}``) or for every layer of the file
(``{force: true, layers: {...}}``, beside ``scheme`` and ``tiles``, like them a default of each
entry); a forced entry keeps ``force: true`` in the plans written from it. A rank an energy or
value policy picks is not judged here: it follows the weights while a method trains (TRP
re-picks it at every projection, on the layers of its first plan), so a rank picked from
freshly initialised weights says nothing about the final one. ``uniform_plan`` and
``plan_from_mapping`` only resolve ranks.

Rank rounding to a multiple (``ratio:0.3,multiple=8``, ``decomp.policies.RankPolicy.multiple``,
rounding up, capped at the max rank) is the GPU-friendly choice: cuBLAS and cuDNN kernels, on
tensor cores above all, are most efficient when channel counts are multiples of 8 (fp16/bf16),
so the factors' inner width (the rank) should be one; the few extra MACs rarely cost time.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Protocol, runtime_checkable

import yaml
from torch import nn

from . import safe_yaml
from .cost import stays_dense
from .decomp.policies import RankPolicy, parse_rank_policy
from .errors import RankSearchError
from .layers import SCHEMES, Rank, as_pair, get_scheme

DEFAULT_SCHEME = "channel"
#: The top-level keys of a plan with ``layers:``: its defaults, and the header a run's plan.yaml
#: carries (``run.results``; read back as ``--ranks``, ignored here).
PLAN_FILE_KEYS = frozenset({"layers", "scheme", "tiles", "force", "model", "dataset", "method"})


@dataclass(frozen=True)
class LayerPlan:
    """The scheme and integer rank of one layer (``tiles`` only for the tiled scheme; ``force``:
    factorized even at or above break-even)."""

    scheme: str
    rank: Rank
    tiles: tuple[int, int] | None = None
    force: bool = False

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"scheme": self.scheme, "rank": list(self.rank) if isinstance(self.rank, tuple) else self.rank}
        if self.tiles is not None:
            out["tiles"] = list(self.tiles)
        if self.force:
            out["force"] = True
        return out


@dataclass(frozen=True)
class RankPlan:
    """An ordered mapping layer name -> ``LayerPlan``; layers not in it stay dense.

    ``kept_dense``: the layers the rank spec named that stay dense by the break-even rule (for
    reports; not part of the plan's identity or of its YAML).
    """

    entries: tuple[tuple[str, LayerPlan], ...] = field(default_factory=tuple)
    kept_dense: tuple[str, ...] = field(default=(), compare=False)

    def __getitem__(self, name: str) -> LayerPlan:
        return dict(self.entries)[name]

    def __contains__(self, name: object) -> bool:
        return any(n == name for n, _ in self.entries)

    def __iter__(self) -> Iterator[str]:
        return (n for n, _ in self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def items(self) -> list[tuple[str, LayerPlan]]:
        return list(self.entries)

    def to_dict(self) -> dict[str, Any]:
        return {"layers": {n: lp.to_dict() for n, lp in self.entries}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "RankPlan":
        """Inverse of ``to_dict`` (integer ranks; not validated against a model)."""
        entries = []
        for name, d in data["layers"].items():
            rank = tuple(d["rank"]) if isinstance(d["rank"], list) else d["rank"]
            tiles = tuple(d["tiles"]) if d.get("tiles") is not None else None
            entries.append((name, LayerPlan(d["scheme"], rank, tiles, bool(d.get("force", False)))))
        return cls(tuple(entries))

    def to_yaml(self, **header: Any) -> str:
        return yaml.safe_dump({**header, **self.to_dict()}, sort_keys=False)


def candidate_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Every Conv2d (groups=1) and Linear, in module order: what a plan may name."""
    return {
        n: m
        for n, m in model.named_modules()
        if isinstance(m, nn.Linear) or (isinstance(m, nn.Conv2d) and m.groups == 1)
    }


def eligible_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Candidate layers less the stem (first conv) and the classifier (last Linear), the default
    set of a uniform plan (METHODS.md section 1)."""
    layers = candidate_layers(model)
    convs = [n for n, m in layers.items() if isinstance(m, nn.Conv2d)]
    linears = [n for n, m in layers.items() if isinstance(m, nn.Linear)]
    skip = {convs[0]} if convs else set()
    if linears:
        skip.add(linears[-1])
    return {n: m for n, m in layers.items() if n not in skip}


def resolve_rank(name: str, layer: nn.Module, scheme: str, rank: Any, *, tiles=None) -> Rank:
    """Turn a policy or integer(s) into the layer's integer rank, validated against its max rank."""
    cls = get_scheme(scheme)
    max_rank = cls.max_rank(layer, tiles=tiles)
    maxima = as_pair(max_rank) if cls.rank_dims == 2 else (max_rank,)
    if cls.rank_dims == 2 and isinstance(rank, (list, tuple)):
        if len(rank) != 2:
            raise RankSearchError(f"rank for layer {name!r} must be an int or [r_out, r_in], got {rank!r}")
        parts = list(rank)
    else:
        parts = [rank] * cls.rank_dims
    chosen = []
    spectra = None
    for dim, (part, max_r) in enumerate(zip(parts, maxima)):
        if isinstance(part, bool) or not isinstance(part, (int, str, float, RankPolicy)):
            raise RankSearchError(f"rank for layer {name!r} must be an integer or a policy, got {part!r}")
        if isinstance(part, int):
            if not 1 <= part <= max_r:
                bound = f"[1, {maxima[0]}] x [1, {maxima[1]}] (out, in)" if cls.rank_dims == 2 else f"[1, {max_r}]"
                raise RankSearchError(f"rank for layer {name!r} must be in {bound}, got {rank}")
            chosen.append(part)
            continue
        policy = part if isinstance(part, RankPolicy) else parse_rank_policy(part)
        if policy.kind == "fixed" and policy.value > max_r:
            raise RankSearchError(f"rank for layer {name!r} must be in [1, {max_r}], got {int(policy.value)}")
        if policy.needs_spectrum and spectra is None:
            spectra = cls.spectra(layer.weight.detach(), tiles=tiles)
        chosen.append(policy.choose(max_r, spectra[dim] if spectra is not None else None))
    return (chosen[0], chosen[1]) if cls.rank_dims == 2 else chosen[0]


def scheme_for(layer: nn.Module, scheme: str) -> str:
    """``scheme`` where the layer supports it, else the channel scheme (Linear and 1x1 convs
    under spatial/tucker2)."""
    return scheme if get_scheme(scheme).unsupported_reason(layer) is None else DEFAULT_SCHEME


def uniform_plan(model: nn.Module, policy: RankPolicy | str, *, scheme: str = DEFAULT_SCHEME, tiles=None) -> RankPlan:
    """One policy for every eligible layer. Layers the scheme does not support (Linear and 1x1
    convs for spatial/tucker2) fall back to the channel scheme."""
    get_scheme(scheme)
    policy = policy if isinstance(policy, RankPolicy) else parse_rank_policy(policy)
    entries = []
    for name, layer in eligible_layers(model).items():
        s = scheme_for(layer, scheme)
        t = tuple(tiles) if (s == "tiled" and tiles) else None
        entries.append((name, LayerPlan(s, resolve_rank(name, layer, s, policy, tiles=t), t)))
    return RankPlan(tuple(entries))


def keep_dense_at_break_even(model: nn.Module, plan: RankPlan, *, follow_weights=()) -> RankPlan:
    """``plan`` less its unforced layers at or above break-even (``cost.stays_dense``), which
    are listed in ``kept_dense``; the layers in ``follow_weights`` (ranks an energy or value
    policy picks) are kept as they are."""
    layers = candidate_layers(model)
    kept, dense = [], []
    for name, lp in plan.items():
        if (not lp.force and name not in follow_weights
                and stays_dense(layers[name], lp.scheme, lp.rank, tiles=lp.tiles)):
            dense.append(name)
        else:
            kept.append((name, lp))
    return RankPlan(tuple(kept), tuple(plan.kept_dense) + tuple(dense))  # the spec's own (an allocation's) too


def _follows_weights(rank: Any) -> bool:
    """Whether a plan entry's rank is an energy or value policy (picked from the weights)."""
    if isinstance(rank, (list, tuple)):
        return any(_follows_weights(r) for r in rank)
    if isinstance(rank, RankPolicy):
        return rank.needs_spectrum
    return isinstance(rank, str) and parse_rank_policy(rank).needs_spectrum


def _force_flag(where: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise RankSearchError(f"force {where} must be true or false, got {value!r}")
    return value


def _check_scheme(scheme: Any, where: str) -> None:
    """Refuse a scheme that is not a known name (a list or mapping too, which cannot be looked up)."""
    if not isinstance(scheme, str) or scheme not in SCHEMES:
        raise RankSearchError(f"unknown scheme {scheme!r}{where}; valid choices: {', '.join(SCHEMES.names())}")


def plan_from_mapping(model: nn.Module, data: Mapping[str, Any], *, scheme: str = DEFAULT_SCHEME) -> RankPlan:
    """A plan from a parsed YAML mapping.

    Accepted forms: ``{layers: {name: RANK}, scheme: S, tiles: [R, C], force: B}`` or a flat
    ``{name: RANK}``; RANK is an int, ``[r_out, r_in]`` (tucker2), a policy string
    (``ratio:0.3``) or ``{scheme: S, rank: RANK, tiles: [R, C], force: B}``. ``force`` is kept
    on the entries; the break-even rule is applied by :func:`build_plan`.
    """
    return RankPlan(_mapping_entries(model, data, scheme=scheme)[0])


def _mapping_entries(model: nn.Module, data: Mapping[str, Any], *, scheme: str) -> tuple[tuple, set[str]]:
    """The resolved entries of a plan mapping, and the layers whose rank follows the weights."""
    if not isinstance(data, Mapping):
        raise RankSearchError(f"a rank plan must be a mapping of layer name -> rank, got {type(data).__name__}")
    default_tiles = None
    default_force = False
    if "layers" in data:
        unknown = sorted(map(str, set(data) - PLAN_FILE_KEYS))
        if unknown:  # a misspelt default (``schemes:``) would be dropped without a word
            raise RankSearchError(f"unknown key(s) {unknown} in a rank plan; valid keys: "
                                  f"{', '.join(sorted(PLAN_FILE_KEYS))}")
        scheme = data.get("scheme", scheme)
        default_tiles = data.get("tiles")
        default_force = _force_flag("in a rank plan", data.get("force", False))
        data = data["layers"]
        if not isinstance(data, Mapping):
            raise RankSearchError("'layers' in a rank plan must be a mapping of layer name -> rank")
    _check_scheme(scheme, "")
    layers = candidate_layers(model)
    entries = []
    follow: set[str] = set()
    for name, value in data.items():
        if name not in layers:
            raise RankSearchError(
                f"unknown layer {name!r} in rank plan; valid layers: {', '.join(layers)}"
            )
        layer_scheme, tiles, rank, force = scheme, default_tiles, value, default_force
        if isinstance(value, Mapping):
            unknown = set(value) - {"scheme", "rank", "tiles", "force"}
            if unknown or "rank" not in value:
                raise RankSearchError(
                    f"plan entry for layer {name!r} must have 'rank' and may have 'scheme', 'tiles', 'force'; got keys "
                    f"{sorted(value)}"
                )
            layer_scheme = value.get("scheme", scheme)
            tiles = value.get("tiles", default_tiles)
            rank = value["rank"]
            force = _force_flag(f"for layer {name!r}", value.get("force", default_force))
        _check_scheme(layer_scheme, f" for layer {name!r}")
        get_scheme(layer_scheme).check_supported(layers[name], name)
        if tiles is not None and layer_scheme == "tiled" and not isinstance(tiles, (list, tuple)):
            raise RankSearchError(f"tiles for layer {name!r} must be [row_tiles, col_tiles], got {tiles!r}")
        tiles = tuple(tiles) if (tiles is not None and layer_scheme == "tiled") else None
        entries.append((name, LayerPlan(layer_scheme, resolve_rank(name, layers[name], layer_scheme, rank, tiles=tiles),
                                        tiles, force)))
        if _follows_weights(rank):
            follow.add(name)
    return tuple(entries), follow


def load_plan_yaml(path: str) -> Any:
    """Parse a plan file (safe YAML); a missing file or bad YAML is a one-line error."""
    if not os.path.isfile(path):
        raise RankSearchError(f"rank plan file {path!r} does not exist")
    try:
        with open(path, encoding="utf-8") as fh:
            return safe_yaml.load(fh, what=f"rank plan {path!r}")
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise RankSearchError(f"rank plan {path!r} is not valid YAML{where}") from None
    except UnicodeDecodeError:  # a binary file (a .pt renamed) or another encoding
        raise RankSearchError(f"rank plan {path!r} is not UTF-8 text") from None


@runtime_checkable
class ResolvableRanks(Protocol):
    """A rank spec that resolves itself against a model (``groups.GroupRatios``)."""

    def resolve(self, model: nn.Module, *, scheme: str) -> RankPlan: ...


def build_plan(model: nn.Module, ranks: Any, *, scheme: str = DEFAULT_SCHEME, tiles=None) -> RankPlan:
    """A resolved plan from a spec: a policy string, a ``.yaml`` path, a mapping, a RankPlan or a
    ``ResolvableRanks`` (one ratio per rank group); layers at or above break-even stay dense
    unless forced or their rank follows the weights (see the module docstring)."""
    follow: Any = ()
    if isinstance(ranks, ResolvableRanks):
        plan = ranks.resolve(model, scheme=scheme)
    elif isinstance(ranks, RankPlan):
        plan = plan_from_mapping(model, ranks.to_dict(), scheme=scheme)
    elif isinstance(ranks, Mapping) or (isinstance(ranks, str) and ranks.lower().endswith((".yaml", ".yml"))):
        entries, follow = _mapping_entries(model, ranks if isinstance(ranks, Mapping) else load_plan_yaml(ranks),
                                           scheme=scheme)
        plan = RankPlan(entries)
    else:
        plan = uniform_plan(model, ranks, scheme=scheme, tiles=tiles)
        if _follows_weights(ranks):
            follow = set(plan)
    return keep_dense_at_break_even(model, plan, follow_weights=follow)

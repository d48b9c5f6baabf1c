"""The trial codec: a ``SearchSpace`` <-> the flat config of one Tune trial (no torch, no ray).

Encode: ``SpaceSampler`` is the define-by-run function Optuna samples a trial with; what it
suggests are the searched parameters, what it returns the fixed values and the sweep's
constants (Tune merges both into the trial's config). ``TrialSpec.to_config`` writes a decoded
trial back. Decode: ``decode_trial`` reads a config into a frozen ``TrialSpec``; nothing
downstream reads the flat config.

Flat keys: ``method``; ``<method>.<knob>`` (the sampled method's knobs only); ``train.<key>``;
``distill.<key>`` (distillation from the sweep's dense reference); ``rank.<group>`` (one ratio
per rank group) or, in a budget-driven space, ``budget.target`` and
``budget.allocation``, or an explicit plan, ``plan.<layer>`` = ``SCHEME:RANK`` (a one-shot front
point; ``RANK`` is ``OUTxIN`` for Tucker-2); the sweep's constants under ``space.*``.
"""
from __future__ import annotations

import dataclasses
import posixpath
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from rank_search.errors import RankSearchError
from rank_search.schema import (ALLOCATION_KEY, DEFAULT_ALLOCATION, DEFAULT_BUDGET, DEFAULT_LATENCY_BATCH_SIZE,
                                DEFAULT_PROXY, DENSE_WEIGHTS_FILE, LATENCY_BATCH_SIZE_KEY, METHOD_KEY, RANK_PREFIX,
                                SPACE_PREFIX, TARGET_KEY, TARGET_LATENCY_SPEEDUP, TARGET_MACS_COMPRESSION)

from ._space import SearchSpace

TRAIN_PREFIX = "train."
DISTILL_PREFIX = "distill."  # distillation settings (``engine.DistillConfig`` fields)
DENSE_KEY = SPACE_PREFIX + "dense"  # path or URI of the sweep's dense reference (dense.pt)
PROFILE_KEY = SPACE_PREFIX + "profile"  # folder holding the sweep's profile (and layer latency table)
NESTED_KEY = SPACE_PREFIX + "nested"  # path or URI of the sweep's trained nested model (nested.pt)
PLAN_PREFIX = "plan."  # an explicit per-layer plan: plan.<layer> = SCHEME:RANK
_NAME, _MODEL, _DATASET, _EPOCHS, _SEED, _GROUPING, _DATA_ROOT, _RANK_MODE, _PROXY, _BUDGET = (
    SPACE_PREFIX + k for k in
    ("name", "model", "dataset", "epochs", "seed", "grouping", "data_root", "rank_mode", "proxy", "budget"))


def knob_key(method: str, knob: str) -> str:
    return f"{method}.{knob}"


@dataclass(frozen=True)
class GroupRanks:
    """A rank ratio per rank group of ``grouping``."""

    grouping: str
    ratios: Mapping[str, float]

    def to_dict(self) -> dict[str, Any]:
        """The ``GroupRatios`` form of a run config."""
        return {"grouping": self.grouping, "ratios": dict(self.ratios)}


@dataclass(frozen=True)
class BudgetTarget:
    """A budget-driven trial's ranks: the ``allocation`` that reaches ``target`` (a MACs
    compression, or a latency speed-up under ``budget: latency``)."""

    target: float
    allocation: str = DEFAULT_ALLOCATION
    proxy: str = DEFAULT_PROXY
    budget: str = DEFAULT_BUDGET

    @property
    def metric(self) -> str:
        """The name the trial reports its target under."""
        return TARGET_LATENCY_SPEEDUP if self.budget == "latency" else TARGET_MACS_COMPRESSION

    @property
    def needs_profile(self) -> bool:
        """The sensitivity allocation reads the profile; a latency budget the table beside it."""
        return self.allocation == "sensitivity" or self.budget == "latency"

    def to_dict(self, *, profile: str | None) -> dict[str, Any]:
        """The ``BudgetRanks`` form of a run config, its tables read from ``profile``."""
        return {"target": self.target, "allocation": self.allocation, "proxy": self.proxy, "budget": self.budget,
                "profile": profile}


@dataclass(frozen=True)
class PlanRanks:
    """An explicit per-layer plan: layer -> (scheme, rank), the rank an int or Tucker-2's
    (out, in) pair (``rank_search.plan.RankPlan.from_dict(ranks.to_dict())`` is the plan)."""

    layers: Mapping[str, tuple[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        """The ``RankPlan`` form of a run config."""
        return {"layers": {n: {"scheme": s, "rank": list(r) if isinstance(r, tuple) else r}
                           for n, (s, r) in self.layers.items()}}

    def to_config(self) -> dict[str, str]:
        """The ``plan.<layer>`` keys."""
        return {PLAN_PREFIX + n: f"{s}:{'x'.join(map(str, r)) if isinstance(r, tuple) else r}"
                for n, (s, r) in self.layers.items()}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "PlanRanks | None":
        """The plan of a config's ``plan.<layer>`` keys; None when it has none."""
        layers = {}
        for key, value in config.items():
            if not key.startswith(PLAN_PREFIX):
                continue
            scheme, sep, rank = str(value).partition(":")
            parts = rank.split("x")
            if not sep or not scheme or not all(p.isdigit() for p in parts) or len(parts) > 2:
                raise RankSearchError(f"{key} must be SCHEME:RANK or SCHEME:OUTxIN (integer ranks), got {value!r}")
            ranks = tuple(int(p) for p in parts)
            layers[key[len(PLAN_PREFIX):]] = (scheme, ranks if len(ranks) == 2 else ranks[0])
        return cls(layers) if layers else None


@dataclass(frozen=True)
class TrialSpec:
    """One trial, decoded: what ``rank_search.search.trial.run_spec`` turns into a run.

    ``knobs``, ``train`` and ``distill`` are keyed without their prefix; ``ranks`` is ``None`` only when the
    config holds none (a method without a rank plan may not need them); ``dense`` and
    ``profile`` name the sweep's references (``None`` when the sweep has none); ``nested`` the
    trained nested model a one-shot trial fine-tunes a truncation of (``--searcher oneshot``).
    """

    method: str
    model: str
    dataset: str
    epochs: int
    seed: int = 0
    knobs: Mapping[str, Any] = field(default_factory=dict)
    train: Mapping[str, Any] = field(default_factory=dict)
    distill: Mapping[str, Any] = field(default_factory=dict)
    ranks: GroupRanks | BudgetTarget | PlanRanks | None = None
    rank_mode: str = "per_group"
    grouping: str = "uniform"
    space: str | None = None
    data_root: str | None = None
    dense: str | None = None
    profile: str | None = None
    latency_batch_size: int = DEFAULT_LATENCY_BATCH_SIZE
    nested: str | None = None

    def __post_init__(self) -> None:
        _check_batch_size(self.latency_batch_size)

    def target_report(self) -> dict[str, float]:
        """What a budget-driven trial reports beside its metrics: ``{metric: target}``."""
        return {self.ranks.metric: float(self.ranks.target)} if isinstance(self.ranks, BudgetTarget) else {}

    def moved_to(self, folder: str) -> "TrialSpec":
        """The references read from the experiment folder where it is now (``folder``): the config
        names the folder the sweep was launched in, which a user may have moved before `resume`.
        A dense reference given from elsewhere (``--dense FILE`` kept in place) stays."""
        dense = self.dense
        if dense and posixpath.basename(dense) == DENSE_WEIGHTS_FILE:
            dense = posixpath.join(folder, DENSE_WEIGHTS_FILE)
        nested = posixpath.join(folder, posixpath.basename(self.nested)) if self.nested else None
        return dataclasses.replace(self, dense=dense, profile=folder if self.profile else None, nested=nested)

    def to_config(self) -> dict[str, Any]:
        """The flat config this spec decodes from (``decode_trial(spec.to_config()) == spec``)."""
        out: dict[str, Any] = {METHOD_KEY: self.method}
        out.update({knob_key(self.method, k): v for k, v in self.knobs.items()})
        out.update({TRAIN_PREFIX + k: v for k, v in self.train.items()})
        out.update({DISTILL_PREFIX + k: v for k, v in self.distill.items()})
        if isinstance(self.ranks, GroupRanks):
            out.update({RANK_PREFIX + g: v for g, v in self.ranks.ratios.items()})
        elif isinstance(self.ranks, BudgetTarget):
            out.update({ALLOCATION_KEY: self.ranks.allocation, TARGET_KEY: self.ranks.target})
        elif isinstance(self.ranks, PlanRanks):
            out.update(self.ranks.to_config())
        out.update(_constants(name=self.space, model=self.model, dataset=self.dataset, epochs=self.epochs,
                              seed=self.seed, grouping=self.grouping, data_root=self.data_root,
                              rank_mode=self.rank_mode, latency_batch_size=self.latency_batch_size,
                              **({"proxy": self.ranks.proxy, "budget": self.ranks.budget}
                                 if isinstance(self.ranks, BudgetTarget) else {})))
        out.update(reference_constants(dense=self.dense, profile=self.profile))
        if self.nested:
            out[NESTED_KEY] = self.nested
        return out


def _constants(*, name, model, dataset, epochs, seed, grouping, data_root, rank_mode, latency_batch_size,
               proxy: str = DEFAULT_PROXY, budget: str = DEFAULT_BUDGET) -> dict[str, Any]:
    """The ``space.*`` constants of every trial of a sweep (proxy and budget: budget-driven only)."""
    out = {_NAME: name, _MODEL: model, _DATASET: dataset, _EPOCHS: epochs, _SEED: seed, _GROUPING: grouping,
           _DATA_ROOT: data_root, _RANK_MODE: rank_mode, LATENCY_BATCH_SIZE_KEY: latency_batch_size}
    if rank_mode == "sensitivity":
        out.update({_PROXY: proxy, _BUDGET: budget})
    return out


def reference_constants(*, dense: str | None, profile: str | None) -> dict[str, Any]:
    """The constants that point every trial at the sweep's dense reference and profile folder."""
    return {**({DENSE_KEY: dense} if dense else {}), **({PROFILE_KEY: profile} if profile else {})}


def _check_batch_size(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RankSearchError(f"{LATENCY_BATCH_SIZE_KEY} must be an integer >= 1, got {value!r}")
    return value


def latency_batch_size(config: Mapping[str, Any]) -> int:
    """The batch size the trial's latency is measured at (``space.latency_batch_size``, default 1)."""
    value = config.get(LATENCY_BATCH_SIZE_KEY)
    return DEFAULT_LATENCY_BATCH_SIZE if value is None else _check_batch_size(value)


def decode_trial(config: Mapping[str, Any]) -> TrialSpec:
    """A trial's flat config -> ``TrialSpec`` (the one reader of the flat keys).

    Keys of another method's knobs and unknown ``space.*`` keys are ignored; a config of an
    older sweep without ``space.rank_mode``, ``space.name`` or the latency batch decodes with
    their defaults.
    """
    missing = [k for k in (METHOD_KEY, _MODEL, _DATASET, _EPOCHS) if k not in config]
    if missing:
        raise RankSearchError(f"a trial config needs {', '.join(missing)}; got keys {sorted(config)}")
    method = str(config[METHOD_KEY])
    mine = method + "."
    knobs = {k[len(mine):]: v for k, v in config.items() if k.startswith(mine)}
    train = {k[len(TRAIN_PREFIX):]: v for k, v in config.items() if k.startswith(TRAIN_PREFIX)}
    distill = {k[len(DISTILL_PREFIX):]: v for k, v in config.items() if k.startswith(DISTILL_PREFIX)}
    rank_mode = str(config.get(_RANK_MODE, "per_group"))
    grouping = str(config.get(_GROUPING, "uniform"))
    # an explicit plan (a one-shot front point) whatever the space's rank mode
    ranks: GroupRanks | BudgetTarget | PlanRanks | None = PlanRanks.from_config(config)
    if ranks is None and rank_mode == "sensitivity":
        if TARGET_KEY in config:
            ranks = BudgetTarget(float(config[TARGET_KEY]), str(config.get(ALLOCATION_KEY, DEFAULT_ALLOCATION)),
                                 str(config.get(_PROXY, DEFAULT_PROXY)), str(config.get(_BUDGET, DEFAULT_BUDGET)))
    elif ranks is None:
        ratios = {k[len(RANK_PREFIX):]: float(v) for k, v in config.items() if k.startswith(RANK_PREFIX)}
        ranks = GroupRanks(grouping, ratios) if ratios else None
    name = config.get(_NAME)
    return TrialSpec(
        method=method, model=str(config[_MODEL]), dataset=str(config[_DATASET]), epochs=int(config[_EPOCHS]),
        seed=int(config.get(_SEED, 0)), knobs=knobs, train=train, distill=distill, ranks=ranks,
        rank_mode=rank_mode,
        grouping=grouping, space=None if name is None else str(name), data_root=config.get(_DATA_ROOT),
        dense=_text(config.get(DENSE_KEY)), profile=_text(config.get(PROFILE_KEY)),
        latency_batch_size=latency_batch_size(config), nested=_text(config.get(NESTED_KEY)),
    )


def _text(value: Any) -> str | None:
    return str(value) if value else None


def encode_point(space: SearchSpace, groups: Sequence[str], *, method: str | None = None,
                 train: Mapping[str, Any] | None = None, target: float | None = None, allocation: str | None = None,
                 ratio: float | None = None) -> dict[str, Any]:
    """A point to enqueue (Optuna fixes the parameters it names, samples the rest): the given
    values under the keys ``SpaceSampler`` suggests them as. A value of a dimension the space
    fixes is left out (it is no parameter), as is a method when the space has one."""
    out: dict[str, Any] = {}
    if method is not None and len(space.methods) > 1:
        out[METHOD_KEY] = method
    out.update({TRAIN_PREFIX + k: v for k, v in (train or {}).items() if space.train[k].kind != "fixed"})
    if space.rank_mode == "sensitivity":
        if target is not None and space.target.kind != "fixed":
            out[TARGET_KEY] = target
        if allocation is not None and len(space.allocations) > 1:
            out[ALLOCATION_KEY] = allocation
    elif ratio is not None and space.ratio.kind != "fixed":
        out.update({RANK_PREFIX + g: ratio for g in groups})
    return out


class SpaceSampler:
    """Picklable define-by-run function for ``ray.tune.search.optuna.OptunaSearch``: suggests a
    trial's searched parameters and returns its fixed values and the sweep's constants.

    Args:
        space: the validated space.
        groups: rank-group names of the space's model under its grouping (computed once by
            the launcher, which has the model).
        constants: the launch's own constants (``reference_constants``).
    """

    def __init__(self, space: SearchSpace, groups: Sequence[str], constants: dict[str, Any] | None = None) -> None:
        self.space = space
        self.groups = list(groups) if space.rank_mode == "per_group" else []
        self.constants = dict(constants or {})

    def __call__(self, trial: Any) -> dict[str, Any]:
        s = self.space
        fixed: dict[str, Any] = {}

        def suggest(dim, name: str) -> None:
            value = dim.suggest(trial, name)
            if dim.kind == "fixed":
                fixed[name] = value

        methods = list(s.methods)
        if len(methods) > 1:
            method = trial.suggest_categorical(METHOD_KEY, methods)
        else:
            method = fixed[METHOD_KEY] = methods[0]
        for knob, dim in s.methods[method].items():
            suggest(dim, knob_key(method, knob))
        for key, dim in s.train.items():
            suggest(dim, TRAIN_PREFIX + key)
        for key, dim in s.distill.items():
            suggest(dim, DISTILL_PREFIX + key)
        for group in self.groups:
            suggest(s.ratio, RANK_PREFIX + group)
        if s.rank_mode == "sensitivity":
            allocations = list(s.allocations)
            if len(allocations) > 1:
                trial.suggest_categorical(ALLOCATION_KEY, allocations)
            else:
                fixed[ALLOCATION_KEY] = allocations[0]
            suggest(s.target, TARGET_KEY)
        fixed.update(_constants(
            name=s.name, model=s.model, dataset=s.dataset, epochs=s.epochs, seed=s.seed, grouping=s.grouping,
            data_root=s.data_root, rank_mode=s.rank_mode, latency_batch_size=s.latency_batch_size, proxy=s.proxy,
            budget=s.budget))
        fixed.update(self.constants)
        return fixed

"""The search-space file format: YAML -> frozen ``SearchSpace`` (no torch, no ray).

A space names ``model``, ``dataset``, ``epochs`` and ``methods`` (each with its knob ranges),
optionally ``train`` and ``distill`` settings, ``seed``, ``data_root``, ``latency_batch_size`` and
``ranks``:
one ratio per rank group (``grouping``, ``ratio``), or budget-driven (``allocation:
sensitivity`` with ``target``, ``proxy``, ``allocations``, ``budget``; ``allocation: uniform``
with ``target`` is its plain spelling for ``allocations: [uniform]``, which reads no profile).
Defaults of a budget-driven space are ``schema.DEFAULT_*`` (proxy ``bn``).

Dimensions: a scalar is fixed; a list is categorical; ``{float: [lo, hi]}`` or
``{int: [lo, hi]}`` is a range, with optional ``log: true`` and ``step``. The full schema with
an example is docs/spaces.md.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Mapping

import yaml

from rank_search import safe_yaml
from rank_search.errors import RankSearchError
from rank_search.schema import (ALLOCATIONS, BUDGETS, DEFAULT_BUDGET, DEFAULT_LATENCY_BATCH_SIZE, DEFAULT_PROXY,
                                GROUPINGS, PROFILE_PROXIES, is_number)

RANK_MODES = ("per_group", "sensitivity")
RANKS_KEYS = {"per_group": ("allocation", "grouping", "ratio"),
              "sensitivity": ("allocation", "target", "proxy", "allocations", "budget"),
              "uniform": ("allocation", "target", "budget")}  # the plain spelling of allocations: [uniform]
SPACE_KEYS = ("name", "description", "model", "dataset", "epochs", "seed", "data_root", "latency_batch_size", "methods",
              "train", "distill", "ranks")


MAX_SEED = 2 ** 32 - 1  # numpy's seed range, as `launch --train-seed`
MAX_LATENCY_BATCH = 4096  # *our choice*: a deployment batch; a huge one only makes each epoch's timing hang


class SpaceError(RankSearchError):
    """A search space that breaks the schema (message names the key and the rule)."""


@dataclass(frozen=True)
class Dim:
    """One search dimension: ``fixed`` value, ``categorical`` choices or a ``float``/``int`` range."""

    kind: str
    value: Any = None
    choices: tuple = ()
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    step: float | None = None

    def suggest(self, trial: Any, name: str) -> Any:
        """Sample with an Optuna(-like) trial; fixed values are returned as they are."""
        if self.kind == "fixed":
            return self.value
        if self.kind == "categorical":
            return trial.suggest_categorical(name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(name, int(self.low), int(self.high), log=self.log,
                                     step=int(self.step or 1))
        return trial.suggest_float(name, self.low, self.high, log=self.log, step=self.step)

    def midpoint(self) -> Any:
        """A representative value (for validating knobs before a sweep)."""
        if self.kind == "fixed":
            return self.value
        if self.kind == "categorical":
            return self.choices[0]
        mid = (self.low * self.high) ** 0.5 if self.log else (self.low + self.high) / 2
        return int(round(mid)) if self.kind == "int" else mid

    def to_plain(self) -> Any:
        if self.kind == "fixed":
            return self.value
        if self.kind == "categorical":
            return list(self.choices)
        out: dict[str, Any] = {self.kind: [self.low, self.high]}
        if self.log:
            out["log"] = True
        if self.step is not None:
            out["step"] = self.step
        return out


def parse_dim(where: str, value: Any) -> Dim:
    if isinstance(value, list):
        if not value:
            raise SpaceError(f"{where}: a categorical dimension needs at least one choice")
        return Dim("categorical", choices=tuple(value))
    if isinstance(value, Mapping):
        kinds = [k for k in ("float", "int") if k in value]
        extra = set(value) - {"float", "int", "log", "step"}
        if len(kinds) != 1 or extra:
            raise SpaceError(f"{where}: a range must be {{float: [lo, hi]}} or {{int: [lo, hi]}} with optional "
                             f"log/step, got {dict(value)}")
        kind = kinds[0]
        bounds = value[kind]
        if (not isinstance(bounds, list) or len(bounds) != 2
                or not all(is_number(b) for b in bounds)):
            raise SpaceError(f"{where}: {kind} range must be [low, high] finite numbers, got {bounds!r}")
        low, high = float(bounds[0]), float(bounds[1])
        if not low < high:
            raise SpaceError(f"{where}: range low must be < high, got [{low}, {high}]")
        log = bool(value.get("log", False))
        if log and low <= 0:
            raise SpaceError(f"{where}: a log range needs low > 0, got {low}")
        if kind == "int" and (low != int(low) or high != int(high)):
            raise SpaceError(f"{where}: int range bounds must be integers, got [{low}, {high}]")
        step = value.get("step")
        if step is not None and (not isinstance(step, (int, float)) or step <= 0 or log):
            raise SpaceError(f"{where}: step must be a positive number and cannot be combined with log")
        return Dim(kind, low=low, high=high, log=log, step=step)
    return Dim("fixed", value=value)


@dataclass(frozen=True)
class SearchSpace:
    """A validated search space (see the module docstring for the YAML schema)."""

    name: str
    model: str
    dataset: str
    epochs: int
    methods: Mapping[str, Mapping[str, Dim]]
    train: Mapping[str, Dim] = field(default_factory=dict)
    distill: Mapping[str, Dim] = field(default_factory=dict)  # distillation from the dense reference
    grouping: str = "uniform"
    ratio: Dim = field(default_factory=lambda: Dim("float", low=0.1, high=1.0))
    rank_mode: str = "per_group"  # per_group (a ratio per rank group) | sensitivity (budget-driven)
    target: Dim = field(default_factory=lambda: Dim("float", low=1.5, high=8.0, log=True))
    proxy: str = DEFAULT_PROXY
    allocations: tuple[str, ...] = ALLOCATIONS
    budget: str = DEFAULT_BUDGET  # what the target is a compression of: macs | latency (measured speed-up)
    seed: int = 0
    data_root: str | None = None
    description: str = ""
    latency_batch_size: int = DEFAULT_LATENCY_BATCH_SIZE  # the deployment's batch, not train.batch_size

    def __post_init__(self) -> None:
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise SpaceError(f"space {self.name!r}: epochs must be an integer >= 1, got {self.epochs!r}")
        b = self.latency_batch_size
        if isinstance(b, bool) or not isinstance(b, int) or not 1 <= b <= MAX_LATENCY_BATCH:
            raise SpaceError(f"space {self.name!r}: latency_batch_size must be an integer in [1, {MAX_LATENCY_BATCH}], "
                             f"got {b!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed <= MAX_SEED:
            raise SpaceError(f"space {self.name!r}: seed must be an integer in [0, {MAX_SEED}] (numpy's seed range), "
                             f"got {self.seed!r}")
        if self.data_root is not None and (not isinstance(self.data_root, str) or not self.data_root):
            raise SpaceError(f"space {self.name!r}: data_root must be a folder path or URI, got {self.data_root!r}")
        if not self.methods:
            raise SpaceError(f"space {self.name!r}: 'methods' must name at least one method")
        if self.rank_mode not in RANK_MODES:
            raise SpaceError(f"space {self.name!r}: ranks.allocation must be one of {', '.join(RANK_MODES)}, "
                             f"got {self.rank_mode!r}")
        if self.rank_mode == "sensitivity":
            self._check_budget()
        if self.grouping not in GROUPINGS:
            raise SpaceError(f"space {self.name!r}: ranks.grouping must be one of {', '.join(GROUPINGS)}, "
                             f"got {self.grouping!r}")
        if self.ratio.kind == "fixed" and not (isinstance(self.ratio.value, (int, float)) and 0 < self.ratio.value <= 1):
            raise SpaceError(f"space {self.name!r}: ranks.ratio must be in (0, 1], got {self.ratio.value!r}")
        if self.ratio.kind in ("float", "int") and not (0 < self.ratio.low and self.ratio.high <= 1):
            raise SpaceError(f"space {self.name!r}: ranks.ratio range must lie in (0, 1], got "
                             f"[{self.ratio.low}, {self.ratio.high}]")
        if self.ratio.kind == "categorical" and not all(
                isinstance(c, (int, float)) and 0 < c <= 1 for c in self.ratio.choices):
            raise SpaceError(f"space {self.name!r}: ranks.ratio choices must lie in (0, 1]")

    def _check_budget(self) -> None:
        t = self.target
        values = [t.value] if t.kind == "fixed" else list(t.choices) if t.kind == "categorical" else [t.low, t.high]
        if not all(is_number(v) for v in values):
            raise SpaceError(f"space {self.name!r}: ranks.target must be finite numbers (MACs compression), "
                             f"got {t.to_plain()!r}")
        low = min(values)
        if low < 1:
            raise SpaceError(f"space {self.name!r}: ranks.target must be >= 1 (1 = dense), got {t.to_plain()!r}")
        if self.proxy not in PROFILE_PROXIES:
            raise SpaceError(f"space {self.name!r}: ranks.proxy must be one of {', '.join(PROFILE_PROXIES)}, "
                             f"got {self.proxy!r}")
        if not self.allocations or any(a not in ALLOCATIONS for a in self.allocations):
            raise SpaceError(f"space {self.name!r}: ranks.allocations must be a non-empty list of "
                             f"{', '.join(ALLOCATIONS)}, got {list(self.allocations)!r}")
        if self.budget not in BUDGETS:
            raise SpaceError(f"space {self.name!r}: ranks.budget must be one of {', '.join(BUDGETS)}, "
                             f"got {self.budget!r}")

    @property
    def needs_profile(self) -> bool:
        """A trial may use the sensitivity allocation, which reads the sweep's profile."""
        return self.rank_mode == "sensitivity" and "sensitivity" in self.allocations

    def target_bounds(self) -> tuple[float, float]:
        """The lowest and highest target the space can sample (MACs compression, or latency
        speed-up under ``budget: latency``)."""
        t = self.target
        if t.kind == "fixed":
            return float(t.value), float(t.value)
        if t.kind == "categorical":
            return float(min(t.choices)), float(max(t.choices))
        return t.low, t.high

    def ranks_plain(self) -> dict[str, Any]:
        if self.rank_mode == "sensitivity":
            out = {"allocation": "sensitivity", "target": self.target.to_plain(), "proxy": self.proxy,
                   "allocations": list(self.allocations)}
            return {**out, "budget": self.budget} if self.budget != "macs" else out
        return {"grouping": self.grouping, "ratio": self.ratio.to_plain()}

    def to_plain(self) -> dict[str, Any]:
        return {
            "name": self.name, "description": self.description, "model": self.model, "dataset": self.dataset,
            "epochs": self.epochs, "seed": self.seed, "data_root": self.data_root,
            "latency_batch_size": self.latency_batch_size,
            "methods": {m: {k: d.to_plain() for k, d in knobs.items()} for m, knobs in self.methods.items()},
            "train": {k: d.to_plain() for k, d in self.train.items()},
            "ranks": self.ranks_plain(),
            **({"distill": {k: d.to_plain() for k, d in self.distill.items()}} if self.distill else {}),
        }


def space_from_mapping(data: Any, *, name: str = "space") -> SearchSpace:
    """Validate a parsed YAML mapping into a ``SearchSpace``."""
    if not isinstance(data, Mapping):
        raise SpaceError(f"space {name!r} must be a mapping, got {type(data).__name__}")
    unknown = set(data) - set(SPACE_KEYS)
    if unknown:
        raise SpaceError(f"space {name!r}: unknown key(s) {sorted(unknown)}; valid keys: {', '.join(SPACE_KEYS)}")
    name = str(data.get("name") or name)
    for key in ("model", "dataset", "epochs", "methods"):
        if key not in data:
            raise SpaceError(f"space {name!r}: missing required key {key!r}")
    methods_raw = data["methods"]
    if isinstance(methods_raw, list):
        methods_raw = {m: {} for m in methods_raw}
    if not isinstance(methods_raw, Mapping):
        raise SpaceError(f"space {name!r}: 'methods' must map method name -> knob ranges")
    methods = {}
    for method, knobs in methods_raw.items():
        knobs = knobs or {}
        if not isinstance(knobs, Mapping):
            raise SpaceError(f"space {name!r}: methods.{method} must map knob -> dimension")
        methods[str(method)] = {str(k): parse_dim(f"methods.{method}.{k}", v) for k, v in knobs.items()}
    train_raw = data.get("train") or {}
    if not isinstance(train_raw, Mapping):
        raise SpaceError(f"space {name!r}: 'train' must map setting -> dimension")
    train = {str(k): parse_dim(f"train.{k}", v) for k, v in train_raw.items()}
    distill_raw = data.get("distill") or {}
    if not isinstance(distill_raw, Mapping):
        raise SpaceError(f"space {name!r}: 'distill' must map setting -> dimension")
    distill = {str(k): parse_dim(f"distill.{k}", v) for k, v in distill_raw.items()}
    ranks = data.get("ranks") or {}
    if not isinstance(ranks, Mapping):
        raise SpaceError(f"space {name!r}: 'ranks' must be a mapping, got {type(ranks).__name__}")
    mode = str(ranks.get("allocation", "per_group"))
    if mode not in RANKS_KEYS:
        raise SpaceError(f"space {name!r}: ranks.allocation must be one of {', '.join(RANKS_KEYS)}, got {mode!r}")
    if set(ranks) - set(RANKS_KEYS[mode]):
        raise SpaceError(f"space {name!r}: 'ranks' with allocation {mode} may only hold "
                         f"{', '.join(repr(k) for k in RANKS_KEYS[mode])}; got {sorted(ranks)}")
    if mode == "uniform":
        if "target" not in ranks:
            raise SpaceError(f"space {name!r}: 'ranks' with allocation uniform needs a 'target' (the MACs "
                             "compression each trial reaches with one ratio for every layer)")
        ranks = {**ranks, "allocations": ["uniform"]}
        mode = "sensitivity"
    kwargs: dict[str, Any] = {"rank_mode": mode}
    if "ratio" in ranks:
        kwargs["ratio"] = parse_dim("ranks.ratio", ranks["ratio"])
    if "target" in ranks:
        kwargs["target"] = parse_dim("ranks.target", ranks["target"])
    if "proxy" in ranks:
        kwargs["proxy"] = str(ranks["proxy"])
    if "budget" in ranks:
        kwargs["budget"] = str(ranks["budget"])
    if "allocations" in ranks:
        allocs = ranks["allocations"]
        kwargs["allocations"] = tuple(str(a) for a in (allocs if isinstance(allocs, list) else [allocs]))
    return SearchSpace(
        name=name, model=str(data["model"]), dataset=str(data["dataset"]), epochs=data["epochs"],
        methods=methods, train=train, distill=distill, grouping=str(ranks.get("grouping", "uniform")),
        seed=data.get("seed", 0), data_root=data.get("data_root"),
        latency_batch_size=data.get("latency_batch_size", DEFAULT_LATENCY_BATCH_SIZE),
        description=str(data.get("description", "")), **kwargs,
    )


def load_space_file(path: str) -> SearchSpace:
    """Read and validate a YAML space file (safe YAML; one-line errors)."""
    if not os.path.isfile(path):
        raise SpaceError(f"search space file {path!r} does not exist")
    try:
        with open(path, encoding="utf-8") as fh:
            data = safe_yaml.load(fh, what=f"search space file {path!r}")
    except yaml.YAMLError:
        raise SpaceError(f"search space file {path!r} is not valid YAML") from None
    return space_from_mapping(data, name=os.path.splitext(os.path.basename(path))[0])

"""Define-by-run sampling of a ``SearchSpace`` into a flat Tune config (duck-typed Optuna trial).

Flat keys: ``method``, ``<method>.<knob>`` (conditional on the method), ``train.<key>`` and
``rank.<group>`` (one ratio per rank group), or for a budget-driven space ``budget.target`` and
``budget.allocation``. Constants describing the sweep are returned under ``space.*`` keys so
every trial's config is self-contained (``constants`` adds the launch's own: the dense
reference and profile paths).
"""
from __future__ import annotations

from typing import Any, Sequence

from rank_search.schema import ALLOCATION_KEY, LATENCY_BATCH_SIZE_KEY, METHOD_KEY, RANK_PREFIX, SPACE_PREFIX, TARGET_KEY

from ._space import SearchSpace


class SpaceSampler:
    """Picklable define-by-run function for ``ray.tune.search.optuna.OptunaSearch``.

    Args:
        space: the validated space.
        groups: rank-group names of the space's model under its grouping (computed once by
            the launcher, which has the model).
    """

    def __init__(self, space: SearchSpace, groups: Sequence[str], constants: dict[str, Any] | None = None) -> None:
        self.space = space
        self.groups = list(groups) if space.rank_mode == "per_group" else []
        self.constants = dict(constants or {})

    def __call__(self, trial: Any) -> dict[str, Any]:
        s = self.space
        methods = list(s.methods)
        method = trial.suggest_categorical(METHOD_KEY, methods) if len(methods) > 1 else methods[0]
        fixed: dict[str, Any] = {METHOD_KEY: method} if len(methods) == 1 else {}
        for knob, dim in s.methods[method].items():
            value = dim.suggest(trial, f"{method}.{knob}")
            if dim.kind == "fixed":
                fixed[f"{method}.{knob}"] = value
        for key, dim in s.train.items():
            value = dim.suggest(trial, f"train.{key}")
            if dim.kind == "fixed":
                fixed[f"train.{key}"] = value
        for group in self.groups:
            value = s.ratio.suggest(trial, RANK_PREFIX + group)
            if s.ratio.kind == "fixed":
                fixed[RANK_PREFIX + group] = value
        if s.rank_mode == "sensitivity":
            allocations = list(s.allocations)
            if len(allocations) > 1:
                trial.suggest_categorical(ALLOCATION_KEY, allocations)
            else:
                fixed[ALLOCATION_KEY] = allocations[0]
            value = s.target.suggest(trial, TARGET_KEY)
            if s.target.kind == "fixed":
                fixed[TARGET_KEY] = value
        fixed.update({
            SPACE_PREFIX + "name": s.name,
            SPACE_PREFIX + "model": s.model,
            SPACE_PREFIX + "dataset": s.dataset,
            SPACE_PREFIX + "epochs": s.epochs,
            SPACE_PREFIX + "seed": s.seed,
            SPACE_PREFIX + "grouping": s.grouping,
            SPACE_PREFIX + "data_root": s.data_root,
            SPACE_PREFIX + "rank_mode": s.rank_mode,
            LATENCY_BATCH_SIZE_KEY: s.latency_batch_size,
            **({SPACE_PREFIX + "proxy": s.proxy, SPACE_PREFIX + "budget": s.budget} if s.rank_mode == "sensitivity"
               else {}),
            **self.constants,
        })
        return fixed

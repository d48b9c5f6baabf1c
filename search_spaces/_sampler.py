"""Define-by-run sampling of a ``SearchSpace`` into a flat Tune config (duck-typed Optuna trial).

Flat keys: ``method``, ``<method>.<knob>`` (conditional on the method), ``train.<key>`` and
``rank.<group>`` (one ratio per rank group). Constants describing the sweep are returned under
``space.*`` keys so every trial's config is self-contained.
"""
from __future__ import annotations

from typing import Any, Sequence

from rank_search.schema import METHOD_KEY, RANK_PREFIX, SPACE_PREFIX

from ._space import SearchSpace


class SpaceSampler:
    """Picklable define-by-run function for ``ray.tune.search.optuna.OptunaSearch``.

    Args:
        space: the validated space.
        groups: rank-group names of the space's model under its grouping (computed once by
            the launcher, which has the model).
    """

    def __init__(self, space: SearchSpace, groups: Sequence[str]) -> None:
        self.space = space
        self.groups = list(groups)

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
        fixed.update({
            SPACE_PREFIX + "name": s.name,
            SPACE_PREFIX + "model": s.model,
            SPACE_PREFIX + "dataset": s.dataset,
            SPACE_PREFIX + "epochs": s.epochs,
            SPACE_PREFIX + "seed": s.seed,
            SPACE_PREFIX + "grouping": s.grouping,
            SPACE_PREFIX + "data_root": s.data_root,
        })
        return fixed

"""``FrontSampler``, the ``refine`` searcher: an Optuna sampler that wires its parts together.

A searched trial either fills the front's widest gap (``gap_fill``, every other trial when a fill
is set) or mutates (``mutation``) a parent from the Pareto front (``parents``); an enqueued trial
that leaves the shared parameter open gets it from ``method_share``. Every random draw comes from
one generator seeded by ``seed``, in a fixed order, so a seed and a study history fix the samples.
Parameters an enqueued trial fixes are never sampled here; the rest come from the priors.
"""
from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.trial import FrozenTrial, TrialState

from .attrs import ENQUEUED_KEY, FILL_KEY, PARENT_KEY, SHARE_KEY
from .gap_fill import fill_child, fill_turn
from .method_share import MethodShare
from .mutation import Mutation, inside
from .parents import select_parent
from .pareto import ObjectiveView
from .settings import FillSettings, RefineSettings, ShareSettings

_OLD_FIELDS = ("step", "switch", "explore", "floors", "log_objectives", "fill", "fill_fixed", "share")


def _set_attr(study, trial, key: str, value: Any) -> None:
    # No public setter reaches a trial's system attributes from a sampler; optuna's own samplers
    # record their lineage the same way (NSGA-II's parents).
    study._storage.set_trial_system_attr(trial._trial_id, key, value)


class FrontSampler(BaseSampler):
    """The ``refine`` sampler.

    Args:
        seed: seeds every draw; the same seed and study history give the same samples.
        settings: what to do (see ``RefineSettings``); or give its fields as keywords.
    """

    def __init__(self, seed: int | None = None, settings: RefineSettings | None = None, **fields: Any) -> None:
        if settings is not None and fields:
            raise ValueError(f"FrontSampler: give settings or its fields, not both (got {sorted(fields)})")
        self.settings = settings if settings is not None else RefineSettings(**fields)
        self._rng = np.random.RandomState(seed)
        self._random = RandomSampler(seed=seed)
        self._children: dict[int, dict[str, Any] | None] = {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Unpickles this version's state and that of the one-class sampler (its settings as
        attributes, tuples for ``fill`` and ``share``, any of them missing in older ones); a state
        older than the ``weighted_parents`` setting had the weighting on, and keeps it."""
        state = dict(state)
        if "settings" not in state:
            old = {k: state.pop(k) for k in _OLD_FIELDS if k in state}
            fill, fixed, share = old.pop("fill", None), old.pop("fill_fixed", None) or {}, old.pop("share", None)
            state["settings"] = RefineSettings(
                **old, fill=None if fill is None else FillSettings(*fill, fixed=fixed),
                share=None if share is None else ShareSettings(*share), weighted_parents=True)
        elif "weighted_parents" not in vars(state["settings"]):  # pickled before it was a setting: it was on
            object.__setattr__(state["settings"], "weighted_parents", True)
        self.__dict__.update(state)

    def reseed_rng(self) -> None:
        self._rng.seed()
        self._random.reseed_rng()

    def infer_relative_search_space(self, study, trial) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(self, study, trial, search_space) -> dict[str, Any]:
        return {}

    def _view(self, study) -> ObjectiveView:
        return ObjectiveView.of(study, log_objectives=self.settings.log_objectives, floors=self.settings.floors)

    def _share(self) -> MethodShare | None:
        s = self.settings
        return None if s.share is None else MethodShare(s.share, None if s.fill is None else s.fill.objective)

    def before_trial(self, study, trial: FrozenTrial) -> None:
        """Plans a searched trial's parameters (a gap fill or a parent's child) and records its
        parent in ``PARENT_KEY`` (-1: from the priors) and a fill in ``FILL_KEY``."""
        parent, child, filling = None, None, False
        if ENQUEUED_KEY not in trial.system_attrs:
            s, view = self.settings, self._view(study)
            trials = study.get_trials(deepcopy=False)
            filled = fill_child(trials, view, s.fill) if s.fill is not None and fill_turn(trials) else None
            if filled is not None:
                (parent, child), filling = filled, True
            else:
                done = [t for t in trials if t.state == TrialState.COMPLETE]
                parent = select_parent([t for t in done if t.values is not None], view, self._rng, explore=s.explore,
                                       weighted=s.weighted_parents)
                if parent is not None:
                    share = self._share()
                    gate = None if share is None else partial(share.gate, done, view, self._rng)
                    child = Mutation(s.step, s.switch)(parent, [t.params for t in trials if t.params], self._rng,
                                                       gate=gate)
        self._children[trial.number] = child
        _set_attr(study, trial, PARENT_KEY, -1 if parent is None else parent.number)
        if filling:
            _set_attr(study, trial, FILL_KEY, True)

    def sample_independent(self, study, trial, param_name: str, param_distribution: BaseDistribution) -> Any:
        """The planned child's value; for an enqueued trial's open shared parameter, the method
        share's choice (recorded in ``SHARE_KEY``); else a draw from the prior."""
        share = self._share()
        if share is not None and param_name == share.settings.param and ENQUEUED_KEY in trial.system_attrs \
                and isinstance(param_distribution, CategoricalDistribution):
            choices = [c for c in share.settings.choices if c in param_distribution.choices]
            if choices:
                last = not study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
                done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                choice = share.choose(done, self._view(study), self._rng, choices, last=last)
                _set_attr(study, trial, SHARE_KEY, choice)
                return choice
        child = self._children.get(trial.number)
        if child is None or param_name not in child or not inside(child[param_name], param_distribution):
            return self._random.sample_independent(study, trial, param_name, param_distribution)
        return child[param_name]

    def after_trial(self, study, trial, state, values) -> None:
        self._children.pop(trial.number, None)

"""A decoded trial (``search_spaces.TrialSpec``) -> validated ``RunSpec``.

No model is built here: the sampled ratios become ``GroupRatios`` (or, in a budget-driven
space, the sampled target becomes ``BudgetRanks``, read from the sweep's tables by its one
constructor), which ``run.prepare`` resolves into the integer plan against the model it builds
(once); an explicit plan (a one-shot front point) is the run's plan as it is. Each method's
``search_defaults`` fill the knobs the space leaves out; a method whose ``init`` knob is
``dense`` starts from the sweep's dense reference, which also teaches a trial with
``distill.weight > 0``; a trial naming the sweep's nested model (``--searcher oneshot``) runs
``nested`` with it as ``nested.weights``: it fine-tunes that model's truncation to its plan.
"""
from __future__ import annotations

from typing import Any, Mapping

from search_spaces import NESTED_KEY, PROFILE_KEY, BudgetTarget, GroupRanks, PlanRanks, TrialSpec, decode_trial

from ..errors import RankSearchError
from ..run import RunSpec
from ..schema import RANK_PREFIX


def method_init(method: str, knobs: Mapping[str, Any]) -> str:
    """``dense`` or ``scratch``: the trial's ``init`` knob, else the method's default
    (``scratch`` for a method without the knob)."""
    from ..methods import METHODS

    default = getattr(METHODS.get(method).Knobs(), "init", "scratch")
    return str(knobs.get("init", default))


def _ranks(trial: TrialSpec) -> Any:
    from ..allocation import BudgetRanks
    from ..groups import GroupRatios
    from ..plan import RankPlan

    if isinstance(trial.ranks, BudgetTarget):
        if trial.ranks.needs_profile and not trial.profile:
            raise RankSearchError(f"a budget-driven trial needs the sweep's profile ({PROFILE_KEY} in its config)")
        return BudgetRanks.from_dict(trial.ranks.to_dict(profile=trial.profile))
    if isinstance(trial.ranks, GroupRanks):
        return GroupRatios(trial.ranks.grouping, dict(trial.ranks.ratios))
    if isinstance(trial.ranks, PlanRanks):
        return RankPlan.from_dict(trial.ranks.to_dict())
    if trial.rank_mode == "sensitivity":
        raise RankSearchError("a budget-driven trial config has no target (budget.target)")
    raise RankSearchError(f"trial config has no rank ratios ({RANK_PREFIX}<group> keys)")


def run_spec(trial: TrialSpec) -> RunSpec:
    """The run of one decoded trial."""
    from ..methods import METHODS

    cls = METHODS.get(trial.method)
    knobs = dict(trial.knobs)
    scheme = knobs.pop("scheme", None)
    for knob, value in cls.search_defaults.items():
        knobs.setdefault(knob, value)
    if trial.nested:
        if trial.method != "nested":
            raise RankSearchError(f"a trial naming a nested model ({NESTED_KEY}) must run method nested, "
                                  f"got {trial.method!r}")
        knobs["weights"] = trial.nested
    ranks = None
    if cls.uses_plan:
        ranks = _ranks(trial)
        scheme = scheme or cls.default_scheme
    init = trial.dense if trial.dense and method_init(trial.method, trial.knobs) == "dense" else None
    # a distilled trial's teacher is the sweep's dense reference, whatever the method starts from
    teacher = trial.dense if trial.dense and not init and distilled(trial.distill) else None
    settings = {**{f"train.{k}": v for k, v in trial.train.items()},
                **{f"distill.{k}": v for k, v in trial.distill.items()},
                **{f"{trial.method}.{k}": v for k, v in knobs.items()}}
    return RunSpec(model=trial.model, dataset=trial.dataset, method=trial.method, ranks=ranks, scheme=scheme,
                   epochs=trial.epochs, seed=trial.seed, data_root=trial.data_root, settings=settings,
                   **({"init": init} if init else {}), **({"teacher": teacher} if teacher else {}))


def distilled(distill: Mapping[str, Any]) -> bool:
    """Whether a run's ``distill`` settings (``weight``, ...) turn distillation on: a weight above 0."""
    weight = distill.get("weight", 0)
    return isinstance(weight, (int, float)) and not isinstance(weight, bool) and weight > 0


def spec_from_config(config: Mapping[str, Any]) -> RunSpec:
    """The run of one trial's flat config (``run_spec(decode_trial(config))``)."""
    return run_spec(decode_trial(config))

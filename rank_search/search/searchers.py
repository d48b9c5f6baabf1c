"""The searchers ``--searcher`` names: a registry of builders, each taking one ``SearchContext``
and returning the Optuna sampler a sweep's ``OptunaSearch`` runs."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from .. import schema
from .._registry import Registry
from .settings import LaunchConfig

if TYPE_CHECKING:
    from optuna.samplers import BaseSampler

    from .refine import RefineSettings


@dataclass(frozen=True)
class SearchContext:
    """What a searcher builder may use.

    Attributes:
        config: the sweep's settings (searcher, seed, budget, objectives).
        dense_accuracy: the dense reference's validation accuracy, or None without one.
        target: a searched target MACs compression as (low, high, log), or None.
        allocations: the allocations the space searches.
        methods: the space's planned methods (those that train a rank plan).
    """

    config: LaunchConfig
    dense_accuracy: float | None = None
    target: tuple[float, float, bool] | None = None
    allocations: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()


SamplerBuilder = Callable[[SearchContext], "BaseSampler"]
SAMPLERS: Registry[SamplerBuilder] = Registry("searcher")


def create_sampler(context: SearchContext) -> BaseSampler:
    """The sampler of ``context.config.searcher``; an unknown name raises, listing the valid ones."""
    return SAMPLERS.get(context.config.searcher)(context)


def name_objectives(study, config: LaunchConfig) -> None:
    """Name the study's objectives after the sweep's metrics (``val_accuracy``, ...), so
    optuna-dashboard and ``study.trials_dataframe`` show them rather than "Objective 0/1".

    Idempotent: a study that has these names already (a journal study read back) is left as it is.
    """
    import warnings

    from optuna.exceptions import ExperimentalWarning

    names = [metric for metric, _ in config.objectives]
    if study.metric_names == names:
        return
    with warnings.catch_warnings():  # experimental since Optuna 3.2 and unchanged since
        warnings.simplefilter("ignore", ExperimentalWarning)
        study.set_metric_names(names)


def nsga2_population(num_samples: int) -> int:
    """NSGA-II generation size for a budget: a quarter of the trials, clamped to [4, 50].

    Optuna's default of 50 means a sweep of fewer than 50 trials never leaves the first,
    purely random generation (then NSGA-II is exactly random search); four generations or
    more let selection and crossover act.
    """
    return max(4, min(50, num_samples // 4))


def refine_settings(context: SearchContext) -> RefineSettings:
    """The ``refine`` sampler's settings for a sweep.

    Ratio objectives (maximised) are read in log space. With a dense reference, validation
    accuracy (maximised) has a floor ``schema.ACCURACY_MARGIN`` below it. With a searched target
    ``(low, high, log)`` while MACs compression is maximised, gaps are filled along it at the
    spacing of a uniform grid of the sweep's budget, at the uniform allocation where the space
    searches it beside another (opt-in: ``--refine-extra gap-fill``). With two or more planned
    methods, the method is shared (``--ablate method-share`` turns it off). Parents are drawn
    uniformly from the front unless ``--refine-extra parent-weighting``.
    """
    from .refine import FillSettings, RefineSettings, ShareSettings

    cfg, objectives = context.config, context.config.objectives
    floors = {i: context.dense_accuracy - schema.ACCURACY_MARGIN for i, (m, mode) in enumerate(objectives)
              if m == schema.VAL_ACCURACY and mode == "max" and context.dense_accuracy is not None}
    logs = tuple(i for i, (m, mode) in enumerate(objectives) if m in schema.RATIO_METRICS and mode == "max")
    macs = [i for i, (m, mode) in enumerate(objectives) if m == schema.MACS_COMPRESSION and mode == "max"]
    fill, target, allocations = None, context.target, context.allocations
    if target is not None and macs and target[1] > target[0] and cfg.num_samples > 1:
        low, high, log = target
        spacing = (math.log(high / low) if log else high - low) / (cfg.num_samples - 1)
        fixed = {schema.ALLOCATION_KEY: "uniform"} if len(allocations) > 1 and "uniform" in allocations else {}
        fill = FillSettings(schema.TARGET_KEY, macs[0], spacing, fixed=fixed)
    share = ShareSettings(schema.METHOD_KEY, context.methods) if len(context.methods) > 1 else None
    on, off = set(cfg.refine_extras), set(cfg.ablate)
    return RefineSettings(floors=floors, log_objectives=logs, fill=fill if "gap-fill" in on else None,
                          share=None if "method-share" in off else share,
                          weighted_parents="parent-weighting" in on)


@SAMPLERS.register("refine")
def _refine(context: SearchContext) -> BaseSampler:
    from .refine import FrontSampler

    return FrontSampler(seed=context.config.seed, settings=refine_settings(context))


@SAMPLERS.register("nsga2")
def _nsga2(context: SearchContext) -> BaseSampler:
    from .nsga2 import PicklableNSGAIISampler

    cfg = context.config
    return PicklableNSGAIISampler(seed=cfg.seed, population_size=nsga2_population(cfg.num_samples))


@SAMPLERS.register("tpe")
def _tpe(context: SearchContext) -> BaseSampler:
    from optuna.samplers import TPESampler

    return TPESampler(seed=context.config.seed)


@SAMPLERS.register("random")
def _random(context: SearchContext) -> BaseSampler:
    from optuna.samplers import RandomSampler

    return RandomSampler(seed=context.config.seed)


@SAMPLERS.register("oneshot")
def _oneshot(context: SearchContext) -> BaseSampler:
    """Every trial of a one-shot sweep is an enqueued front point (``search.oneshot_sweep``): this
    sampler draws nothing a trial runs."""
    from optuna.samplers import RandomSampler

    return RandomSampler(seed=context.config.seed)

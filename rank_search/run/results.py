"""The one writer of a run's result files, for `rank-search train --out` and for every trial
checkpoint alike.

A finished run's folder holds ``metrics.json``, ``plan.yaml`` (integer ranks), the run record
``run.yaml`` (the spec with its integer plan, every setting resolved, its rank groups and its
environment: what `export` hands to ``train --config``, which re-runs it exactly) and
``compact.pt``. `train` adds ``config.yaml`` (the spec as given); a
trial checkpoint adds ``engine_state.pt`` (the full engine state, for exact resume) and writes
the compact model and metrics only at the last epoch.
"""
from __future__ import annotations

import json
import os
from typing import Any, Mapping

import yaml

from .. import schema
from .spec import RunSpec


def resolved_settings(trainer) -> dict[str, Any]:
    """Every setting the run trained with, as ``--set`` keys: the whole ``TrainConfig`` (the data
    set's learning rate and batch size filled in, ``train.threads`` the torch threads actually
    used), every knob of the method, defaults included, and the ``distill.*`` settings of a
    distilled run (none when distillation is off). A re-run of these does not depend on defaults
    that may change, nor on the machine's default thread count."""
    from ..overrides import to_plain

    train_cfg = to_plain(trainer.config)
    train_cfg["threads"] = int(trainer.threads)
    method = trainer.method
    knobs = to_plain(method.knobs)
    distill = to_plain(trainer.distill) if trainer.distill.enabled else {}
    return {**{f"train.{k}": v for k, v in train_cfg.items()}, **{f"distill.{k}": v for k, v in distill.items()},
            **{f"{method.name}.{k}": v for k, v in knobs.items()}}


def run_record(trainer, spec: RunSpec) -> dict[str, Any]:
    """The run with integer ranks (``ranks`` = the resolved plan for a method with one), every
    setting resolved (:func:`resolved_settings`), the environment under
    ``schema.ENVIRONMENT_KEY`` and, for grouped ranks, the layer -> rank group map under
    ``schema.GROUPS_KEY``."""
    from ..groups import GroupRatios, layer_groups
    from .environment import environment

    from ..plan import RankPlan

    record = spec.to_dict()
    record["settings"] = resolved_settings(trainer)
    method = trainer.method
    if method.plan is not None and method.uses_plan:
        ranks = method.ranks_of_record(trainer)
        if isinstance(ranks, str) and os.path.isfile(ranks):
            ranks = os.path.abspath(ranks)  # a plan file, found from any folder
        record["ranks"] = ranks.to_dict() if hasattr(ranks, "to_dict") else ranks
        record[schema.RANK_RATIOS_KEY] = rank_ratios(trainer.dense, ranks if isinstance(ranks, RankPlan)
                                                     else method.plan)
        if method.plan.kept_dense:  # named by the rank spec, but no rank is cheaper than dense
            record[schema.KEPT_DENSE_KEY] = list(method.plan.kept_dense)
    if isinstance(spec.ranks, GroupRatios):
        record[schema.GROUPS_KEY] = {"grouping": spec.ranks.grouping,
                                     "layers": layer_groups(trainer.dense, spec.ranks.grouping)}
    record[schema.ENVIRONMENT_KEY] = environment(trainer)
    return record


def rank_ratios(model, plan) -> dict[str, float]:
    """``{layer: rank / max rank}`` of every planned layer (Tucker-2: the mean of its two ratios)."""
    from ..layers import get_scheme

    modules = dict(model.named_modules())
    out = {}
    for name, lp in plan.items():
        top = get_scheme(lp.scheme).max_rank(modules[name], **({"tiles": lp.tiles} if lp.tiles else {}))
        ranks = lp.rank if isinstance(lp.rank, tuple) else (lp.rank,)
        tops = top if isinstance(top, tuple) else (top,) * len(ranks)
        out[name] = round(sum(r / t for r, t in zip(ranks, tops)) / len(ranks), 6)
    return out


def _write_yaml(path: str, data: Mapping[str, Any]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        yaml.safe_dump(dict(data), fh, sort_keys=False)


def _write_compact(path: str, trainer, spec: RunSpec) -> None:
    from ..checkpoint import save_compact

    data = trainer.data
    save_compact(path, trainer.compact_model(), plan=trainer.method.plan, model=spec.model, dataset=spec.dataset,
                 method=spec.method, in_channels=data.in_channels, num_classes=data.num_classes,
                 image_size=data.image_size)


def write_results(directory: str, trainer, spec: RunSpec, metrics: Mapping[str, Any]) -> list[str]:
    """Write the finished run's metrics, plan, run record and compact model; return the file names."""
    with open(os.path.join(directory, schema.METRICS_FILE), "w", encoding="utf-8") as fh:
        json.dump(dict(metrics), fh, indent=2)
    with open(os.path.join(directory, schema.PLAN_FILE), "w", encoding="utf-8") as fh:
        fh.write(trainer.method.plan.to_yaml(model=spec.model, dataset=spec.dataset, method=spec.method))
    _write_yaml(os.path.join(directory, schema.RUN_FILE), {"run": run_record(trainer, spec)})
    _write_compact(os.path.join(directory, schema.COMPACT_WEIGHTS_FILE), trainer, spec)
    return [schema.METRICS_FILE, schema.PLAN_FILE, schema.RUN_FILE, schema.COMPACT_WEIGHTS_FILE]


def write_train_outputs(directory: str, trainer, spec: RunSpec, metrics: Mapping[str, Any]) -> list[str]:
    """`train --out`: the results plus ``config.yaml``, the spec as given (re-runnable as it was)."""
    files = write_results(directory, trainer, spec, metrics)
    _write_yaml(os.path.join(directory, schema.CONFIG_FILE), {"run": spec.to_dict()})
    return files + [schema.CONFIG_FILE]


def write_checkpoint(directory: str, trainer, spec: RunSpec, *, metrics: Mapping[str, Any] | None = None) -> None:
    """A trial checkpoint: the engine state and the run record every epoch; with ``metrics``
    (the last epoch) the full results as well."""
    import torch

    torch.save(trainer.state_dict(), os.path.join(directory, schema.ENGINE_STATE_FILE))
    if metrics is not None:
        write_results(directory, trainer, spec, metrics)
    else:
        _write_yaml(os.path.join(directory, schema.RUN_FILE), {"run": run_record(trainer, spec)})

"""Rank search with Ray Tune + Optuna. Only this package (and the CLI) imports ray.

``settings`` (the launch flags), ``sweep_record`` (the experiment's record file),
``ray_session`` (starting Ray), ``tune_setup`` (searcher, scheduler, trainable, run config),
``sweep`` (launch and resume), ``trial`` (a trial's config -> RunSpec), ``trainable`` (one trial),
``check`` (a space against the registries), ``progress`` (progress lines).
"""
from __future__ import annotations

from ..schema import SWEEP_FILE, parse_objectives
from .settings import SCHEDULERS, SEARCHERS, LaunchConfig

__all__ = ["SCHEDULERS", "SEARCHERS", "SWEEP_FILE", "LaunchConfig", "parse_objectives"]

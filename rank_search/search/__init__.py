"""Rank search with Ray Tune + Optuna. Only this package (and the CLI) imports ray."""
from __future__ import annotations

from .launcher import SCHEDULERS, SEARCHERS, SWEEP_FILE, LaunchConfig, parse_objectives

__all__ = ["SCHEDULERS", "SEARCHERS", "SWEEP_FILE", "LaunchConfig", "parse_objectives"]

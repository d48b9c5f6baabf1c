"""One training run: ``spec`` (what defines it), ``prepare`` (build, train, measure) and
``results`` (the one writer of its files). Used by `rank-search train` and the Tune trainable."""
from __future__ import annotations

from .prepare import RunResult, compression, final_metrics, prepare, train
from .spec import RUN_KEYS, RunSpec

__all__ = ["RUN_KEYS", "RunResult", "RunSpec", "compression", "final_metrics", "prepare", "train"]

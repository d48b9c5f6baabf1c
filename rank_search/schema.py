"""Metric names and result-file names, defined once and used everywhere (analysis included).

This module must stay free of torch and ray imports: ``analysis`` reads it.
"""
from __future__ import annotations

# Metrics reported by training runs and trials.
VAL_ACCURACY = "val_accuracy"
TEST_ACCURACY = "test_accuracy"
TRAIN_LOSS = "train_loss"
VAL_LOSS = "val_loss"
DENSE_PARAMS = "dense_params"
COMPACT_PARAMS = "compact_params"
DENSE_MACS = "dense_macs"
COMPACT_MACS = "compact_macs"
PARAMS_COMPRESSION = "params_compression"
MACS_COMPRESSION = "macs_compression"
EPOCH = "epoch"
EPOCHS = "epochs"
WALL_SECONDS = "wall_seconds"
DIVERGED = "diverged"

REQUIRED_TRAIN_METRICS = (
    VAL_ACCURACY,
    TEST_ACCURACY,
    DENSE_PARAMS,
    COMPACT_PARAMS,
    DENSE_MACS,
    COMPACT_MACS,
    PARAMS_COMPRESSION,
    MACS_COMPRESSION,
    EPOCHS,
    WALL_SECONDS,
)

# Files written by `rank-search train --out DIR`.
METRICS_FILE = "metrics.json"
PLAN_FILE = "plan.yaml"
COMPACT_WEIGHTS_FILE = "compact.pt"
CONFIG_FILE = "config.yaml"

# Files of a sweep (written by rank_search.search, read by analysis and export).
SWEEP_FILE = "rank_search_sweep.yaml"  # the experiment root: launch settings and the space
RUN_FILE = "run.yaml"  # each trial checkpoint: its run with integer ranks
ENGINE_STATE_FILE = "engine_state.pt"  # each trial checkpoint: the full engine state

"""Metric names and result-file names, defined once and used everywhere (analysis included).

This module must stay free of torch and ray imports: ``analysis`` reads it.
"""
from __future__ import annotations

import math

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
# Measured at every epoch report of a trial: median milliseconds of one forward pass of the
# compact and the dense model, interleaved in one run, and their ratio (dense / compact; load on
# a shared node largely cancels in it).
LATENCY_MS = "latency_ms"
DENSE_LATENCY_MS = "dense_latency_ms"
LATENCY_SPEEDUP = "latency_speedup"
LATENCY_SPREAD = "latency_speedup_spread"  # interquartile range of the per-round speed-ups behind LATENCY_SPEEDUP
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
COMPACT_FILE_FORMAT = "rank-search/compact-v1"  # the ``format`` field of a compact.pt

# Extras every trial reports beside its metrics (where it ran, how long an epoch took).
HOSTNAME = "hostname"
NODE_ID = "node_id"
EPOCH_SECONDS = "epoch_seconds"

# A trial's flat Tune config: ``method``, ``<method>.<knob>``, ``train.<key>``, one rank ratio
# per group under RANK_PREFIX and the sweep's constants under SPACE_PREFIX.
METHOD_KEY = "method"
RANK_PREFIX = "rank."
SPACE_PREFIX = "space."
CONFIG_COLUMN_PREFIX = "config/"  # how Tune flattens a trial's config into result columns

# Rank groups: how a space ties layers to one searched ratio.
GROUPINGS = ("uniform", "per_stage", "per_layer")
UNIFORM_GROUP = "all"  # the one group of the uniform grouping

# A run record (``run:`` in run.yaml) holds the RunSpec fields, with ``ranks`` the integer plan,
# and under GROUPS_KEY the resolved rank groups ``{grouping: G, layers: {layer: group}}``, so
# analysis reads them instead of working them out from layer names.
GROUPS_KEY = "groups"

# Objectives: ``METRIC:max|min`` pairs, comma-separated on the command line and in the sweep record.
OBJECTIVE_MODES = ("max", "min")
DEFAULT_OBJECTIVES = ((VAL_ACCURACY, "max"), (MACS_COMPRESSION, "max"))
# Objectives that are ratios (compared in log space: 2x -> 4x is worth 8x -> 16x).
RATIO_METRICS = (MACS_COMPRESSION, PARAMS_COMPRESSION, LATENCY_SPEEDUP)
# How far below the dense reference's accuracy a trial still counts: the report's quality
# measure (analysis.quality) and the refine searcher's parent floor use the same margin.
ACCURACY_MARGIN = 0.05

# Storage locations given as URIs (read and written through pyarrow filesystems).
URI_SCHEMES = ("s3://", "gs://", "gcs://", "abfs://", "hdfs://", "file://")


def is_uri(path: str) -> bool:
    """Whether ``path`` names remote (or ``file://``) storage rather than a local path."""
    return path.startswith(URI_SCHEMES)


def is_number(value, *, finite: bool = True) -> bool:
    """Whether ``value`` is an int or a float, not a bool, and finite unless ``finite`` is False:
    the one test of a number read from a space, a flag, a record or a result."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and (not finite or math.isfinite(value))


def parse_objectives(text: str) -> tuple[tuple[str, str], ...]:
    """``val_accuracy:max,macs_compression:max`` -> ((metric, mode), ...)."""
    from .errors import RankSearchError

    out = []
    for part in text.split(","):
        metric, _, mode = part.strip().partition(":")
        if not metric or mode not in OBJECTIVE_MODES:
            raise RankSearchError(f"objective must be METRIC:max or METRIC:min, got {part.strip()!r}")
        out.append((metric, mode))
    return tuple(out)


def format_objectives(objectives) -> list[str]:
    """((metric, mode), ...) -> ``["metric:mode", ...]`` (the sweep record's form)."""
    return [f"{metric}:{mode}" for metric, mode in objectives]

# Budget-driven trials: the searched target and allocation (under BUDGET_PREFIX in a trial's
# config, apart from RANK_PREFIX, which holds one ratio per rank group), and what they report.
BUDGET_PREFIX = "budget."
TARGET_KEY = BUDGET_PREFIX + "target"  # the target MACs compression
ALLOCATION_KEY = BUDGET_PREFIX + "allocation"  # uniform | sensitivity
TARGET_MACS_COMPRESSION = "target_macs_compression"
TARGET_LATENCY_SPEEDUP = "target_latency_speedup"  # the target under ranks.budget: latency
ALLOCATIONS = ("uniform", "sensitivity")
BUDGETS = ("macs", "latency")  # ranks.budget: what a budget-driven target is a compression of
PROFILE_PROXIES = ("bn", "finetune", "energy")
# The defaults of a budget-driven rank spec, one place for the space, the trial codec and
# ``allocation.BudgetRanks``. *Our choice* of proxy: ``bn`` gave the best allocation in the
# benchmarks (docs/search.md).
DEFAULT_ALLOCATION = "sensitivity"
DEFAULT_PROXY = "bn"
DEFAULT_BUDGET = "macs"

# Files a sweep keeps beside Tune's: the dense reference, the sensitivity profile, the study.
DENSE_WEIGHTS_FILE = "dense.pt"  # the dense reference's state_dict
DENSE_RECORD_FILE = "dense.yaml"  # how it was obtained and its metrics (read by analysis)
PROFILE_FILE = "sensitivity.csv"  # one row per (layer, scheme, ratio)
PROFILE_META_FILE = "sensitivity.yaml"  # the dense baseline and settings the profile was measured with
LAYER_LATENCY_FILE = "layer_latency.csv"  # ranks.budget: latency: measured time of each layer and rank
LAYER_LATENCY_META_FILE = "layer_latency.yaml"  # its batch size, threads, device and whole-model time
NESTED_WEIGHTS_FILE = "nested.pt"  # --searcher oneshot: the nested model trained from the dense reference
NESTED_RECORD_FILE = "nested.yaml"  # its training: epochs, scheme, knobs, seconds
ONESHOT_FILE = "oneshot.csv"  # the one-shot search: one row per evaluated allocation, its front marked
STUDY_FILE = "optuna_study.log"  # the Optuna study (JournalStorage), for optuna-dashboard
STUDY_NAME = "rank_search"  # the study's name in it
RANK_RATIOS_KEY = "rank_ratios"  # run record: {layer: rank / max rank} of every planned layer
KEPT_DENSE_KEY = "kept_dense"  # run record: the layers the rank spec left dense (no rank is cheaper)
# run record: what the run ran with beyond its settings (torch threads, device, package
# versions, git commit), so a re-run on the same machine can be checked against it
ENVIRONMENT_KEY = "environment"

# `rank-search deploy`: an exported compact model (ONNX or torch.export) and its side-car YAML.
DEPLOY_FORMATS = ("onnx", "torch-export")
DEPLOY_FILE_FORMAT = "rank-search/deploy-v1"  # the ``format`` field of the deployment metadata
DEPLOY_METADATA_KEY = "rank_search"  # ONNX metadata_props key holding the metadata as JSON
DEPLOY_METADATA_FILE = "rank_search.json"  # the same JSON as an extra file of a torch.export archive
DEPLOY_SIDECAR_SUFFIX = ".yaml"  # FILE + this: the metadata (and the parity measured) beside FILE
DEPLOY_INPUT_NAME = "input"  # the exported graph's input (N x C x H x W, N dynamic) and output
DEPLOY_OUTPUT_NAME = "logits"
PARITY_TOLERANCE = 1e-4  # max abs difference allowed between the exported and the PyTorch model

# `rank-search evaluate FILE`: what it measures (also the keys of its --json output).
EVAL_FILE = "file"
EVAL_FORMAT = "format"  # compact | onnx | torch-export
EVAL_DATASET = "dataset"
PARAMS = "params"  # the weights stored in the file (after BatchNorm folding for a deployed one)
MACS = "macs"  # multiply-adds of one sample through every convolution and matrix product
LATENCY_BATCH_SIZES = (1, 64)
LATENCY_THREADS = "threads"
LATENCY_REPEATS = "repeats"


def latency_key(batch_size: int) -> str:
    """``latency_ms_batch1``: the median milliseconds of one forward pass of a batch."""
    return f"latency_ms_batch{batch_size}"

# `launch --objectives`: the metrics every trial report carries (a diverged one's too), so the
# searcher can always read them; test accuracy is only reported, never searched.
OBJECTIVE_METRICS = (VAL_ACCURACY, VAL_LOSS, TRAIN_LOSS, PARAMS_COMPRESSION, MACS_COMPRESSION, COMPACT_PARAMS,
                     COMPACT_MACS, DENSE_PARAMS, DENSE_MACS, LATENCY_SPEEDUP, LATENCY_MS, DENSE_LATENCY_MS)

# The batch size a trial's latency is measured at: a constant of the sweep under SPACE_PREFIX in
# every trial's config (the deployment's batch, independent of ``train.batch_size``).
LATENCY_BATCH_SIZE_KEY = SPACE_PREFIX + "latency_batch_size"
DEFAULT_LATENCY_BATCH_SIZE = 1

# The driver of a running sweep (`launch` / `resume`) at the experiment root: host and pid, so
# `status` tells trials Tune's last snapshot calls RUNNING from trials whose driver is gone.
DRIVER_FILE = "rank_search_driver.json"
# --scheduler mo-asha: every rung decision, {"decisions": {trial id: {epoch: action}}, "rungs": ...}; not
# .json: Tune copies an experiment's .json/.pkl files to its staging folder at resume and back over
# the experiment's when it syncs, which would put an older ledger back
SCHEDULER_LEDGER_FILE = "mo_asha.yaml"
STOPPED_RUNG = "stopped_rung"  # the trials table: the rung epoch a scheduler stopped the trial at (None: not stopped)
INTERRUPTED = "INTERRUPTED"  # the status `status` shows for those

# A trial whose result.json has lines that are not JSON (truncated, binary): `status` names it,
# `export` and the Pareto fronts skip it.
RESULTS_DAMAGED = "results_damaged"

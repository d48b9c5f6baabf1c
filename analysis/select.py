"""Pick one trial from a sweep's Pareto front (what `rank-search export` exports)."""
from __future__ import annotations

import pandas as pd

from rank_search import schema
from rank_search.errors import RankSearchError

from .loading import Experiment
from .pareto import knee_index, log_scaled, pareto_mask
from .summary import usable_trials

PICKS = ("knee", "max-accuracy", "max-compression")


def pick_trial(exp: Experiment, *, pick: str = "knee", min_accuracy: float | None = None,
               max_macs: float | None = None, include_stopped: bool = False) -> pd.Series:
    """The chosen finished trial (one a scheduler stopped early only with ``include_stopped``).

    Finished, non-diverged trials are filtered by ``min_accuracy`` (validation) and ``max_macs``
    (compact MACs); the Pareto front of the rest (the sweep's objectives) gives the ``knee``,
    the most accurate or the most compressed (largest ``macs_compression``) trial.
    """
    _check_pick(pick)
    t = usable_trials(exp)
    t = t[t["status"] == "TERMINATED"] if not t.empty else t
    if not include_stopped and schema.STOPPED_RUNG in t:
        t = t[t[schema.STOPPED_RUNG].isna()]
    if t.empty:
        raise RankSearchError(f"no finished trial in {exp.path!r} to export")
    return pick_among(t, exp.objectives, pick=pick, min_accuracy=min_accuracy, max_macs=max_macs)


def pick_among(t: pd.DataFrame, objectives, *, pick: str = "knee", min_accuracy: float | None = None,
               max_macs: float | None = None, macs_column: str = schema.COMPACT_MACS,
               what: str = "finished trial") -> pd.Series:
    """The row of ``t`` that ``pick`` picks (``pick_trial``'s rules): rows filtered by
    ``min_accuracy`` (validation) and ``max_macs`` (``macs_column``), then the knee of their
    ``objectives`` (``(metric, "max"|"min")`` pairs), or the front's most accurate or most
    compressed row (ties: the other objective, then the first)."""
    _check_pick(pick)
    if min_accuracy is not None:
        t = t[t[schema.VAL_ACCURACY] >= min_accuracy]
    if max_macs is not None:
        t = t[t[macs_column] <= max_macs]
    if t.empty:
        raise RankSearchError(f"no {what} meets --min-accuracy {min_accuracy} / --max-macs {max_macs}")
    metrics = [m for m, _ in objectives]
    modes = [d for _, d in objectives]
    values = t[metrics].to_numpy(dtype=float)
    front = t[pareto_mask(values, modes)]
    if pick == "knee":
        return t.iloc[knee_index(values, modes, log_scaled(metrics))]
    key = schema.VAL_ACCURACY if pick == "max-accuracy" else schema.MACS_COMPRESSION
    other = schema.MACS_COMPRESSION if pick == "max-accuracy" else schema.VAL_ACCURACY
    return front.sort_values([key, other], ascending=False, kind="stable").iloc[0]


def _check_pick(pick: str) -> None:
    if pick not in PICKS:
        raise RankSearchError(f"--pick must be one of {', '.join(PICKS)}, got {pick!r}")

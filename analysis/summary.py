"""Text summaries of a sweep: trial counts, best trials and the Pareto front."""
from __future__ import annotations

import math
from typing import Sequence

import pandas as pd

from rank_search import schema

from .loading import Experiment
from .pareto import knee_index, log_scaled, pareto_mask

SHOWN = (schema.VAL_ACCURACY, schema.TEST_ACCURACY, schema.MACS_COMPRESSION, schema.PARAMS_COMPRESSION,
         schema.LATENCY_SPEEDUP, schema.LATENCY_MS)


def _truthy(value) -> bool:
    return value is not None and value == value and bool(value)  # NaN (missing) is not a yes


def usable_mask(trials: pd.DataFrame, metrics: Sequence[str]) -> pd.Series:
    """Rows with every metric reported as a number and no divergence."""
    ok = pd.Series(True, index=trials.index)
    for m in metrics:
        ok &= pd.to_numeric(trials[m], errors="coerce").notna() if m in trials else False
    if schema.DIVERGED in trials:
        ok &= ~trials[schema.DIVERGED].map(_truthy).astype(bool)
    if schema.RESULTS_DAMAGED in trials:  # its metrics are an earlier epoch's, or none
        ok &= trials[schema.RESULTS_DAMAGED].isna()
    return ok


def usable_trials(exp: Experiment, objectives: Sequence[tuple[str, str]] | None = None) -> pd.DataFrame:
    """Trials with every objective reported and no divergence (candidates for the front).

    ``objectives`` defaults to the sweep's own.
    """
    t = exp.trials
    if t.empty:
        return t
    return t[usable_mask(t, [m for m, _ in (objectives or exp.objectives)])]


def finished_mask(trials: pd.DataFrame) -> pd.Series:
    """Rows that may be picked as the knee or a best trial: Tune finished them (``TERMINATED``)
    and no scheduler stopped them early, as ``analysis.select.pick_trial`` (what `export` takes).
    RUNNING, PENDING, ERROR and interrupted trials report numbers of an epoch that is not their last."""
    ok = trials["status"] == "TERMINATED" if "status" in trials else pd.Series(True, index=trials.index)
    if schema.STOPPED_RUNG in trials:
        ok &= trials[schema.STOPPED_RUNG].isna()
    return ok


def front(exp: Experiment, *, finished_only: bool = False,
          objectives: Sequence[tuple[str, str]] | None = None) -> pd.DataFrame:
    """The Pareto-optimal trials (by ``objectives``, default the sweep's), sorted by the first
    objective (best first), with a boolean ``knee`` column.

    Unfinished trials may be on the front (their latest numbers), never its knee: the knee is
    that of the finished trials (:func:`finished_mask`), the trial `export` picks, marked where it
    is on this front (an unfinished trial may dominate it for now: then no row is the knee)."""
    objectives = list(objectives or exp.objectives)
    t = usable_trials(exp, objectives)
    if finished_only and not t.empty:
        t = t[t["status"] == "TERMINATED"]
    if t.empty:
        return t.assign(knee=[])
    metrics = [m for m, _ in objectives]
    modes = [d for _, d in objectives]
    values = t[metrics].to_numpy(dtype=float)
    mask = pareto_mask(values, modes)
    result = t[mask].copy()
    result["knee"] = False
    done = t[finished_mask(t)]
    if not done.empty:
        knee = done.index[knee_index(done[metrics].to_numpy(dtype=float), modes, log_scaled(metrics))]
        if knee in result.index:
            result.loc[knee, "knee"] = True
    return result.sort_values(metrics[0], ascending=modes[0] == "min", kind="stable")


def best_trials(exp: Experiment, *, top: int = 5) -> pd.DataFrame:
    """The ``top`` finished, usable trials by validation accuracy (best first): a running trial's
    accuracy is an earlier epoch's, so it is no "best" yet."""
    usable = usable_trials(exp)
    if usable.empty or top <= 0:
        return usable.head(0)
    usable = usable[finished_mask(usable)]
    return usable.sort_values(schema.VAL_ACCURACY, ascending=False, kind="stable").head(top)


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def table(df: pd.DataFrame, columns: list[str]) -> str:
    cols = [c for c in columns if c in df.columns]
    rows = [cols] + [[_fmt(r[c]) for c in cols] for _, r in df.iterrows()]
    widths = [max(len(r[i]) for r in rows) for i in range(len(cols))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows)


def front_text(exp: Experiment) -> str:
    f = front(exp)
    if f.empty:
        return "Pareto front: no finished trial reported the objectives yet"
    f = f.assign(knee=f["knee"].map({True: "<- knee", False: ""}))
    objectives = ", ".join(f"{m} ({d})" for m, d in exp.objectives)
    cols = ["trial_id", "config/method", "status", *SHOWN, "epochs_run", "knee"]
    text = f"Pareto front over {objectives}: {len(f)} of {len(usable_trials(exp))} trials\n" + table(f, cols)
    if schema.LATENCY_SPEEDUP in f and pd.to_numeric(f[schema.LATENCY_SPEEDUP], errors="coerce").notna().any():
        text += (f"\n\n{schema.LATENCY_SPEEDUP}: single timings, each where and while its trial ran (a shared machine "
                 "may skew them; no spread is recorded); measure a pick with `rank-search evaluate` on an idle machine")
    return text


def shown_statuses(exp: Experiment, *, stops: bool = False) -> pd.Series:
    """Tune's status of each trial, with RUNNING and PENDING shown as INTERRUPTED when no driver
    runs the sweep any more (Tune's last snapshot, written at Ctrl-C or before a kill, keeps them);
    with ``stops``, a trial the scheduler stopped early as ``STOPPED@EPOCH`` (the rung it stopped at)."""
    status = exp.trials["status"]
    if exp.driver == "gone":
        status = status.where(~status.isin(["RUNNING", "PENDING"]), schema.INTERRUPTED)
    return with_stops(exp.trials.assign(status=status)) if stops else status


def with_stops(trials: pd.DataFrame) -> pd.Series:
    """The ``status`` column of ``trials``, a trial the scheduler stopped early shown as
    ``STOPPED@EPOCH`` (the rung it stopped at): what tables print."""
    status = trials["status"]
    if schema.STOPPED_RUNG not in trials:
        return status
    rung = trials[schema.STOPPED_RUNG]
    return status.where(rung.isna(), "STOPPED@" + rung.fillna(0).astype(int).astype(str))


def damaged_lines(exp: Experiment) -> list[str]:
    """One line per trial whose result.json is damaged (left out of fronts and export)."""
    return [f"damaged results: trial {tid} ({why}); left out of the Pareto front and export"
            for tid, why in sorted(exp.damaged.items())]


def status_text(exp: Experiment, *, top: int = 5) -> str:
    expected = (exp.sweep or {}).get("launch", {}).get("num_samples")
    lines = [f"experiment {exp.path}"]
    if exp.trials.empty:
        lines.append(f"no trial started yet (of {expected})" if expected else "no trial started yet")
        return "\n".join(lines)
    t = exp.trials.assign(status=shown_statuses(exp, stops=True))
    exp = Experiment(exp.path, exp.sweep, t, exp.driver, exp.damaged)
    counts = t["status"].value_counts()
    parts = ", ".join(f"{k} {int(v)}" for k, v in counts.items())
    lines.append(f"trials: {len(t)}" + (f" of {expected}" if expected else "") + f" ({parts})")
    if schema.DIVERGED in t and t[schema.DIVERGED].fillna(False).astype(bool).any():
        lines.append(f"diverged: {int(t[schema.DIVERGED].fillna(False).astype(bool).sum())}")
    if (t["status"] == schema.INTERRUPTED).any():
        lines.append(f"interrupted: no driver runs this sweep; finish it with `rank-search resume {exp.path}`")
    lines += damaged_lines(exp)
    best = best_trials(exp, top=top)
    if not best.empty:
        lines += ["", f"best {len(best)} finished by {schema.VAL_ACCURACY}:",
                  table(best, ["trial_id", "config/method", "status", *SHOWN, "epochs_run"])]
    lines += ["", front_text(exp)]
    return "\n".join(lines)

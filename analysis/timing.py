"""What the report says about the latency speed-ups it shows.

A trial's ``latency_speedup`` is one measurement: the median of a few interleaved dense/compact
forward passes at its last report (``rank_search.latency``), on whatever machine ran the trial,
shared or not. Trials record its spread (``latency_speedup_spread``, the interquartile range of
the passes' speed-ups); where two trials' speed-ups differ by less than their spread, their order
is noise and the note says how often. Where two trials of nearly equal MACs disagree widely on
speed-up, it quotes them: the disagreement is a lower bound on the noise, measured, not assumed.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import pandas as pd

from rank_search import schema

from ._labels import format_value
from .summary import usable_mask

#: Trials whose MACs compressions differ by at most this fraction count as "nearly equal MACs".
#: *Our choice*: 1% of MACs is far below what moves a CPU timing by a measurable amount.
NEAR_MACS = 0.01
#: Speed-ups of nearly equal MACs that differ by more than this factor are quoted as a disagreement.
DISAGREEMENT = 1.25


class LatencyDisagreement(NamedTuple):
    """The two trials of nearly equal MACs whose speed-ups differ most."""

    trials: tuple[str, str]
    macs_compression: tuple[float, float]
    speedups: tuple[float, float]

    @property
    def factor(self) -> float:
        low, high = sorted(self.speedups)
        return high / low


def worst_disagreement(trials: pd.DataFrame) -> LatencyDisagreement | None:
    """The pair of usable trials with MACs compressions within ``NEAR_MACS`` of each other whose
    latency speed-ups differ most, when by more than ``DISAGREEMENT``; else None."""
    cols = [schema.MACS_COMPRESSION, schema.LATENCY_SPEEDUP]
    if trials.empty or any(c not in trials for c in cols):
        return None
    t = trials[usable_mask(trials, cols)].sort_values(schema.MACS_COMPRESSION, kind="stable")
    rows = [(str(r["trial_id"]), float(r[cols[0]]), float(r[cols[1]])) for _, r in t.iterrows()
            if float(r[cols[1]]) > 0 and math.isfinite(float(r[cols[1]]))]
    best: LatencyDisagreement | None = None
    for i, (a, ma, sa) in enumerate(rows):
        for b, mb, sb in rows[i + 1:]:
            if mb > ma * (1 + NEAR_MACS):
                break
            pair = LatencyDisagreement((a, b), (ma, mb), (sa, sb))
            if pair.factor > DISAGREEMENT and (best is None or pair.factor > best.factor):
                best = pair
    return best


def latency_note(trials: pd.DataFrame) -> str | None:
    """One or two sentences on the speed-ups of ``trials``; None when none reported one."""
    if trials.empty or schema.LATENCY_SPEEDUP not in trials or \
            pd.to_numeric(trials[schema.LATENCY_SPEEDUP], errors="coerce").notna().sum() == 0:
        return None
    note = ("single timings: each trial's median of a few interleaved dense/compact passes, taken where "
            "and while it ran (possibly a shared, busy machine)")
    overlaps = spread_overlaps(trials)
    if overlaps is None:
        note += "; the trials record no spread of it, so a difference between two trials may be noise"
    else:
        close, pairs = overlaps
        note += (f"; the spread column is the interquartile range of its passes' speed-ups. {close} of {pairs} "
                 "neighbouring speed-ups differ by less than their spread"
                 + (": unreliable, their order is noise" if close else ": their order holds"))
    pair = worst_disagreement(trials)
    if pair is not None:
        (a, b), (ma, mb), (sa, sb) = pair
        fa, fb = format_value(schema.MACS_COMPRESSION, ma), format_value(schema.MACS_COMPRESSION, mb)
        macs = f"both {fa}" if fa == fb else f"{fa} and {fb}"
        note += (f". Unreliable here: trials {a} and {b}, at nearly equal MACs compression ({macs}), measured "
                 f"speed-ups of {format_value(schema.LATENCY_SPEEDUP, sa)} and "
                 f"{format_value(schema.LATENCY_SPEEDUP, sb)}")
    return note + ". Measure a chosen model with `rank-search evaluate` on an idle machine."


def spread_overlaps(trials: pd.DataFrame) -> tuple[int, int] | None:
    """(How many, of how many) pairs of neighbouring speed-ups (the usable trials sorted by
    speed-up) differ by less than the larger of their two spreads; None without recorded spreads."""
    cols = [schema.LATENCY_SPEEDUP, schema.LATENCY_SPREAD]
    if trials.empty or any(c not in trials for c in cols):
        return None
    t = trials[usable_mask(trials, cols)]
    rows = sorted((float(r[cols[0]]), float(r[cols[1]])) for _, r in t.iterrows()
                  if math.isfinite(float(r[cols[0]])) and math.isfinite(float(r[cols[1]])))
    if len(rows) < 2:
        return None
    close = sum(1 for (a, sa), (b, sb) in zip(rows, rows[1:]) if b - a < max(sa, sb))
    return close, len(rows) - 1


__all__ = ["LatencyDisagreement", "latency_note", "spread_overlaps", "worst_disagreement"]

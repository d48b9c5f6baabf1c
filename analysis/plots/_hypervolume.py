"""Hypervolume of the front found so far vs the number of trials, one line per sweep."""
from __future__ import annotations

from typing import Mapping, NamedTuple, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .._labels import hypervolume_unit
from ..hypervolume import hypervolume_progress, reference_text
from ..loading import in_trial_order
from ..summary import usable_mask
from ._common import SWEEP_MARKERS, colors_for, new_figure


LINE_STYLES = ("-", "--", ":", "-.")


class HypervolumeCurve(NamedTuple):
    label: str
    trial_ids: tuple[str, ...]  # in start order
    values: tuple[float, ...]  # values[k-1] = hypervolume of the first k trials

    @property
    def final(self) -> float:
        return self.values[-1] if self.values else 0.0


class HypervolumeInfo(NamedTuple):
    objectives: tuple[tuple[str, str], ...]
    reference: tuple[float, ...]
    reference_text: str
    unit: str  # the product of the objectives' units, e.g. "val. accuracy (fraction 0-1) × MACs compression (×)"
    curves: tuple[HypervolumeCurve, ...]


def _get_hypervolume_info(sweeps: Mapping[str, pd.DataFrame], objectives: Sequence[tuple[str, str]],
                          reference: Sequence[float]) -> HypervolumeInfo:
    """Hypervolume after each trial, trials in start order (``started``, then trial id).

    A trial without every objective, or diverged, counts as a trial and adds nothing.
    """
    objectives = tuple((m, d) for m, d in objectives)
    metrics = [m for m, _ in objectives]
    directions = [d for _, d in objectives]
    curves = []
    for label, trials in sweeps.items():
        if trials.empty:
            curves.append(HypervolumeCurve(label, (), ()))
            continue
        t = in_trial_order(trials)
        values = np.full((len(t), len(metrics)), np.nan)
        ok = usable_mask(t, metrics).to_numpy()
        if ok.any():
            values[ok] = t.loc[ok, metrics].to_numpy(dtype=float)
        hv = hypervolume_progress(values, directions, reference)
        curves.append(HypervolumeCurve(label, tuple(str(i) for i in t["trial_id"]), tuple(float(v) for v in hv)))
    ref = tuple(float(r) for r in reference)
    return HypervolumeInfo(objectives, ref, reference_text(objectives, ref), hypervolume_unit(metrics), tuple(curves))


def plot_hypervolume(info: HypervolumeInfo) -> Figure:
    fig = new_figure(8.0, 4.6)
    ax = fig.add_subplot()
    colors = colors_for([c.label for c in info.curves])
    for i, curve in enumerate(info.curves):
        if not curve.values:
            continue
        k = np.arange(1, len(curve.values) + 1)
        # identical stretches of two sweeps would hide one line: earlier lines are wider, later dashed
        ax.step(k, curve.values, where="post", color=colors[curve.label], linewidth=max(1.2, 3.2 - 0.7 * i),
                linestyle=LINE_STYLES[i % len(LINE_STYLES)], label=f"{curve.label} (final {curve.final:.4g})")
        ax.plot(k, curve.values, linestyle="none", marker=SWEEP_MARKERS[i % len(SWEEP_MARKERS)], markersize=4,
                color=colors[curve.label])
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trials run (in start order)")
    # the volume is in the objectives' raw values: its unit is the product of theirs
    ax.set_ylabel(f"hypervolume of the front so far\nunit: {info.unit}")
    ax.set_ylim(bottom=0)
    ax.set_xlim(left=0.5)
    ax.grid(True, alpha=0.3)
    fig.suptitle("Hypervolume vs trials: the volume the front dominates beyond the reference point", fontsize=11)
    ax.set_title(f"reference point: {info.reference_text}", fontsize=9, color="0.35")
    if any(c.values for c in info.curves):
        ax.legend(loc="lower right", title="sweep (final hypervolume)", fontsize=9)
    return fig

"""Validation accuracy vs epoch of the front's trials."""
from __future__ import annotations

from typing import Any, Mapping, NamedTuple, Sequence

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from rank_search import schema

from .._labels import metric_label
from ._common import colors_for, format_axis, new_figure

METHOD_COLUMN = "config/method"
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


class Curve(NamedTuple):
    trial_id: str
    method: str
    epochs: tuple[int, ...]
    values: tuple[float, ...]
    knee: bool
    finished: bool
    same_as: str | None = None  # an earlier front trial with exactly this curve (a re-run configuration)


class LearningCurvesInfo(NamedTuple):
    label: str
    metric: str
    metric_label: str
    curves: tuple[Curve, ...]


def _get_learning_curves_info(front: pd.DataFrame, histories: Mapping[str, Sequence[Mapping[str, Any]]], *,
                              metric: str = schema.VAL_ACCURACY, label: str = "") -> LearningCurvesInfo:
    """``metric`` per epoch of each ``front`` trial, from its per-epoch results (``histories``:
    trial id -> result rows). A retried trial may report an epoch twice: the last report wins.
    Trials without a numeric ``metric`` in any epoch are left out."""
    curves: list[Curve] = []
    for _, row in front.iterrows():
        tid = str(row["trial_id"])
        by_epoch: dict[int, float] = {}
        for result in histories.get(tid, ()):
            epoch, value = result.get(schema.EPOCH), result.get(metric)
            if isinstance(epoch, int) and isinstance(value, (int, float)) and not isinstance(value, bool):
                by_epoch[epoch] = float(value)
        if not by_epoch:
            continue
        epochs = tuple(sorted(by_epoch))
        values = tuple(by_epoch[e] for e in epochs)
        same = next((c.trial_id for c in curves if (c.epochs, c.values) == (epochs, values)), None)
        curves.append(Curve(tid, str(row.get(METHOD_COLUMN, "?")), epochs, values, bool(row.get("knee", False)),
                            bool(row.get("finished", True)), same))
    return LearningCurvesInfo(label, metric, metric_label(metric), tuple(curves))


def plot_learning_curves(info: LearningCurvesInfo) -> Figure:
    fig = new_figure(8.5, 4.8)
    ax = fig.add_subplot()
    # colour = trial (trials of one method must stay apart), marker = method
    colors = colors_for([c.trial_id for c in info.curves])
    markers = {m: MARKERS[i % len(MARKERS)] for i, m in enumerate(dict.fromkeys(c.method for c in info.curves))}
    for c in info.curves:
        text = f"{c.trial_id} {c.method}" + (" (knee)" if c.knee else "") + ("" if c.finished else " (unfinished)")
        if c.same_as:
            text += f", same curve as {c.same_as}"
        # a repeated curve is dotted over the first one, so both colours show
        style = ":" if c.same_as else ("-" if c.finished else "--")
        ax.plot(c.epochs, c.values, marker=markers[c.method], markersize=5, color=colors[c.trial_id],
                linewidth=2.8 if c.knee else (2.0 if c.same_as else 1.4), linestyle=style, label=text,
                zorder=4 if c.same_as else (3 if c.knee else 2))
    epochs = [e for c in info.curves for e in c.epochs]
    if epochs:
        lo, hi = min(epochs), max(epochs)
        ax.set_xlim(lo - 0.3, hi + 0.3)
        if hi - lo <= 20:
            ax.set_xticks(range(lo, hi + 1))
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    format_axis(ax.yaxis, info.metric)
    ax.set_xlabel("epoch")
    ax.set_ylabel(info.metric_label)
    ax.grid(True, alpha=0.3)
    title = f"{info.metric_label.split(' (')[0].capitalize()} per epoch of the front's trials"
    ax.set_title(title + (f": {info.label}" if info.label else ""), fontsize=11)
    if info.curves:
        fig.legend(loc="outside right upper", title="trial, method (marker)", fontsize=8)
    else:
        ax.text(0.5, 0.5, "no per-epoch results for the front's trials", ha="center", va="center",
                transform=ax.transAxes)
    return fig

"""Pareto front plot: every trial (faded), each sweep's front (highlighted, step line), the knee."""
from __future__ import annotations

from typing import Mapping, NamedTuple, Sequence

import numpy as np
import pandas as pd
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .._labels import format_value, metric_label, short_label
from ..pareto import front_path, knee_index, log_scaled, pareto_mask
from ..summary import finished_mask, usable_mask
from ._common import SWEEP_LINES, SWEEP_MARKERS, format_axis, method_color, new_figure

METHOD_COLUMN = "config/method"
DOMINATED_ALPHA = 0.45
LOG_SPAN = 10.0  # a positive axis spanning this factor or more is drawn on a log scale


class TrialPoint(NamedTuple):
    trial_id: str
    method: str
    x: float
    y: float
    on_front: bool
    finished: bool


class SweepFront(NamedTuple):
    label: str
    points: tuple[TrialPoint, ...]  # the usable trials, in the order of the trials table
    path: tuple[tuple[float, float], ...]  # staircase through the front (2 objectives only)
    knee: TrialPoint | None
    n_trials: int  # all trials of the sweep, usable or not


class ParetoFrontInfo(NamedTuple):
    x_metric: str
    y_metric: str
    x_label: str
    y_label: str
    x_log: bool
    y_log: bool
    objectives: tuple[tuple[str, str], ...]
    methods: tuple[str, ...]
    sweeps: tuple[SweepFront, ...]


def _log_axis(values: list[float]) -> bool:
    v = np.asarray(values, dtype=float)
    return bool(len(v) and (v > 0).all() and v.max() / v.min() >= LOG_SPAN)


def _knee(t: pd.DataFrame, values: np.ndarray, on_front: np.ndarray, directions: Sequence[str],
          metrics: Sequence[str], points: tuple) -> TrialPoint | None:
    """The knee of the finished trials (``summary.finished_mask``, as ``summary.front``), where it
    is on the front; None while only unfinished trials could be one."""
    done = np.flatnonzero(finished_mask(t).to_numpy())
    if len(done) == 0:
        return None
    pos = int(done[knee_index(values[done], directions, log_scaled(metrics))])
    return points[pos] if on_front[pos] else None


def _get_pareto_front_info(sweeps: Mapping[str, pd.DataFrame], objectives: Sequence[tuple[str, str]]
                           ) -> ParetoFrontInfo:
    """Plot data for each sweep's trials (``{label: trials}``), by ``objectives``.

    The y axis shows the first objective, the x axis the second; the front, its knee and its
    step line are computed over all objectives (the path only with exactly two). Trials
    without every objective, or diverged, are left out.
    """
    objectives = tuple((m, d) for m, d in objectives)
    if len(objectives) < 2:
        raise ValueError(f"a Pareto front plot needs at least 2 objectives, got {len(objectives)}")
    metrics = [m for m, _ in objectives]
    directions = [d for _, d in objectives]
    (y_metric, _), (x_metric, _) = objectives[0], objectives[1]
    fronts, methods, xs, ys = [], set(), [], []
    for label, trials in sweeps.items():
        t = trials[usable_mask(trials, metrics)] if not trials.empty else trials
        if t.empty:
            fronts.append(SweepFront(label, (), (), None, len(trials)))
            continue
        values = t[metrics].to_numpy(dtype=float)
        mask = pareto_mask(values, directions)
        method = t[METHOD_COLUMN].astype(str) if METHOD_COLUMN in t else pd.Series("?", index=t.index)
        finished = t["finished"].astype(bool) if "finished" in t else pd.Series(True, index=t.index)
        points = tuple(
            TrialPoint(str(tid), str(m), float(x), float(y), bool(f), bool(done))
            for tid, m, x, y, f, done in zip(t["trial_id"], method, t[x_metric], t[y_metric], mask, finished)
        )
        path = tuple(front_path(values[:, [1, 0]], [directions[1], directions[0]])) if len(metrics) == 2 else ()
        fronts.append(SweepFront(label, points, path, _knee(t, values, mask, directions, metrics, points), len(trials)))
        methods.update(p.method for p in points)
        xs += [p.x for p in points]
        ys += [p.y for p in points]
    return ParetoFrontInfo(x_metric=x_metric, y_metric=y_metric, x_label=metric_label(x_metric),
                           y_label=metric_label(y_metric), x_log=_log_axis(xs), y_log=_log_axis(ys),
                           objectives=objectives, methods=tuple(sorted(methods)), sweeps=tuple(fronts))


def plot_pareto_front(info: ParetoFrontInfo) -> Figure:
    """Render ``_get_pareto_front_info``: colour = method, marker = sweep, hollow = unfinished."""
    fig = new_figure(9.0, 6.2)
    ax = fig.add_subplot()
    colors = {m: method_color(m) for m in info.methods}
    several = len(info.sweeps) > 1
    directions = dict(info.objectives)
    sweep_handles = []
    for i, sweep in enumerate(info.sweeps):
        marker = SWEEP_MARKERS[i % len(SWEEP_MARKERS)]
        line_color, style = SWEEP_LINES[i % len(SWEEP_LINES)]
        for on_front in (False, True):
            pts = [p for p in sweep.points if p.on_front == on_front]
            if not pts:
                continue
            # alpha goes into each colour: a collection-wide alpha would fill hollow markers
            alpha = 1.0 if on_front else DOMINATED_ALPHA
            face = [to_rgba(colors[p.method], alpha) if p.finished else (0, 0, 0, 0) for p in pts]
            edge = [to_rgba("black" if on_front and p.finished else colors[p.method], alpha) for p in pts]
            ax.scatter([p.x for p in pts], [p.y for p in pts], marker=marker, s=70 if on_front else 30,
                       facecolors=face, edgecolors=edge, linewidths=1.2 if on_front else 0.9,
                       # dominated points (small) drawn above the front's markers: none is hidden
                       zorder=3 if on_front else 4)
        n_front = sum(p.on_front for p in sweep.points)
        name = f"front of {sweep.label}" if several else "Pareto front"
        text = f"{name}: {n_front} of {len(sweep.points)} trials"
        if sweep.n_trials > len(sweep.points):
            text += f" with results ({sweep.n_trials} in all)"
        if sweep.path:
            px, py = zip(*sweep.path)
            ax.plot(px, py, color=line_color, linestyle=style, linewidth=1.4, zorder=2.5)
        if sweep.knee is not None:
            k = sweep.knee
            text += f"\nknee {k.trial_id} ({k.method}): {format_value(info.y_metric, k.y)}" \
                    f" at {format_value(info.x_metric, k.x)}"
            ax.scatter([k.x], [k.y], marker=marker, s=190, facecolors="none", edgecolors="black",
                       linewidths=1.6, zorder=5)
            # nothing dominates the knee, so the quadrant on its better side is empty: the label
            # goes there and covers no point (its values are in the legend)
            dx, dy = (1 if d == "max" else -1 for d in (directions[info.x_metric], directions[info.y_metric]))
            ax.annotate("knee" + (f" ({sweep.label})" if several else ""), xy=(k.x, k.y),
                        xytext=(9 * dx, 9 * dy), textcoords="offset points", fontsize=8.5, zorder=6,
                        ha="left" if dx > 0 else "right", va="bottom" if dy > 0 else "top")
        sweep_handles.append(Line2D([], [], color=line_color, linestyle=style if sweep.path else "none",
                                    marker=marker, markerfacecolor="white", markeredgecolor="black", label=text))
    ax.margins(x=0.06, y=0.1)  # room for the knee labels on the front's outer side
    format_axis(ax.xaxis, info.x_metric, log=info.x_log)
    format_axis(ax.yaxis, info.y_metric, log=info.y_log)
    ax.set_xlabel(info.x_label + (", log scale" if info.x_log else ""))
    ax.set_ylabel(info.y_label + (", log scale" if info.y_log else ""))
    ax.grid(True, which="major", alpha=0.3)
    arrow = dict((m, "↑" if d == "max" else "↓") for m, d in info.objectives)
    title = (f"Pareto front: {short_label(info.y_metric)} {arrow[info.y_metric]} vs "
             f"{short_label(info.x_metric)} {arrow[info.x_metric]}")
    keys = [k for k, d in (("↑ higher is better", "max"), ("↓ lower is better", "min"))
            if any(mode == d for _, mode in info.objectives)]
    subtitle = ", ".join(keys)
    if len(info.objectives) > 2:
        others = ", ".join(f"{short_label(m)} {arrow[m]}" for m, _ in info.objectives[2:])
        subtitle += f"; front over {len(info.objectives)} objectives (also {others}), drawn on the first two"
    # a figure title, not the axes': centred on the figure, the layout keeps it inside
    fig.suptitle(title, fontsize=11)
    ax.set_title(subtitle, fontsize=9, color="0.35")
    method_handles = [Line2D([], [], linestyle="none", marker="o", markerfacecolor=colors[m],
                             markeredgecolor=colors[m], label=m) for m in info.methods]
    points = [p for s in info.sweeps for p in s.points]
    style_handles = [
        Line2D([], [], linestyle="none", marker="o", markerfacecolor="0.5", markeredgecolor="black",
               label="on the front"),
    ]
    if any(not p.on_front for p in points):
        style_handles.append(Line2D([], [], linestyle="none", marker="o", markerfacecolor="0.5",
                                    markeredgecolor="0.5", alpha=DOMINATED_ALPHA, label="dominated"))
    if any(not p.finished for p in points):
        style_handles.append(Line2D([], [], linestyle="none", marker="o", markerfacecolor="none",
                                    markeredgecolor="0.4", label="unfinished (last epoch so far)"))
    sections = [("colour = method", method_handles), ("points", style_handles),
                ("marker and line = sweep" if several else "front", sweep_handles)]
    rows = max(2, len(style_handles), len(sweep_handles), -(-len(method_handles) // 3))
    if not points:  # no legend and no ticks for an empty plot (they would invent a scale)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.text(0.5, 0.5, "no trial reported every objective yet", ha="center", va="center",
                transform=ax.transAxes)
        return fig
    _legend_below(fig, [(head, handles) for head, handles in sections if handles], rows=rows)
    return fig


def _legend_below(fig: Figure, sections: Sequence[tuple[str, Sequence[Line2D]]], *, rows: int) -> None:
    """One legend under the axes, so the axes keep the figure's width: a column per ``rows``
    entries of a section, the section's bold heading on top of its first column."""
    blank = Line2D([], [], linestyle="none")
    handles, labels, headings = [], [], []
    for head, entries in sections:
        for start in range(0, len(entries), rows):
            chunk = list(entries[start:start + rows])
            column = [(blank, head if start == 0 else "")] + [(h, h.get_label()) for h in chunk]
            column += [(blank, "")] * (rows - len(chunk))
            headings.append(len(handles))
            for h, text in column:
                handles.append(h)
                labels.append(text)
    legend = fig.legend(handles, labels, loc="outside lower center", ncols=len(headings), fontsize=9,
                        columnspacing=1.6, handletextpad=0.5)
    for i in headings:
        legend.get_texts()[i].set_fontweight("bold")

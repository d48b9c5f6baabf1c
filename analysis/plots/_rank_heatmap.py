"""Per-layer rank ratios of the front's trials (rows = trials, columns = layers in model order)."""
from __future__ import annotations

import math
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from rank_search import schema

from .._labels import format_value
from ..ranks import RANK_COLUMN_PREFIX, rank_groups, rank_text, record_groups, record_layers
from ._common import new_figure

METHOD_COLUMN = "config/method"
DENSE_METHODS = ("full",)
TUCKER2 = "tucker2"
RATIO_DIGITS = 6  # the run record's rank ratios are rounded to this many decimals
MAX_ANNOTATED_CELLS = 160  # above this, cells are too small to carry their integer rank


class RankHeatmapInfo(NamedTuple):
    label: str
    columns: tuple[str, ...]  # layer names in model order (rank groups when no checkpoint is readable)
    columns_are_groups: bool
    trial_ids: tuple[str, ...]  # rows, front order
    methods: tuple[str, ...]
    objective_values: tuple[tuple[float, ...], ...]  # per row, one value per objective
    objectives: tuple[tuple[str, str], ...]
    values: tuple[tuple[float, ...], ...]  # rank ratio (rank / max rank); 1.0 = dense; NaN = unknown
    ranks: tuple[tuple[str, ...], ...]  # integer ranks ("29", "9×4", "dense") or "" when unknown
    knee_row: int | None
    schemes: tuple[tuple[str, ...], ...] = ()  # per cell, the layer's scheme ("" when dense or unknown)
    # per column, (scheme, max rank) of each scheme the front uses there ("64", "64×32"), known ones only
    max_ranks: tuple[tuple[tuple[str, str], ...], ...] = ()

    @property
    def has_tucker2(self) -> bool:
        return any(TUCKER2 in row for row in self.schemes)


def _columns(front: pd.DataFrame, records: Mapping[str, Any]) -> tuple[list[str], bool]:
    layers: list[str] = []
    for tid in front["trial_id"]:
        for name in record_layers(records.get(str(tid))) or {}:
            if name not in layers:
                layers.append(name)
    if layers:
        return layers, False
    groups: list[str] = []
    for _, row in front.iterrows():
        groups += [g for g in rank_groups(row) if g not in groups]
    return groups, True


def _get_rank_heatmap_info(front: pd.DataFrame, objectives: Sequence[tuple[str, str]], *, label: str = "",
                           run_records: Mapping[str, Mapping[str, Any] | None] | None = None,
                           profile: Sequence[Mapping[str, Any]] | None = None,
                           dense_methods: Sequence[str] = DENSE_METHODS) -> RankHeatmapInfo:
    """Rank ratio of every layer for each front trial (``front`` rows, in their order).

    The ratio of a layer is its group's ``config/rank.<group>`` value (layers of a ``uniform``
    or ``per_stage`` group share it), the group being the one the trial wrote into its run
    record (another trial's record for a trial without one). Columns are the layers of the trials' checkpoint run records (``run_records``:
    trial id -> ``run`` mapping, model order), whose integer ranks annotate the cells; without
    any record the columns are the rank groups. A dense trial
    (a run record without a plan, or a method in ``dense_methods``) is 1.0 everywhere, and a
    layer outside a trial's plan is 1.0 (it stays dense).

    A column's maximum rank per scheme is the rank at ratio 1 in the sensitivity profile's rows
    (``profile``, as ``sensitivity.csv`` holds them), else, for a one-number rank, the only
    integer that the record's rounded rank ratio allows (rank / ratio); otherwise it is left out.
    """
    records = {str(k): v for k, v in (run_records or {}).items()}
    objectives = tuple((m, d) for m, d in objectives)
    columns, are_groups = _columns(front, records) if not front.empty else ([], False)
    # every trial of a sweep has the same model and grouping, so one trial's map serves one
    # without a readable record (still running, checkpoint lost)
    sweep_groups: dict[str, str] = {}
    for rec in records.values():
        sweep_groups = sweep_groups or record_groups(rec)
    values, ranks, ids, methods, objs, schemes = [], [], [], [], [], []
    knee_row = None
    for i, (_, row) in enumerate(front.iterrows()):
        tid = str(row["trial_id"])
        method = str(row.get(METHOD_COLUMN, "?"))
        plan = record_layers(records.get(tid))
        mapping = {c: c for c in columns} if are_groups else (record_groups(records.get(tid)) or sweep_groups)
        dense = plan == {} or (plan is None and method in dense_methods)
        vals, texts, kinds = [], [], []
        for col in columns:
            if dense or (plan and col not in plan):
                vals.append(1.0)
                texts.append("dense")
                kinds.append("")
                continue
            entry = plan.get(col) if plan else None
            kinds.append(str(entry.get("scheme") or "") if isinstance(entry, Mapping) else "")
            group = mapping.get(col)
            ratio = row.get(f"{RANK_COLUMN_PREFIX}{group}") if group is not None else None
            if not isinstance(ratio, (int, float)):  # budget-driven trials: the ratio of the integer rank
                ratio = (records.get(tid) or {}).get(schema.RANK_RATIOS_KEY, {}).get(col)
            vals.append(float(ratio) if isinstance(ratio, (int, float)) else math.nan)
            texts.append(rank_text(plan[col].get("rank")) if plan and isinstance(plan.get(col), Mapping) else "")
        values.append(tuple(vals))
        ranks.append(tuple(texts))
        schemes.append(tuple(kinds))
        ids.append(tid)
        methods.append(method)
        objs.append(tuple(float(row[m]) if isinstance(row.get(m), (int, float)) else math.nan for m, _ in objectives))
        if bool(row.get("knee", False)):
            knee_row = i
    known = _profile_max_ranks(profile or ())
    for rec in records.values():
        for layer, scheme, top in _derived_max_ranks(rec):
            known.setdefault((layer, scheme), top)
    max_ranks = tuple(tuple((sc, known[(col, sc)]) for sc in sorted({row[c] for row in schemes})
                            if sc and (col, sc) in known) for c, col in enumerate(columns))
    return RankHeatmapInfo(label, tuple(columns), are_groups, tuple(ids), tuple(methods), tuple(objs), objectives,
                           tuple(values), tuple(ranks), knee_row, tuple(schemes), max_ranks)


def _profile_max_ranks(rows: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str], str]:
    """``{(layer, scheme): max rank}`` from the profile rows at ratio 1 (rank ``64`` or ``64x32``)."""
    out = {}
    for r in rows:
        try:
            full = float(r.get("ratio") or "nan") >= 1.0
        except (TypeError, ValueError):
            continue
        rank = str(r.get("rank") or "").strip()
        if full and rank and r.get("layer") and r.get("scheme"):
            out[(str(r["layer"]), str(r["scheme"]))] = rank_text(rank.split("x") if "x" in rank else rank)
    return out


def _derived_max_ranks(record: Mapping[str, Any] | None):
    """``(layer, scheme, max rank)`` where a one-number rank and its rounded ratio admit one
    integer maximum (a Tucker-2 ratio is the mean of two: it cannot name both maxima)."""
    ratios = (record or {}).get(schema.RANK_RATIOS_KEY)
    if not isinstance(ratios, Mapping):
        return
    half = 0.5 * 10.0 ** -RATIO_DIGITS
    for layer, entry in (record_layers(record) or {}).items():
        rank, ratio = entry.get("rank") if isinstance(entry, Mapping) else None, ratios.get(layer)
        if isinstance(rank, bool) or not isinstance(rank, int) or not isinstance(ratio, (int, float)) \
                or ratio <= half:
            continue
        lo, hi = math.ceil(rank / (ratio + half)), math.floor(rank / (ratio - half))
        if lo == hi and lo >= rank:
            yield layer, str(entry.get("scheme") or ""), str(lo)


def plot_rank_heatmap(info: RankHeatmapInfo) -> Figure:
    n_rows, n_cols = len(info.trial_ids), len(info.columns)
    names = [m for m, _ in info.objectives[:2]]
    labels = [f"{tid}  {method}  " + " · ".join(format_value(m, v) for m, v in zip(names, objs))
              for tid, method, objs in zip(info.trial_ids, info.methods, info.objective_values)]
    if info.knee_row is not None:
        labels[info.knee_row] += "  (knee)"
    label_width = 0.075 * max((len(s) for s in labels), default=10)
    ticks = _column_labels(info)
    # a column as wide as its longest tick line (8 pt: about 0.07 in a character)
    column = 0.75 if n_cols > 4 else max(0.75, 0.07 * max((len(t) for s in ticks for t in s.split("\n")), default=0)
                                         + 0.2)
    width = min(20.0, max(8.0, label_width + column * n_cols + 2.2))
    height = min(16.0, max(3.4, 2.0 + 0.42 * n_rows))
    fig = new_figure(width, height)
    ax = fig.add_subplot()
    if n_rows == 0 or n_cols == 0:
        ax.text(0.5, 0.5, "no front trial with per-layer ranks", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    data = np.ma.masked_invalid(np.array(info.values, dtype=float))
    cmap = _colormap()
    image = ax.imshow(data, aspect="auto", cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
    if n_rows * n_cols <= MAX_ANNOTATED_CELLS:
        for r in range(n_rows):
            for c in range(n_cols):
                text = info.ranks[r][c] or ("?" if np.ma.is_masked(data[r, c]) else "")
                if text:
                    dark = not np.ma.is_masked(data[r, c]) and data[r, c] < 0.55
                    ax.text(c, r, text, ha="center", va="center", fontsize=8, color="white" if dark else "black")
    ax.set_yticks(range(n_rows), labels, fontsize=8)
    if info.knee_row is not None:
        ax.get_yticklabels()[info.knee_row].set_fontweight("bold")
    ax.set_xticks(range(n_cols), ticks, rotation=45 if n_cols > 4 else 0,
                  ha="right" if n_cols > 4 else "center", fontsize=8)
    ax.set_xlabel("rank group" if info.columns_are_groups else "layer (model order)")
    ax.set_ylabel("front trial (id, method, objectives)")
    cbar = fig.colorbar(image, ax=ax, fraction=0.05, pad=0.02)
    cbar.set_label("rank ratio (rank / max rank)")
    fig.suptitle("Per-layer rank ratios of the Pareto front" + (f": {info.label}" if info.label else ""),
                 fontsize=11)
    notes = ["1.0 = dense layer"]
    if n_rows * n_cols <= MAX_ANNOTATED_CELLS:
        notes.insert(0, "cell text = integer rank" + (" (Tucker-2: out×in)" if info.has_tucker2 else ""))
    colour = "colour = rank / max rank" + ("; a Tucker-2 cell: the mean of its out and in ratios"
                                           if info.has_tucker2 else "")
    ax.set_title("; ".join(notes) + "\n" + colour, fontsize=9, color="0.35")
    return fig


def _column_labels(info: RankHeatmapInfo) -> list[str]:
    """Each column's name over its maximum rank: ``max 64``, or one line per scheme used there."""
    labels = []
    for c, name in enumerate(info.columns):
        maxes = info.max_ranks[c] if c < len(info.max_ranks) else ()
        if len(maxes) == 1:
            name += f"\nmax {maxes[0][1]}"
        else:
            name += "".join(f"\nmax {top} ({scheme})" for scheme, top in maxes)
        labels.append(name)
    return labels


def _colormap():
    import matplotlib

    return matplotlib.colormaps["viridis"].with_extremes(bad="#dddddd")

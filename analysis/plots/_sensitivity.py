"""The layer sensitivity profile: one curve per layer, the proxy vs the layer's rank ratio."""
from __future__ import annotations

import math
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullLocator

from rank_search import schema

from .._labels import format_value
from ._common import FractionPercent, new_figure

# (proxy, sensitivity.csv column, dense value in sensitivity.yaml, axis label), in order of
# preference: the first proxy the profile measured is drawn
PROXIES = (
    ("bn", schema.VAL_ACCURACY, "dense_val_accuracy",
     "validation accuracy after BatchNorm re-estimation (%)"),
    ("finetune", "ft_val_accuracy", "dense_ft_val_accuracy",
     "validation accuracy after a few fine-tuning steps (%)"),
    ("energy", "energy", None, "kept spectral energy (%)"),
)
SCHEME_LINES = ("-", "--", ":", "-.")
MAX_RATIO_TICKS = 12
MAX_LAYER_TICKS = 32


class SensitivityCurve(NamedTuple):
    layer: str
    scheme: str
    ratios: tuple[float, ...]  # ascending
    values: tuple[float, ...]


class SensitivityInfo(NamedTuple):
    label: str
    proxy: str  # bn | finetune | energy (none: the profile holds no measured value)
    column: str
    y_label: str
    dense: float | None  # the dense model's value of the proxy
    layers: tuple[str, ...]  # model order (the profile's row order)
    schemes: tuple[str, ...]
    curves: tuple[SensitivityCurve, ...]
    dense_label: str = ""  # the dense line's legend: the proxy, the split and the value
    reference: float | None = None  # the sweep's dense reference (validation accuracy, as launch prints it)
    reference_label: str = ""  # its legend, where it differs from the dense line ("" otherwise)


def _number(value: Any) -> float | None:
    if isinstance(value, str):
        try:
            value = float(value.strip()) if value.strip() else None
        except ValueError:
            return None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


#: How the profile measured its dense value, per proxy: the words of the dense line's legend.
DENSE_WORDS = {"bn": "dense model, BatchNorm re-estimated", "finetune": "dense model, briefly fine-tuned"}


def _get_sensitivity_info(rows: Sequence[Mapping[str, Any]], meta: Mapping[str, Any], *,
                          label: str = "", reference: float | None = None) -> SensitivityInfo:
    """Curves of the first measured proxy (``bn``'s ``val_accuracy``, else ``ft_val_accuracy``,
    else kept ``energy``) per (layer, scheme), from ``sensitivity.csv`` rows (strings as
    written, or numbers) and the ``sensitivity.yaml`` mapping.

    The dense line is the profile's dense value of that proxy (``energy``: 1.0), else the value
    of a row at ratio >= 1 (the layer left dense). Rows without a positive ratio or a value of
    the proxy are left out. ``reference``, the sweep's dense reference (validation accuracy,
    the number `launch` prints), is drawn too where it differs from the proxy's dense value (the
    proxy re-estimates BatchNorm or fine-tunes, so its dense value is not the reference's).
    """
    chosen = next((p for p in PROXIES if any(_number(r.get(p[1])) is not None for r in rows)), None)
    proxy, column, dense_key, y_label = chosen or ("none", schema.VAL_ACCURACY, None, PROXIES[0][3])
    points: dict[tuple[str, str], list[tuple[float, float]]] = {}
    layers: dict[str, None] = {}
    schemes: dict[str, None] = {}
    at_full: list[float] = []
    for r in rows:
        layer, scheme = str(r.get("layer") or "?"), str(r.get("scheme") or "?")
        ratio, value = _number(r.get("ratio")), _number(r.get(column))
        if ratio is None or ratio <= 0 or value is None:
            continue
        layers.setdefault(layer)
        schemes.setdefault(scheme)
        points.setdefault((layer, scheme), []).append((ratio, value))
        if ratio >= 1.0:
            at_full.append(value)
    if proxy == "energy":
        dense = 1.0
    else:
        dense = _number(meta.get(dense_key)) if dense_key else None
        dense = dense if dense is not None else (at_full[0] if at_full else None)
    curves = []
    for (layer, scheme), pts in points.items():
        pts.sort()
        curves.append(SensitivityCurve(layer, scheme, tuple(p[0] for p in pts), tuple(p[1] for p in pts)))
    if dense is None:
        dense_label = ""
    elif proxy == "energy":
        dense_label = "dense model (all energy kept)"
    else:
        dense_label = f"{DENSE_WORDS.get(proxy, 'dense model')}: val {format_value(schema.VAL_ACCURACY, dense)}"
    shown_ref = reference if reference is not None and proxy in DENSE_WORDS and \
        (dense is None or round(reference, 4) != round(dense, 4)) else None
    reference_label = "" if shown_ref is None else \
        f"dense reference: val {format_value(schema.VAL_ACCURACY, shown_ref)}"
    return SensitivityInfo(label, proxy, column, y_label, dense, tuple(layers), tuple(schemes), tuple(curves),
                           dense_label, shown_ref, reference_label)


def _layer_colors(n: int) -> list:
    import matplotlib

    # viridis without its pale yellow end, which vanishes on white
    return [matplotlib.colormaps["viridis"](0.9 * i / max(n - 1, 1)) for i in range(n)]


def plot_sensitivity(info: SensitivityInfo) -> Figure:
    n = len(info.layers)
    fig = new_figure(10.0, max(4.8, min(9.0, 2.0 + 0.2 * n)))
    ax = fig.add_subplot()
    title = "Layer sensitivity: the dense model with only one layer decomposed"
    fig.suptitle(title + (f" ({info.label})" if info.label else ""), fontsize=11)
    if not info.curves:
        ax.text(0.5, 0.5, "the profile holds no measured value", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    colors = dict(zip(info.layers, _layer_colors(n)))
    style = {s: SCHEME_LINES[i % len(SCHEME_LINES)] for i, s in enumerate(info.schemes)}
    for c in info.curves:
        ax.plot(c.ratios, c.values, color=colors[c.layer], linestyle=style[c.scheme], marker="o", markersize=3,
                linewidth=1.4, alpha=0.9)
    handles = []
    if info.dense is not None:
        handles.append(ax.axhline(info.dense, color="0.2", linestyle="--", linewidth=1.2,
                                  label=info.dense_label, zorder=1))
    if info.reference is not None:
        handles.append(ax.axhline(info.reference, color="0.45", linestyle=":", linewidth=1.2,
                                  label=info.reference_label, zorder=1))
    if len(info.schemes) > 1:
        handles += [ax.plot([], [], color="0.4", linestyle=style[s], label=f"scheme {s}")[0] for s in info.schemes]
    if handles:
        ax.legend(handles=handles, loc="lower right", fontsize=8)
    ax.set_xscale("log")
    ratios = sorted({r for c in info.curves for r in c.ratios})
    if len(ratios) <= MAX_RATIO_TICKS:
        ax.set_xticks(ratios)
        ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_major_formatter(FractionPercent())
    ax.set_xlabel("rank ratio of the decomposed layer (rank / max rank, log scale)")
    ax.set_ylabel(info.y_label)
    ax.set_title(f"proxy: {info.proxy} ({info.column} in {schema.PROFILE_FILE}); one curve per layer",
                 fontsize=9, color="0.35")
    ax.grid(True, which="major", alpha=0.3)
    _layer_colorbar(fig, ax, info.layers, colors)
    return fig


def _layer_colorbar(fig: Figure, ax, layers: Sequence[str], colors: Mapping[str, Any]) -> None:
    """A discrete colour bar in model order, one named tick per layer (every k-th when many):
    stays readable for tens of layers, where a legend would not."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import BoundaryNorm, ListedColormap

    n = len(layers)
    cmap = ListedColormap([colors[name] for name in layers])
    mappable = ScalarMappable(norm=BoundaryNorm(np.arange(n + 1) - 0.5, n), cmap=cmap)
    cbar = fig.colorbar(mappable, ax=ax, fraction=0.04, pad=0.02, aspect=max(20, 1.5 * n))
    step = max(1, math.ceil(n / MAX_LAYER_TICKS))
    ticks = list(range(0, n, step))
    cbar.set_ticks(ticks, labels=[layers[i] for i in ticks], fontsize=7 if n > 12 else 8)
    cbar.ax.invert_yaxis()  # the first layer on top
    cbar.set_label("layer (model order)")

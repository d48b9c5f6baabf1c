"""Shared rendering helpers: figures without pyplot (no global state, Agg canvas), colours,
axis formats and saving as PNG + SVG."""
from __future__ import annotations

import math
import os
import zlib
from typing import Sequence

from matplotlib.figure import Figure
from matplotlib.ticker import Formatter, FuncFormatter

from .._labels import FRACTION_METRICS, RATIO_METRICS

FORMATS = ("png", "svg")
PNG_DPI = 110
# matplotlib's tab10: ten hues that stay apart, then darker tones
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#000000")
# One colour per method in every figure and every report (dense `full` in grey); other names
# get the remaining colours by a stable hash of the name.
METHOD_COLORS = {"deeptwist": "#1f77b4", "elrt": "#ff7f0e", "trp": "#d62728", "lrpet": "#9467bd",
                 "posthoc": "#8c564b", "factorized": "#17becf", "full": "#7f7f7f"}
_SPARE = tuple(c for c in PALETTE if c not in METHOD_COLORS.values())
SWEEP_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
SWEEP_LINES = (("#222222", "-"), ("#777777", "--"), ("#444444", ":"), ("#999999", "-."))


def new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    return fig


def colors_for(names: Sequence[str]) -> dict[str, str]:
    """A colour per name, in the given order (sweeps)."""
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(names)}


def method_color(method: str) -> str:
    """The method's colour, the same in every figure."""
    return METHOD_COLORS.get(method) or _SPARE[zlib.crc32(method.encode()) % len(_SPARE)]


def format_axis(axis, metric: str, *, log: bool = False) -> None:
    """Percent ticks for accuracies, ``4×`` ticks for compression ratios."""
    if log:
        axis.axes.set_xscale("log") if axis is axis.axes.xaxis else axis.axes.set_yscale("log")
    if metric in FRACTION_METRICS:
        axis.set_major_formatter(FractionPercent())
    elif metric in RATIO_METRICS:
        axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}×"))
        if log:
            axis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}×" if _nice(v) else ""))


class FractionPercent(Formatter):
    """Fractions as percent ticks with as few decimals as the ticks need to read exactly
    (97%, 97.5%): a tick at 92.5% is never written 92%."""

    MAX_DECIMALS = 4
    _ticks: tuple[float, ...] = ()

    def set_locs(self, locs) -> None:
        self._ticks = tuple(sorted(locs))

    def __call__(self, x, pos=None) -> str:
        percents = [100 * v for v in self._ticks] or [100 * x]
        scale = max((abs(p) for p in percents), default=1.0) or 1.0
        decimals = next((d for d in range(self.MAX_DECIMALS + 1)
                         if all(abs(round(p, d) - p) <= 1e-9 * max(scale, 1.0) for p in percents)), self.MAX_DECIMALS)
        return f"{100 * x:.{decimals}f}%"


def _nice(v: float) -> bool:
    if v <= 0:
        return False
    mantissa = v / 10 ** math.floor(math.log10(v))
    return round(mantissa, 6) in (2.0, 5.0)


def save_figure(fig: Figure, out_dir: str, stem: str, formats: Sequence[str] = FORMATS) -> list[str]:
    """Write ``stem.png`` and ``stem.svg`` into ``out_dir``; returns the paths."""
    paths = []
    for fmt in formats:
        path = os.path.join(out_dir, f"{stem}.{fmt}")
        fig.savefig(path, format=fmt, dpi=PNG_DPI if fmt == "png" else None, metadata=_metadata(fmt))
        paths.append(path)
    return paths


def _metadata(fmt: str) -> dict:
    # no creation date in the files: re-running the analysis gives identical figures
    if fmt == "svg":
        return {"Date": None}
    if fmt == "png":
        return {"Software": None}
    return {}

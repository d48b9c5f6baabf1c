"""The figures and the report as a new user reads them: every text inside the figure, legends
that leave the axes the figure's width, units on the axes, the rank heatmap's maximum ranks and
Tucker-2 colour, a colour per learning curve, and a front table that fits a 1280 px window."""
from __future__ import annotations

import html
import re

import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg, RendererAgg
from matplotlib.font_manager import FontProperties
from matplotlib.text import Text

from analysis.plots import (_get_hypervolume_info, _get_learning_curves_info, _get_pareto_front_info,
                            _get_rank_heatmap_info, plot_hypervolume, plot_learning_curves, plot_pareto_front,
                            plot_rank_heatmap)
from analysis.plots._common import PNG_DPI, FractionPercent
from analysis.report import CSS, front_table_html
from rank_search import schema

ACC, MACS = schema.VAL_ACCURACY, schema.MACS_COMPRESSION
OBJECTIVES = ((ACC, "max"), (MACS, "max"))
METHODS = ("deeptwist", "elrt", "lrpet", "posthoc", "trp")


def sweep(prefix: str, n: int = 12, shift: float = 0.0) -> pd.DataFrame:
    """A sweep's trials spread like a real one: every method, accuracy falling with compression."""
    return pd.DataFrame({
        "trial_id": [f"{prefix}{i:07x}" for i in range(n)],
        "config/method": [METHODS[i % len(METHODS)] for i in range(n)],
        ACC: [0.98 - 0.004 * i - (0.03 if i % 3 == 0 else 0.0) + shift for i in range(n)],
        MACS: [1.5 + 0.75 * i for i in range(n)],
        "finished": [True] * (n - 1) + [False],
    })


def drawn(fig):
    fig.set_dpi(PNG_DPI)  # as saved: text sizes are in points, the layout in inches
    FigureCanvasAgg(fig).draw()
    return fig, fig.canvas.get_renderer()


def undrawn_tick_labels(fig) -> set[int]:
    """Labels of ticks outside their axis' view (matplotlib keeps them but does not draw them)."""
    found = set()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            lo, hi = sorted(axis.get_view_interval())
            slack = 1e-9 * max(abs(lo), abs(hi), 1.0)
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                if not lo - slack <= tick.get_loc() <= hi + slack:
                    found |= {id(tick.label1), id(tick.label2)}
    return found


def outside(fig) -> list[str]:
    """The drawn, non-empty texts of a figure that reach past its edge (1 px slack)."""
    fig, renderer = drawn(fig)
    box = fig.bbox
    undrawn = undrawn_tick_labels(fig)
    found = []
    for text in fig.findobj(Text):
        if not text.get_visible() or not text.get_text().strip() or id(text) in undrawn:
            continue
        ext = text.get_window_extent(renderer)
        if ext.x0 < box.x0 - 1 or ext.y0 < box.y0 - 1 or ext.x1 > box.x1 + 1 or ext.y1 > box.y1 + 1:
            found.append(text.get_text())
    return found


# -- axis ticks --------------------------------------------------------------------------------


@pytest.mark.parametrize(("locs", "expected"), [
    ((0.9, 0.925, 0.95, 0.975), ["90.0%", "92.5%", "95.0%", "97.5%"]),
    ((0.9, 0.95, 1.0), ["90%", "95%", "100%"]),
    ((0.97, 0.9725, 0.975), ["97.00%", "97.25%", "97.50%"]),
])
def test_percent_ticks_read_exactly(locs, expected) -> None:
    fmt = FractionPercent()
    fmt.set_locs(list(locs))
    assert [fmt(v) for v in locs] == expected


# -- the Pareto front --------------------------------------------------------------------------


@pytest.mark.parametrize("labels", [("default",), ("default", "uniform-grid"), ("a-long-sweep-label", "b", "c"),
                                    ("demo-default-16-s0", "demo-uniform-grid-16-s0")])  # folder names
def test_pareto_front_keeps_its_texts_inside_and_the_axes_wide(labels) -> None:
    sweeps = {label: sweep(f"{i}", shift=-0.01 * i) for i, label in enumerate(labels)}
    fig = plot_pareto_front(_get_pareto_front_info(sweeps, OBJECTIVES))
    assert outside(fig) == []  # the title's first letter included
    fig, renderer = drawn(fig)
    (ax,) = fig.axes
    # the axes take the figure's width: no column of legends leaving a blank band beside them
    assert ax.get_position().width >= 0.8
    axes_box = ax.get_window_extent(renderer)
    for legend in fig.legends:
        box = legend.get_window_extent(renderer)
        assert fig.bbox.x0 <= box.x0 and box.x1 <= fig.bbox.x1 and fig.bbox.y0 <= box.y0 and box.y1 <= fig.bbox.y1
        assert box.y1 <= axes_box.y0  # below the axes, not beside them
    (legend,) = fig.legends
    texts = [t.get_text() for t in legend.get_texts()]
    assert set(METHODS) <= set(texts) and "colour = method" in texts
    assert sum(t.startswith("front of ") for t in texts) == (len(labels) if len(labels) > 1 else 0)


def test_pareto_front_of_three_objectives_keeps_its_subtitle_inside() -> None:
    t = sweep("a").assign(x=range(12))
    fig = plot_pareto_front(_get_pareto_front_info({"a": t}, OBJECTIVES + (("x", "min"),)))
    assert outside(fig) == []
    assert "front over 3 objectives" in fig.axes[0].get_title()


# -- hypervolume -------------------------------------------------------------------------------


def test_hypervolume_axis_names_its_unit() -> None:
    info = _get_hypervolume_info({"a": sweep("a"), "b": sweep("b")}, OBJECTIVES, [0.0, 1.0])
    assert info.unit == "val. accuracy (fraction 0-1) × MACs compression (×)"
    fig = plot_hypervolume(info)
    assert f"unit: {info.unit}" in fig.axes[0].get_ylabel()
    assert outside(fig) == []
    three = ((ACC, "max"), (schema.COMPACT_PARAMS, "min"), ("custom", "max"))
    t = sweep("a").assign(**{schema.COMPACT_PARAMS: range(100, 112), "custom": 1.0})
    assert _get_hypervolume_info({"a": t}, three, [0.0, 200, 0.0]).unit == \
        "val. accuracy (fraction 0-1) × compact params (parameters) × custom"


# -- rank heatmap ------------------------------------------------------------------------------


def heat_front() -> pd.DataFrame:
    return pd.DataFrame([
        {"trial_id": "a", "config/method": "deeptwist", ACC: 0.98, MACS: 1.5, "knee": False},
        {"trial_id": "b", "config/method": "posthoc", ACC: 0.96, MACS: 9.0, "knee": True},
    ])


def heat_records(ratios_of_b: dict | None = None) -> dict:
    return {
        "a": {"ranks": {"layers": {"conv": {"scheme": "tucker2", "rank": [44, 22]},
                                   "fc": {"scheme": "channel", "rank": 203}}},
              schema.RANK_RATIOS_KEY: {"conv": 0.6875, "fc": 0.792969}},
        "b": {"ranks": {"layers": {"conv": {"scheme": "channel", "rank": 4}, "fc": {"scheme": "channel", "rank": 17}}},
              schema.RANK_RATIOS_KEY: ratios_of_b or {"conv": 0.0625, "fc": 0.066406}},
    }


PROFILE = [  # sensitivity.csv rows as read: strings
    {"layer": "conv", "scheme": "channel", "ratio": "0.5", "rank": "32"},
    {"layer": "conv", "scheme": "channel", "ratio": "1.0", "rank": "64"},
    {"layer": "conv", "scheme": "tucker2", "ratio": "1.0", "rank": "64x32"},
    {"layer": "fc", "scheme": "channel", "ratio": "1.0", "rank": "256"},
]


def test_rank_heatmap_shows_each_layers_max_rank_and_what_a_tucker2_colour_is() -> None:
    info = _get_rank_heatmap_info(heat_front(), OBJECTIVES, run_records=heat_records(), profile=PROFILE)
    assert info.schemes == (("tucker2", "channel"), ("channel", "channel")) and info.has_tucker2
    assert info.max_ranks == ((("channel", "64"), ("tucker2", "64×32")), (("channel", "256"),))
    fig = plot_rank_heatmap(info)
    assert outside(fig) == []
    ax = fig.axes[0]
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert ticks == ["conv\nmax 64 (channel)\nmax 64×32 (tucker2)", "fc\nmax 256"]
    assert "Tucker-2 cell: the mean of its out and in ratios" in ax.get_title()
    # without Tucker-2 cells the note says nothing about them
    plain = _get_rank_heatmap_info(heat_front().iloc[1:], OBJECTIVES, run_records=heat_records(), profile=PROFILE)
    assert not plain.has_tucker2 and "Tucker-2" not in plot_rank_heatmap(plain).axes[0].get_title()


def test_rank_heatmap_derives_a_max_rank_only_where_the_rounded_ratio_allows_one() -> None:
    # no profile: 203 / 0.792969 and 17 / 0.066406 both round to 256 only; 4 / 0.0625 = 64;
    # a Tucker-2 ratio (the mean of two) names no maximum
    info = _get_rank_heatmap_info(heat_front(), OBJECTIVES, run_records=heat_records())
    assert info.max_ranks == ((("channel", "64"),), (("channel", "256"),))
    # rank 4 at ratio 0.000244 (rounded to 6 decimals) fits any maximum from 16360 to 16427: none is shown
    vague = _get_rank_heatmap_info(heat_front().iloc[1:], OBJECTIVES,
                                   run_records=heat_records({"conv": 0.000244, "fc": 0.066406}))
    assert vague.max_ranks == ((), (("channel", "256"),))


# -- learning curves ---------------------------------------------------------------------------


def test_learning_curves_give_each_trial_its_own_colour() -> None:
    front = pd.DataFrame({"trial_id": ["p1", "p2", "p3", "t1"], "config/method": ["posthoc"] * 3 + ["trp"],
                          "knee": [False, True, False, False]})
    histories = {"p1": [{"epoch": 1, ACC: 0.95}, {"epoch": 2, ACC: 0.974}],
                 "p2": [{"epoch": 1, ACC: 0.92}, {"epoch": 2, ACC: 0.964}],
                 "p3": [{"epoch": 1, ACC: 0.95}, {"epoch": 2, ACC: 0.974}],  # p1 again (a re-suggested config)
                 "t1": [{"epoch": 1, ACC: 0.91}, {"epoch": 2, ACC: 0.966}]}
    info = _get_learning_curves_info(front, histories)
    assert [c.same_as for c in info.curves] == [None, None, "p1", None]
    fig = plot_learning_curves(info)
    assert outside(fig) == []
    lines = fig.axes[0].get_lines()
    assert len({line.get_color() for line in lines}) == 4  # one method, three colours
    assert [line.get_marker() for line in lines][:3] == [lines[0].get_marker()] * 3  # marker = method
    assert lines[3].get_marker() != lines[0].get_marker()
    assert lines[2].get_linestyle() == ":"  # dotted over p1's curve, so both show
    assert "p3 posthoc, same curve as p1" in [t.get_text() for t in fig.legends[0].get_texts()]


# -- the report's front table ------------------------------------------------------------------


def css_rules() -> dict[str, str]:
    return {sel.strip(): body for sel, body in re.findall(r"([^{}]+)\{([^}]*)\}", CSS)}


def real_front() -> pd.DataFrame:
    """The front table of the default objectives, as ``analyze`` shows it (values of a real sweep)."""
    return pd.DataFrame({
        "trial_id": ["947d75f8", "09e8261a"], "config/method": ["deeptwist", "posthoc"],
        "status": ["TERMINATED"] * 2, ACC: [0.978, 0.964], MACS: [1.5007, 9.0058],
        schema.TEST_ACCURACY: [0.961, 0.959], schema.PARAMS_COMPRESSION: [1.0675, 11.2643],
        schema.COMPACT_MACS: [7837536, 1305984], schema.COMPACT_PARAMS: [330690, 31338],
        "epochs_run": [2, 2], "knee": [False, True]})


COLUMNS = ["trial_id", "config/method", "status", ACC, MACS, schema.TEST_ACCURACY, schema.PARAMS_COMPRESSION,
           schema.COMPACT_MACS, schema.COMPACT_PARAMS, "epochs_run", "knee"]


def test_front_table_markup_wraps_and_scrolls_in_its_own_box() -> None:
    rules = css_rules()
    table = front_table_html(real_front(), COLUMNS)
    assert table.startswith('<div class="table-wrap"><table class="front">')
    assert "overflow-x: auto" in rules[".table-wrap"] and "table-layout: auto" in rules["table"]
    assert "width: 100%" in rules["table.front"]
    # no cell of a front table breaks, so no word is cut (issue 28: `TERMINATE/D` at 1280 px, one
    # character per line at 390 px); a table wider than the window scrolls in its wrapper
    assert "white-space: nowrap" in rules["table.front th, table.front td"]
    assert not [sel for sel, body in rules.items() if "anywhere" in body or "break-all" in body]
    assert "white-space: normal" in rules["table.facts th, table.facts td"]  # facts wrap at spaces only
    assert "overflow-wrap: normal" in rules["table.facts th, table.facts td"]
    heads = re.findall(r'<th class="\w+" title="([^"]*)">(.*?)</th>', table)
    assert ("params_compression", "param.<br>compression") in heads and ("val_accuracy", "val.<br>accuracy") in heads
    assert ("trial_id", "trial") in heads  # one word: one line


def test_front_table_fits_a_1280px_window() -> None:
    """Auto table layout never makes a table narrower than the sum of its columns' narrowest
    widths (min-content): measured here in DejaVu Sans (what ``system-ui`` falls back to on a
    bare Linux browser), 0.85 em of 16 px, it must fit the page's 1200 px at a 1280 px window."""
    rules = css_rules()
    pad = float(re.search(r"padding: \d+px (\d+)px", rules["th, td"]).group(1))
    renderer = RendererAgg(10, 10, 72)

    def width(text: str, bold: bool) -> float:
        prop = FontProperties(family="DejaVu Sans", size=16 * 0.85, weight="bold" if bold else "normal")
        return renderer.get_text_width_height_descent(text, prop, ismath=False)[0] if text else 0.0

    table = front_table_html(real_front(), COLUMNS)
    columns: list[float] = []
    for attrs, row in re.findall(r"<tr([^>]*)>(.*?)</tr>", table):
        cells = re.findall(r'<(th|td) class="(\w+)"[^>]*>(.*?)</\1>', row)
        for i, (tag, cls, text) in enumerate(cells):
            bold = tag == "th" or "knee" in attrs
            # cells never wrap (see the markup test); a heading breaks only at its own <br>
            need = max(width(html.unescape(line), bold) for line in text.split("<br>"))
            need += 2 * pad + 1
            if i < len(columns):
                columns[i] = max(columns[i], need)
            else:
                columns.append(need)
    assert len(columns) == len(COLUMNS)
    assert sum(columns) <= 1200 - 40, [round(c) for c in columns]  # some room for a wider font

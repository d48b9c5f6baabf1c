"""Plot data (`_get_..._info`) on hand-made trial tables, and renderers writing PNG + SVG."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis._labels import format_value, metric_label, slug
from analysis.plots import (_get_hypervolume_info, _get_learning_curves_info, _get_pareto_front_info,
                            _get_rank_heatmap_info, plot_hypervolume, plot_learning_curves, plot_pareto_front,
                            plot_rank_heatmap, save_figure)
from analysis.ranks import rank_text, record_groups
from analysis.report import ReportFigure, ReportSweep, front_table_html, render_report
from rank_search import schema

ACC, MACS = schema.VAL_ACCURACY, schema.MACS_COMPRESSION
OBJECTIVES = ((ACC, "max"), (MACS, "max"))
NAN = math.nan


def trials_table() -> pd.DataFrame:
    return pd.DataFrame({
        "trial_id": ["t1", "t2", "t3", "t4", "t5", "t6"],
        "config/method": ["trp", "elrt", "trp", "full", "trp", "elrt"],
        ACC: [0.92, 0.80, 0.85, 0.95, NAN, 0.99],
        MACS: [2.0, 4.0, 1.5, 1.0, NAN, 9.0],
        schema.DIVERGED: [False, False, False, False, None, True],
        "finished": [True, True, False, True, False, True],
        "started": [10.0, 20.0, 30.0, 40.0, 50.0, 60.0],
        "status": ["TERMINATED"] * 2 + ["RUNNING"] + ["TERMINATED"] + ["PENDING", "TERMINATED"],
    })


# -- Pareto front ----------------------------------------------------------------------------


def test_pareto_front_info_single_sweep() -> None:
    info = _get_pareto_front_info({"a": trials_table()}, OBJECTIVES)
    assert (info.x_metric, info.y_metric) == (MACS, ACC)
    assert info.x_label == "MACs compression (×, dense / compact)" and info.y_label == "validation accuracy (%)"
    assert info.methods == ("elrt", "full", "trp")  # diverged and metric-less trials left out
    assert not info.x_log and not info.y_log
    (sweep,) = info.sweeps
    assert sweep.label == "a" and sweep.n_trials == 6
    assert [(p.trial_id, p.method, p.x, p.y, p.on_front, p.finished) for p in sweep.points] == [
        ("t1", "trp", 2.0, 0.92, True, True), ("t2", "elrt", 4.0, 0.80, True, True),
        ("t3", "trp", 1.5, 0.85, False, False), ("t4", "full", 1.0, 0.95, True, True)]
    assert sweep.path == ((1.0, 0.95), (1.0, 0.92), (2.0, 0.92), (2.0, 0.80), (4.0, 0.80))
    assert sweep.knee.trial_id == "t1"


def test_pareto_front_info_overlays_sweeps_and_picks_log_scale() -> None:
    b = pd.DataFrame({"trial_id": ["u1", "u2"], "config/method": ["lrpet", "lrpet"], ACC: [0.7, 0.6],
                      MACS: [12.0, 30.0]})
    info = _get_pareto_front_info({"a": trials_table(), "b": b}, OBJECTIVES)
    assert [s.label for s in info.sweeps] == ["a", "b"]
    assert info.methods == ("elrt", "full", "lrpet", "trp")
    assert info.x_log  # 1x .. 30x
    assert info.sweeps[1].path == ((12.0, 0.7), (12.0, 0.6), (30.0, 0.6))
    assert all(p.finished for p in info.sweeps[1].points)  # no `finished` column: taken as finished


def test_pareto_front_info_three_objectives_and_empty_sweeps() -> None:
    t = trials_table().assign(**{schema.COMPACT_PARAMS: [50, 10, 5, 100, NAN, 1]})
    info = _get_pareto_front_info({"a": t}, OBJECTIVES + ((schema.COMPACT_PARAMS, "min"),))
    (sweep,) = info.sweeps
    assert sweep.path == ()  # no staircase beyond two objectives
    assert [p.on_front for p in sweep.points] == [True, True, True, True]  # t3 has the fewest params
    empty = _get_pareto_front_info({"e": pd.DataFrame(), "n": trials_table().iloc[4:5]}, OBJECTIVES)
    assert [(s.points, s.knee, s.n_trials) for s in empty.sweeps] == [((), None, 0), ((), None, 1)]
    with pytest.raises(ValueError, match="needs at least 2 objectives"):
        _get_pareto_front_info({"a": t}, OBJECTIVES[:1])


# -- hypervolume -----------------------------------------------------------------------------


def test_hypervolume_info_follows_start_order() -> None:
    t = trials_table().sample(frac=1.0, random_state=3)  # table order must not matter
    info = _get_hypervolume_info({"a": t}, OBJECTIVES, [0.0, 1.0])
    (curve,) = info.curves
    assert curve.trial_ids == ("t1", "t2", "t3", "t4", "t5", "t6")
    # t1: 0.92 x 1; t2 adds 0.8 x (3 - 1); t3 dominated; t4 no gain over the dense reference;
    # t5 reported nothing; t6 diverged (left out although it would dominate everything)
    np.testing.assert_allclose(curve.values, [0.92, 2.52, 2.52, 2.52, 2.52, 2.52])
    assert curve.final == pytest.approx(2.52)
    assert info.reference_text == "val_accuracy=0, macs_compression=1"
    assert _get_hypervolume_info({"e": pd.DataFrame()}, OBJECTIVES, [0.0, 1.0]).curves[0].values == ()


# -- rank heatmap ----------------------------------------------------------------------------


def front_table(grouping: str = "per_layer", **ranks) -> pd.DataFrame:
    rows = [
        {"trial_id": "a", "config/method": "trp", ACC: 0.9, MACS: 2.0, "knee": True},
        {"trial_id": "b", "config/method": "full", ACC: 0.95, MACS: 1.0, "knee": False},
        {"trial_id": "c", "config/method": "trp", ACC: 0.8, MACS: 5.0, "knee": False},
    ]
    for i, row in enumerate(rows):
        row["config/space.grouping"] = grouping
        for group, values in ranks.items():
            row[f"config/rank.{group}"] = values[i]
    return pd.DataFrame(rows)


def record(layers: dict | None, groups: dict | None = None, grouping: str = "per_layer") -> dict:
    """A run record as a trial writes it: the integer plan and the layer -> rank group map it
    resolved (per_layer when not given: each layer its own group)."""
    out = {"model": "m", "method": "trp", "ranks": None if layers is None else {"layers": layers}}
    if layers is not None:
        out["groups"] = {"grouping": grouping, "layers": groups if groups is not None else {n: n for n in layers}}
    return out


def test_rank_heatmap_info_per_layer_with_run_records() -> None:
    front = front_table(conv1=[0.5, 0.9, 0.4], fc=[0.25, 0.9, 0.1])
    records = {"a": record({"conv1": {"scheme": "tucker2", "rank": [4, 2]}, "fc": {"scheme": "channel", "rank": 3}}),
               "b": record(None)}  # a dense run; "c" has no readable checkpoint
    info = _get_rank_heatmap_info(front, OBJECTIVES, label="s", run_records=records)
    assert info.columns == ("conv1", "fc") and not info.columns_are_groups
    assert info.trial_ids == ("a", "b", "c") and info.methods == ("trp", "full", "trp")
    assert info.values == ((0.5, 0.25), (1.0, 1.0), (0.4, 0.1))
    assert info.ranks == (("4×2", "3"), ("dense", "dense"), ("", ""))
    assert info.objective_values == ((0.9, 2.0), (0.95, 1.0), (0.8, 5.0))
    assert info.knee_row == 0 and info.label == "s"


def test_rank_heatmap_info_shares_group_values_and_orders_layers_by_model() -> None:
    layers = {"features.0": {"scheme": "channel", "rank": 2}, "features.3": {"scheme": "channel", "rank": 3},
              "classifier.1": {"scheme": "channel", "rank": 5}}
    stages = {"features.0": "features-16", "features.3": "features-16", "classifier.1": "classifier-10"}
    records = {t: record(layers, stages, "per_stage") for t in "abc"}
    stage = front_table("per_stage", **{"features-16": [0.5, 0.5, 0.2], "classifier-10": [0.3, 0.3, 0.6]})
    info = _get_rank_heatmap_info(stage, OBJECTIVES, run_records=records)
    assert info.columns == ("features.0", "features.3", "classifier.1")
    assert info.values[0] == (0.5, 0.5, 0.3) and info.values[2] == (0.2, 0.2, 0.6)
    # a layer left out of a trial's plan stays dense
    partial = record({"features.0": {"scheme": "channel", "rank": 2}, "classifier.1": layers["classifier.1"]},
                     stages, "per_stage")
    info = _get_rank_heatmap_info(stage, OBJECTIVES, run_records={**records, "c": partial})
    assert info.values[2] == (0.2, 1.0, 0.6) and info.ranks[2] == ("2", "dense", "5")

    uniform = front_table("uniform", all=[0.4, 0.4, 0.7])
    everything = {t: record(layers, {n: "all" for n in layers}, "uniform") for t in "abc"}
    assert _get_rank_heatmap_info(uniform, OBJECTIVES, run_records=everything).values[2] == (0.7, 0.7, 0.7)

    # two widths under one parent: layer names cannot tell the stages apart, the record's map does
    two = front_table("per_stage", **{"features-16": [0.5, 0.5, 0.2], "features-32": [0.1, 0.1, 0.9],
                                      "classifier-10": [0.3, 0.3, 0.6]})
    explicit = {"features.0": "features-16", "features.3": "features-32", "classifier.1": "classifier-10"}
    info = _get_rank_heatmap_info(two, OBJECTIVES, run_records={t: record(layers, explicit, "per_stage")
                                                                 for t in "abc"})
    assert info.values[2] == (0.2, 0.9, 0.6)
    # a record without a group map (written before groups were recorded) leaves its cells unknown
    blank = _get_rank_heatmap_info(two, OBJECTIVES, run_records={"c": {"ranks": {"layers": layers}}})
    assert all(math.isnan(v) for v in blank.values[2]) and blank.ranks[2] == ("2", "3", "5")


def test_rank_heatmap_info_without_checkpoints_uses_groups() -> None:
    front = front_table(**{"conv1": [0.5, 0.9, 0.4], "fc": [0.25, 0.9, 0.1]})
    info = _get_rank_heatmap_info(front, OBJECTIVES)
    assert info.columns == ("conv1", "fc") and info.columns_are_groups
    assert info.values == ((0.5, 0.25), (1.0, 1.0), (0.4, 0.1))  # `full` is dense
    assert _get_rank_heatmap_info(front.iloc[:0], OBJECTIVES).columns == ()


def test_record_groups_and_rank_text() -> None:
    assert record_groups(record({"a.0": {}, "b.1": {}}, {"a.0": "all", "b.1": "all"}, "uniform")) == {
        "a.0": "all", "b.1": "all"}
    assert record_groups(record(None)) == {} and record_groups(None) == {}
    assert record_groups({"groups": {"layers": "not a map"}}) == {}
    assert rank_text([8, 4]) == "8×4" and rank_text(7) == "7" and rank_text(None) == ""


# -- learning curves -------------------------------------------------------------------------


def test_learning_curves_info_last_report_of_an_epoch_wins() -> None:
    front = front_table(conv1=[0.5, 0.9, 0.4]).assign(finished=[True, True, False])
    histories = {
        "a": [{"epoch": 1, ACC: 0.5}, {"epoch": 2, ACC: 0.6}, {"epoch": 2, ACC: 0.65}, {"epoch": 3, ACC: 0.9}],
        "c": [{"epoch": 1, ACC: 0.4}, {"epoch": 2, "diverged": False}],  # epoch 2 without the metric
    }
    info = _get_learning_curves_info(front, histories, label="s")
    assert info.metric == ACC and info.metric_label == "validation accuracy (%)"
    assert [(c.trial_id, c.method, c.epochs, c.values, c.knee, c.finished) for c in info.curves] == [
        ("a", "trp", (1, 2, 3), (0.5, 0.65, 0.9), True, True), ("c", "trp", (1,), (0.4,), False, False)]


# -- renderers, labels and the report ----------------------------------------------------------


def _check_files(paths: list[str]) -> None:
    png, svg = paths
    with open(png, "rb") as fh:
        data = fh.read()
    assert data.startswith(b"\x89PNG") and len(data) > 5000
    with open(svg, encoding="utf-8") as fh:
        assert "<svg" in fh.read()


def test_renderers_write_png_and_svg(tmp_path) -> None:
    t = trials_table()
    b = t.assign(trial_id=t["trial_id"] + "b", **{MACS: t[MACS] * 1.5})
    front = front_table(conv1=[0.5, 0.9, 0.4], fc=[0.25, 0.9, 0.1])
    figures = {
        "pareto": plot_pareto_front(_get_pareto_front_info({"a": t, "b": b}, OBJECTIVES)),
        "pareto3": plot_pareto_front(_get_pareto_front_info(
            {"a": t.assign(x=[1, 2, 3, 4, 5, 6])}, OBJECTIVES + (("x", "min"),))),
        "hv": plot_hypervolume(_get_hypervolume_info({"a": t, "b": b}, OBJECTIVES, [0.0, 1.0])),
        "heat": plot_rank_heatmap(_get_rank_heatmap_info(front, OBJECTIVES)),
        "curves": plot_learning_curves(_get_learning_curves_info(front, {"a": [{"epoch": 1, ACC: 0.5}]})),
        "empty_pareto": plot_pareto_front(_get_pareto_front_info({"e": pd.DataFrame()}, OBJECTIVES)),
        "empty_heat": plot_rank_heatmap(_get_rank_heatmap_info(front.iloc[:0], OBJECTIVES)),
        "empty_curves": plot_learning_curves(_get_learning_curves_info(front, {})),
    }
    for name, fig in figures.items():
        paths = save_figure(fig, str(tmp_path), name)
        assert [p.rsplit(".", 1)[1] for p in paths] == ["png", "svg"]
        _check_files(paths)


def test_labels_and_formats() -> None:
    assert metric_label(ACC) == "validation accuracy (%)" and metric_label("custom") == "custom"
    assert format_value(ACC, 0.9731) == "97.3%" and format_value(MACS, 4.234) == "4.23×"
    assert format_value(schema.COMPACT_PARAMS, 12345.0) == "12,345" and format_value(ACC, None) == "-"
    assert slug("my sweep/2") == "my_sweep_2" and slug("..") == "sweep"


def test_report_is_self_contained_and_escaped() -> None:
    front = front_table(conv1=[0.5, 0.9, 0.4]).assign(status="TERMINATED")
    table = front_table_html(front, ["trial_id", "config/method", ACC, MACS, "knee", "missing"])
    assert table.count("<tr") == 4 and '<tr class="knee">' in table and "90.0%" in table and "2.00×" in table
    fig = ReportFigure("Pareto <front>", "caption & more", b"\x89PNGfake")
    html = render_report(title="t", intro=[("sweeps", "a")], figures=[fig],
                         sweeps=[ReportSweep("a", "/x", [("trials", "3")], front, ["trial_id"], "launch: {}\n")],
                         summary_text="front <a>")
    assert "data:image/png;base64,iVBOR" in html and "Pareto &lt;front&gt;" in html
    assert "front &lt;a&gt;" in html and "<script" not in html and "src=\"http" not in html

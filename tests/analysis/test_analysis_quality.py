"""Quality measures (dense reference, log hypervolume above dense - 5 pt, best accuracy at each
compression) and the sensitivity profile figure: hand-made trial tables and experiment folders."""
from __future__ import annotations

import csv
import io
import math
import os

import pandas as pd
import pytest
import yaml

from analysis.loading import Experiment, load_experiment, read_profile
from analysis.plots import _get_sensitivity_info, plot_sensitivity, save_figure
from analysis.quality import best_accuracy_at, dense_accuracy, dense_reference, log_hypervolume, quality
from rank_search import schema
from rank_search.cli import main
from test_analysis_loading import make_experiment

ACC, TEST, MACS = schema.VAL_ACCURACY, schema.TEST_ACCURACY, schema.MACS_COMPRESSION
NAN = math.nan
LEVELS = (2, 4, 8, 16, 32, 64)


def trials_table() -> pd.DataFrame:
    """Two trials that count (4x at 75%, 16x at 62.5%: floats exact in binary) and five that
    add nothing above a floor of 50%: dense-sized, larger than dense, below the floor,
    diverged, unfinished (the last two would dominate everything)."""
    return pd.DataFrame({
        "trial_id": ["a", "b", "dense", "bigger", "low", "diverged", "running", "nothing"],
        "config/method": ["trp", "trp", "full", "trp", "elrt", "elrt", "trp", "trp"],
        ACC: [0.75, 0.625, 0.875, 0.9, 0.375, 0.99, 0.99, NAN],
        TEST: [0.5, 0.75, 0.8125, 0.9, 0.25, 0.99, 0.99, NAN],
        MACS: [4.0, 16.0, 1.0, 0.5, 32.0, 64.0, 64.0, NAN],
        schema.DIVERGED: [False, False, False, False, False, True, False, None],
        "finished": [True, True, True, True, True, True, False, False],
    })


def write_dense(exp, record) -> None:
    (exp / schema.DENSE_RECORD_FILE).write_text(record if isinstance(record, str) else yaml.safe_dump(record))


# -- log hypervolume and best accuracy at each level ---------------------------------------


def test_log_hypervolume_of_two_trials_is_exact() -> None:
    # (log2 4, 0.75) and (log2 16, 0.625) above (0, 0.5): 2 * 0.25 + (4 - 2) * 0.125
    assert log_hypervolume(trials_table(), floor=0.5) == 0.75
    # above 70% only the 4x trial counts
    assert log_hypervolume(trials_table(), floor=0.7) == pytest.approx(2 * 0.05, abs=1e-15)
    assert log_hypervolume(trials_table(), floor=0.8) == 0.0  # every usable compressed trial below it
    # on another accuracy column: (2, 0.5) and (4, 0.75) above 0.25 -> the 16x trial dominates
    assert log_hypervolume(trials_table(), floor=0.25, accuracy=TEST) == 4 * 0.5


def test_log_hypervolume_without_usable_trials() -> None:
    t = trials_table()
    assert log_hypervolume(t[t["trial_id"].isin(["dense", "diverged", "running"])], floor=0.0) == 0.0
    assert log_hypervolume(pd.DataFrame(), floor=0.5) == 0.0


def test_best_accuracy_at_each_level_with_none() -> None:
    t = trials_table()
    assert best_accuracy_at(t, LEVELS) == {2.0: 0.75, 4.0: 0.75, 8.0: 0.625, 16.0: 0.625, 32.0: 0.375, 64.0: None}
    assert best_accuracy_at(t, LEVELS, accuracy=TEST) == {2.0: 0.75, 4.0: 0.75, 8.0: 0.75, 16.0: 0.75,
                                                          32.0: 0.25, 64.0: None}
    assert best_accuracy_at(pd.DataFrame(), (2,)) == {2.0: None}
    assert list(best_accuracy_at(t)) == [2.0, 4.0, 8.0, 16.0, 32.0]  # the default levels


# -- dense reference ------------------------------------------------------------------------


def test_dense_accuracy_from_dense_yaml(tmp_path) -> None:
    path = make_experiment(tmp_path)
    write_dense(path, {"source": "trained", ACC: 0.97, TEST: 0.96, "seconds": 3.0})
    exp = load_experiment(str(path))
    assert dense_accuracy(exp) == 0.97 and dense_accuracy(exp, TEST) == 0.96
    assert dense_reference(exp).source == "dense.yaml (trained)"
    uri = load_experiment(f"file://{path}")  # read through rank_search.storage
    assert dense_accuracy(uri) == 0.97


@pytest.mark.parametrize("record", [None, "val_accuracy: [0.9", "- 0.9\n- 0.8\n", {ACC: "high", TEST: True}])
def test_dense_accuracy_falls_back_to_the_best_finished_full_trial(tmp_path, record) -> None:
    # missing, corrupt, not a mapping, not numbers: the full trial c (95%) is the reference
    path = make_experiment(tmp_path)
    if record is not None:
        write_dense(path, record)
    exp = load_experiment(str(path))
    assert dense_reference(exp) == (0.95, "best full trial c")
    assert dense_accuracy(exp, TEST) is None  # no trial reported test accuracy


def test_dense_accuracy_partly_from_dense_yaml(tmp_path) -> None:
    path = make_experiment(tmp_path)
    write_dense(path, {ACC: 0.97})
    exp = load_experiment(str(path))
    assert dense_accuracy(exp) == 0.97 and dense_reference(exp).source == "dense.yaml"
    assert dense_accuracy(exp, TEST) is None


def test_dense_trial_is_chosen_on_validation_and_must_be_finished(tmp_path) -> None:
    t = trials_table()
    extra = pd.DataFrame({"trial_id": ["dense2", "dense3", "dense4"], "config/method": ["full"] * 3,
                          ACC: [0.9, 0.99, 0.999], TEST: [0.7, 0.99, 0.999], MACS: [1.0] * 3,
                          schema.DIVERGED: [False, False, True], "finished": [True, False, True]})
    exp = Experiment(str(tmp_path), None, pd.concat([t, extra], ignore_index=True))
    assert dense_reference(exp) == (0.9, "best full trial dense2")  # dense3 unfinished, dense4 diverged
    assert dense_accuracy(exp, TEST) == 0.7  # the test accuracy of the trial best on validation
    assert dense_accuracy(Experiment(str(tmp_path), None, t[t["config/method"] != "full"])) is None
    assert dense_accuracy(Experiment(str(tmp_path), None, pd.DataFrame())) is None


# -- quality --------------------------------------------------------------------------------


def test_quality_with_a_dense_reference(tmp_path) -> None:
    write_dense(tmp_path, {"source": "given", ACC: 0.75, TEST: 0.5})
    q = quality(Experiment(str(tmp_path), None, trials_table()), margin=0.25)
    assert (q.dense_accuracy, q.dense_test_accuracy, q.dense_source) == (0.75, 0.5, "dense.yaml (given)")
    assert q.floor == 0.5 and q.floor_from_dense and q.log_hypervolume == 0.75
    assert q.best_val == {2.0: 0.75, 4.0: 0.75, 8.0: 0.625, 16.0: 0.625, 32.0: 0.375}
    assert q.best_test == {2.0: 0.75, 4.0: 0.75, 8.0: 0.75, 16.0: 0.75, 32.0: 0.25}
    assert q.row() == {
        "dense_val_accuracy": 0.75, "dense_test_accuracy": 0.5, "dense_source": "dense.yaml (given)", "margin": 0.25,
        "floor": 0.5, "floor_from": "dense", "log_hypervolume": 0.75,
        "best_val_accuracy_at_2x": 0.75, "best_val_accuracy_at_4x": 0.75, "best_val_accuracy_at_8x": 0.625,
        "best_val_accuracy_at_16x": 0.625, "best_val_accuracy_at_32x": 0.375,
        "best_test_accuracy_at_2x": 0.75, "best_test_accuracy_at_4x": 0.75, "best_test_accuracy_at_8x": 0.75,
        "best_test_accuracy_at_16x": 0.75, "best_test_accuracy_at_32x": 0.25,
        # the test accuracy of the trial best on validation: a at 2x and 4x, b at 8x and 16x, low at 32x
        "test_accuracy_of_best_val_at_2x": 0.5, "test_accuracy_of_best_val_at_4x": 0.5,
        "test_accuracy_of_best_val_at_8x": 0.75, "test_accuracy_of_best_val_at_16x": 0.75,
        "test_accuracy_of_best_val_at_32x": 0.25}
    assert q.trial_of_best_val == {2.0: "a", 4.0: "a", 8.0: "b", 16.0: "b", 32.0: "low"}


def test_quality_default_floor_is_five_points_below_dense(tmp_path) -> None:
    q = quality(Experiment(str(tmp_path), None, trials_table()))  # dense: the full trial, 87.5%
    assert q.dense_source == "best full trial dense" and q.floor == 0.825
    assert q.log_hypervolume == 0.0  # no compressed trial within 5 points of dense


def test_quality_floor_falls_back_to_the_best_trial(tmp_path) -> None:
    t = trials_table()
    q = quality(Experiment(str(tmp_path), None, t[t["config/method"] != "full"]), margin=0.125)
    # no dense reference: the best usable trial (bigger, 90%) minus the margin
    assert q.dense_accuracy is None and q.dense_source is None and not q.floor_from_dense
    assert q.floor == 0.775 and q.row()["floor_from"] == "best trial"
    assert q.log_hypervolume == 0.0
    empty = quality(Experiment(str(tmp_path), None, pd.DataFrame()))
    assert empty.floor is None and empty.log_hypervolume == 0.0 and empty.row()["floor_from"] is None
    assert set(empty.best_val.values()) == {None}


def test_quality_rejects_a_negative_margin(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"margin must be a finite number >= 0, got -0.05"):
        quality(Experiment(str(tmp_path), None, trials_table()), margin=-0.05)


# -- sensitivity profile --------------------------------------------------------------------

PROFILE_COLUMNS = ("layer,scheme,ratio,rank,val_accuracy,val_loss,macs,layer_macs,energy,opnorm_error,"
                   "ft_val_accuracy,ft_val_loss")
# model order: features before classifier; rows of a layer not sorted by ratio
PROFILE_CSV = f"""{PROFILE_COLUMNS}
features.3,channel,0.5,8,0.875,0.4,900,400,0.9,0.3,,
features.3,channel,0.25,4,0.5,1.2,700,200,0.7,0.6,,
features.3,channel,1.0,16,0.9375,0.2,1000,500,1.0,0.0,,
classifier.1,channel,0.25,30,0.75,0.7,850,50,0.8,0.5,,
classifier.1,channel,0.5,60,0.9,0.3,900,100,0.95,0.2,,
classifier.1,channel,1.0,120,0.9375,0.2,1000,200,1.0,0.0,,
"""
PROFILE_META = {"dense_val_accuracy": 0.9375, "dense_val_loss": 0.2, "input_shape": [1, 8, 8],
                "proxies": ["bn", "energy"]}


def profile_rows(text: str = PROFILE_CSV) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_sensitivity_info_from_a_csv() -> None:
    info = _get_sensitivity_info(profile_rows(), PROFILE_META, label="exp")
    assert (info.label, info.proxy, info.column, info.dense) == ("exp", "bn", ACC, 0.9375)
    assert info.y_label == "validation accuracy after BatchNorm re-estimation (%)"
    assert info.layers == ("features.3", "classifier.1") and info.schemes == ("channel",)
    assert [(c.layer, c.ratios, c.values) for c in info.curves] == [
        ("features.3", (0.25, 0.5, 1.0), (0.5, 0.875, 0.9375)),
        ("classifier.1", (0.25, 0.5, 1.0), (0.75, 0.9, 0.9375))]


def _with(column_values: dict[str, str]) -> str:
    """The profile with some columns blanked or replaced (a proxy not measured)."""
    rows = profile_rows()
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=PROFILE_COLUMNS.split(","))
    writer.writeheader()
    for i, row in enumerate(rows):
        writer.writerow({**row, **{k: (v[i] if isinstance(v, list) else v) for k, v in column_values.items()}})
    return out.getvalue()


def test_sensitivity_info_falls_back_to_finetune_then_energy() -> None:
    ft = ["0.8", "0.6", "0.9", "0.7", "0.85", "0.9"]
    info = _get_sensitivity_info(profile_rows(_with({ACC: "", "ft_val_accuracy": ft})), {})
    # no dense value in the meta: the row at ratio 1.0 (the layer left dense)
    assert (info.proxy, info.column, info.dense) == ("finetune", "ft_val_accuracy", 0.9)
    assert info.curves[0].values == (0.6, 0.8, 0.9)
    info = _get_sensitivity_info(profile_rows(_with({ACC: "", "ft_val_accuracy": ft})),
                                 {"dense_ft_val_accuracy": 0.95})
    assert info.dense == 0.95
    info = _get_sensitivity_info(profile_rows(_with({ACC: ""})), PROFILE_META)
    assert (info.proxy, info.dense, info.y_label) == ("energy", 1.0, "kept spectral energy (%)")
    assert info.curves[1].values == (0.8, 0.95, 1.0)


def test_sensitivity_info_two_schemes_and_nothing_measured(tmp_path) -> None:
    tucker = PROFILE_CSV.replace("features.3,channel,", "features.3,tucker2,")
    info = _get_sensitivity_info(profile_rows(PROFILE_CSV + tucker.split("\n", 1)[1]), PROFILE_META)
    assert info.schemes == ("channel", "tucker2") and len(info.curves) == 3
    assert [(c.layer, c.scheme) for c in info.curves] == [
        ("features.3", "channel"), ("classifier.1", "channel"), ("features.3", "tucker2")]
    paths = save_figure(plot_sensitivity(info), str(tmp_path), "two_schemes")
    assert all(os.path.getsize(p) > 5000 for p in paths)
    empty = _get_sensitivity_info(profile_rows(_with({ACC: "", "energy": "", "ratio": "x"})), {})
    assert empty.proxy == "none" and empty.curves == () and empty.dense is None
    save_figure(plot_sensitivity(empty), str(tmp_path), "empty")


def test_read_profile_needs_both_readable_files(tmp_path) -> None:
    assert read_profile(str(tmp_path)) is None
    (tmp_path / schema.PROFILE_FILE).write_text(PROFILE_CSV)
    assert read_profile(str(tmp_path)) is None  # no sensitivity.yaml
    (tmp_path / schema.PROFILE_META_FILE).write_text(yaml.safe_dump(PROFILE_META))
    rows, meta = read_profile(str(tmp_path))
    assert len(rows) == 6 and rows[0]["layer"] == "features.3" and rows[0]["ft_val_accuracy"] == ""
    assert meta == PROFILE_META
    (tmp_path / schema.PROFILE_META_FILE).write_text("dense_val_accuracy: [")
    assert read_profile(str(tmp_path)) is None


# -- rank-search analyze --------------------------------------------------------------------


def _analyze(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["analyze", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_analyze_writes_quality_and_the_sensitivity_figure(tmp_path, capsys) -> None:
    profiled = make_experiment(tmp_path, "profiled")
    write_dense(profiled, {"source": "trained", ACC: 0.9, TEST: 0.875})
    (profiled / schema.PROFILE_FILE).write_text(PROFILE_CSV)
    (profiled / schema.PROFILE_META_FILE).write_text(yaml.safe_dump(PROFILE_META))
    plain = make_experiment(tmp_path, "plain")
    out = tmp_path / "out"
    code, stdout, stderr = _analyze(capsys, str(profiled), str(plain), "--out", str(out))
    assert code == 0, stderr
    stems = ["pareto_front", "hypervolume", "sensitivity-profiled",
             *(f"{kind}-{s}" for kind in ("rank_heatmap", "learning_curves") for s in ("profiled", "plain"))]
    assert set(os.listdir(out)) == {f"{s}.{ext}" for s in stems for ext in ("png", "svg")} | {
        "trials.csv", "pareto.csv", "quality.csv", "report.html"}
    assert (out / "sensitivity-profiled.png").stat().st_size > 5000

    rows = pd.read_csv(out / "quality.csv").set_index("sweep")
    assert list(rows.index) == ["profiled", "plain"]
    p, q = rows.loc["profiled"], rows.loc["plain"]
    # finished trials a (1.5x, 90%), b (3x, 80%), c (full, 1x, 95%); d is unfinished
    assert (p["dense_val_accuracy"], p["dense_test_accuracy"], p["dense_source"]) == (0.9, 0.875,
                                                                                     "dense.yaml (trained)")
    assert p["floor"] == 0.85 and p["floor_from"] == "dense"
    assert p["log_hypervolume"] == math.log2(1.5) * (0.9 - 0.85)  # b is below the floor
    # at >= 2x only b (d is unfinished); none reaches 4x; no trial reported test accuracy (empty = NaN)
    assert p["best_val_accuracy_at_2x"] == 0.8 and math.isnan(p["best_val_accuracy_at_4x"])
    assert math.isnan(p["best_test_accuracy_at_2x"])
    assert (q["dense_val_accuracy"], q["dense_source"]) == (0.95, "best full trial c")
    assert q["floor"] == 0.9 and q["log_hypervolume"] == 0.0  # a is at 90%: not above

    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 7 and "Layer sensitivity profile" in html
    assert "dense reference" in html and "val 90.0%, test 87.5%; from dense.yaml (trained)" in html
    assert "log hypervolume (log2 MACs ×, accuracy above dense - 5 pt)" in html
    assert "best val accuracy / the same trial&#x27;s test accuracy at &gt;= 2×, 4×, 8×, 16×, 32×" in html
    assert "2×: 80.0% / -; 4×: - / -" in html
    assert "  dense reference: val 90.0%, test 87.5%; from dense.yaml (trained)" in stdout
    assert f"  log hypervolume (log2 MACs ×, accuracy above dense - 5 pt): {math.log2(1.5) * (0.9 - 0.85):.4g} " \
           "(floor: val 85.0%)" in stdout
    assert "  dense reference: val 95.0%, test -; from best full trial c" in stdout
    assert "analyze: drawing the sensitivity profile of sweep profiled" in stderr


def test_report_lines_without_a_dense_reference(tmp_path) -> None:
    from analysis.analyze import _quality_facts

    t = trials_table()
    facts = dict(_quality_facts(quality(Experiment(str(tmp_path), None, t[t["config/method"] != "full"]))))
    assert facts["dense reference"] == "unknown (no dense.yaml with accuracies, no finished full trial)"
    assert facts["log hypervolume (log2 MACs ×, accuracy above dense - 5 pt)"] == \
        "0 (floor: val 85.0% = best trial - 5 pt, no dense reference)"
    # each pair from one trial (issue 28): a (75.0% val, 50.0% test) at 2x, not a's val with b's test
    assert facts["best val accuracy / the same trial's test accuracy at >= 2×, 4×, 8×, 16×, 32×"] == \
        "2×: 75.0% / 50.0%; 4×: 75.0% / 50.0%; 8×: 62.5% / 75.0%; 16×: 62.5% / 75.0%; 32×: 37.5% / 25.0%"
    empty = dict(_quality_facts(quality(Experiment(str(tmp_path), None, pd.DataFrame()))))
    assert empty["log hypervolume (log2 MACs ×, accuracy above dense - 5 pt)"] == "0 (no usable trial to set a floor)"

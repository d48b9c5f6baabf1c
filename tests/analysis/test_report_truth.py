"""The report and status say only what is so (issue 28): the rank mode in words (never `None
ranks`), no knee or "best" among unfinished trials, the dense line named with its split and
proxy, latency speed-ups flagged as single noisy timings."""
from __future__ import annotations

import pandas as pd
import pytest

from analysis._labels import dim_text, ranks_text
from analysis.analyze import Sweep, _facts
from analysis.loading import Experiment
from analysis.plots import _get_sensitivity_info
from analysis.quality import quality
from analysis.report import render_report
from analysis.summary import best_trials, front, status_text
from analysis.timing import latency_note, worst_disagreement
from rank_search import schema

ACC, TEST, MACS, SPEED = schema.VAL_ACCURACY, schema.TEST_ACCURACY, schema.MACS_COMPRESSION, schema.LATENCY_SPEEDUP

SENSITIVITY_RANKS = {"allocation": "sensitivity", "target": {"float": [1.5, 10.0], "log": True}, "proxy": "bn",
                     "allocations": ["sensitivity", "uniform"]}


@pytest.mark.parametrize("ranks,text", [
    (SENSITIVITY_RANKS, "sensitivity or uniform allocation, macs target 1.5-10x (log), proxy bn"),
    ({**SENSITIVITY_RANKS, "allocations": ["sensitivity"]}, "sensitivity allocation, macs target 1.5-10x (log), "
                                                            "proxy bn"),
    ({"allocation": "sensitivity", "target": 4.0, "allocations": ["uniform"], "budget": "latency"},
     "one uniform ratio per trial, latency target 4x"),
    ({"grouping": "per_stage", "ratio": {"float": [0.1, 0.9]}}, "per_stage ratios 0.1-0.9"),
    ({"grouping": "uniform", "ratio": [0.25, 0.5]}, "one ratio for every layer, one of 0.25, 0.5"),
    (None, "ranks not recorded"),
])
def test_ranks_text(ranks, text) -> None:
    assert ranks_text(ranks) == text


def test_dim_text() -> None:
    assert dim_text({"int": [2, 20], "log": True, "step": 2}) == "2-20 (log, step 2)"
    assert dim_text({"float": [1.5, 10.0]}, unit="x") == "1.5-10x"
    assert dim_text(["so", "dso"]) == "one of so, dso"


def trials(statuses: list[str]) -> pd.DataFrame:
    """Three trials on one front; the middle one (2x) is the knee of the three."""
    return pd.DataFrame({
        "trial_id": ["hi", "mid", "lo"], "config/method": ["trp"] * 3, "status": statuses,
        ACC: [0.98, 0.97, 0.80], TEST: [0.97, 0.96, 0.79], MACS: [1.2, 4.0, 8.0],
        schema.DIVERGED: [False] * 3, "finished": [s == "TERMINATED" for s in statuses]})


def test_the_knee_is_never_an_unfinished_trial(tmp_path) -> None:
    done = front(Experiment(str(tmp_path), None, trials(["TERMINATED"] * 3)))
    assert list(done.loc[done["knee"], "trial_id"]) == ["mid"]
    for status in ("RUNNING", "PENDING", "ERROR", schema.INTERRUPTED):
        f = front(Experiment(str(tmp_path), None, trials(["TERMINATED", status, "TERMINATED"])))
        assert "mid" in list(f["trial_id"])  # still shown on the front, with its status
        assert "mid" not in list(f.loc[f["knee"], "trial_id"])
        assert f["knee"].sum() == 1  # the knee of the finished trials
    nothing = front(Experiment(str(tmp_path), None, trials(["RUNNING"] * 3)))
    assert len(nothing) == 3 and not nothing["knee"].any()


def test_best_trials_are_finished_ones(tmp_path) -> None:
    exp = Experiment(str(tmp_path), None, trials(["RUNNING", "TERMINATED", "TERMINATED"]))
    assert list(best_trials(exp, top=5)["trial_id"]) == ["mid", "lo"]
    text = status_text(exp)
    assert "best 2 finished by val_accuracy" in text


def test_status_json_top_and_knee_skip_unfinished_trials(tmp_path) -> None:
    from rank_search.cli.status import status_info

    t = trials(["TERMINATED", "RUNNING", "TERMINATED"]).assign(folder=["f1", "f2", "f3"], checkpoint=None,
                                                                 num_failures=0, epochs_run=1)
    info = status_info(Experiment(str(tmp_path), None, t))
    assert info["top"] == ["hi", "lo"] and info["knee"] != "mid"


def sweep(tmp_path, t: pd.DataFrame, record: dict | None = None) -> Sweep:
    exp = Experiment(str(tmp_path), record, t)
    return Sweep("s", exp, front(exp), quality(exp))


def test_space_fact_names_the_rank_mode(tmp_path) -> None:
    record = {"launch": {"num_samples": 3, "searcher": "refine", "scheduler": "fifo", "seed": 0},
              "space": {"name": "demo", "model": "lenet5_wide", "dataset": "mnist5k", "epochs": 2,
                        "methods": {"trp": {}}, "ranks": SENSITIVITY_RANKS}}
    facts = dict(_facts(sweep(tmp_path, trials(["TERMINATED"] * 3), record), 1.0))
    assert facts["space"] == ("demo: lenet5_wide on mnist5k, 2 epochs; ranks: sensitivity or uniform allocation, "
                              "macs target 1.5-10x (log), proxy bn")
    assert "None" not in " ".join(v for _, v in _facts(sweep(tmp_path, trials(["TERMINATED"] * 3), record), 1.0))


def test_latency_speedups_carry_a_note_and_disagreements_are_quoted(tmp_path) -> None:
    t = trials(["TERMINATED"] * 3)
    assert latency_note(t) is None and "latency speed-ups" not in dict(_facts(sweep(tmp_path, t), 1.0))
    t[SPEED] = [1.1, 1.9, 3.0]
    note = latency_note(t)
    assert "single timings" in note and "record no spread" in note and "Unreliable" not in note
    assert "`rank-search evaluate` on an idle machine" in note
    assert dict(_facts(sweep(tmp_path, t), 1.0))["latency speed-ups"] == note
    # issue 28's sweep: 9.9955x and 10.0007x MACs measured 1.79x and 6.91x
    noisy = pd.concat([t, pd.DataFrame({"trial_id": ["x", "y"], "config/method": ["trp"] * 2,
                                        "status": ["TERMINATED"] * 2, ACC: [0.7, 0.69], TEST: [0.7, 0.69],
                                        MACS: [9.9955, 10.0007], SPEED: [1.79, 6.91],
                                        schema.DIVERGED: [False] * 2, "finished": [True] * 2})],
                      ignore_index=True)
    pair = worst_disagreement(noisy)
    assert pair.trials == ("x", "y") and pair.factor == pytest.approx(6.91 / 1.79)
    assert "Unreliable here: trials x and y, at nearly equal MACs compression (both 10.00×), measured " \
           "speed-ups of 1.79× and 6.91×" in latency_note(noisy)
    noisy.loc[noisy["trial_id"] == "y", SPEED] = 1.9  # within the tolerance: not quoted
    assert worst_disagreement(noisy) is None


SENS_ROWS = [{"layer": "conv", "scheme": "channel", "ratio": r, ACC: v} for r, v in ((0.25, 0.5), (1.0, 0.976))]


def test_sensitivity_dense_line_names_its_split_and_the_reference() -> None:
    info = _get_sensitivity_info(SENS_ROWS, {"dense_val_accuracy": 0.976}, reference=0.98)
    assert info.dense_label == "dense model, BatchNorm re-estimated: val 97.6%"
    assert (info.reference, info.reference_label) == (0.98, "dense reference: val 98.0%")
    same = _get_sensitivity_info(SENS_ROWS, {"dense_val_accuracy": 0.98}, reference=0.98)
    assert same.reference is None and same.reference_label == ""  # one number: one line
    alone = _get_sensitivity_info(SENS_ROWS, {"dense_val_accuracy": 0.976})
    assert alone.reference is None and "val 97.6%" in alone.dense_label


def test_report_has_a_viewport_for_phones() -> None:
    html = render_report(title="t", intro=[], figures=[], sweeps=[])
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html


def test_the_figure_circles_no_unfinished_knee() -> None:
    from analysis.plots import _get_pareto_front_info

    objectives = [(ACC, "max"), (MACS, "max")]
    done = _get_pareto_front_info({"s": trials(["TERMINATED"] * 3)}, objectives).sweeps[0]
    assert done.knee.trial_id == "mid"
    running = _get_pareto_front_info({"s": trials(["TERMINATED", "RUNNING", "TERMINATED"])}, objectives).sweeps[0]
    assert running.knee is not None and running.knee.trial_id != "mid"
    assert _get_pareto_front_info({"s": trials(["RUNNING"] * 3)}, objectives).sweeps[0].knee is None


def test_front_text_notes_that_speedups_are_single_timings(tmp_path) -> None:
    from analysis.summary import front_text

    t = trials(["TERMINATED"] * 3)
    assert "single timings" not in front_text(Experiment(str(tmp_path), None, t))
    text = front_text(Experiment(str(tmp_path), None, t.assign(**{SPEED: [1.1, 1.9, 3.0]})))
    table, note = text.split("\n\n")  # a blank line: the table's rows end before the note
    assert note.startswith(f"{SPEED}: single timings") and "no spread is recorded" in note


def test_recorded_spreads_say_which_speedup_orders_are_noise() -> None:
    from analysis.timing import spread_overlaps

    t = trials(["TERMINATED"] * 3)
    t[SPEED] = [1.1, 1.9, 3.0]
    assert spread_overlaps(t) is None  # no spread recorded: the note says so
    t[schema.LATENCY_SPREAD] = [0.05, 0.1, 0.2]  # every neighbour further apart than its spread
    assert spread_overlaps(t) == (0, 2)
    assert "0 of 2 neighbouring speed-ups differ by less than their spread: their order holds" in latency_note(t)
    t[schema.LATENCY_SPREAD] = [0.05, 0.9, 0.2]  # 1.1 and 1.9 are 0.8 apart, less than 0.9
    assert spread_overlaps(t) == (1, 2)
    note = latency_note(t)
    assert "1 of 2 neighbouring speed-ups differ by less than their spread: unreliable" in note
    assert "record no spread" not in note

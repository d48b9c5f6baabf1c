"""`rank-search analyze` end to end: a real tiny Tune sweep (finished, and an interrupted copy),
one and two sweeps, and the error paths (one line, exit 2, --out untouched)."""
from __future__ import annotations

import json
import os
import shutil

import pandas as pd
import pytest
import yaml

from analysis.loading import RUN_FILE, SWEEP_FILE, in_trial_order, load_experiment, run_record
from rank_search.cli import main
from test_analysis_loading import make_experiment

SPACE = {
    "model": "lenet5", "dataset": "synthetic", "epochs": 2,
    "methods": {"factorized": {}, "full": {}},
    "train": {"lr": {"float": [0.02, 0.1], "log": True}},
    "ranks": {"grouping": "per_layer", "ratio": {"float": [0.1, 0.9]}},
}
FIGURES = ("pareto_front", "hypervolume")


@pytest.fixture(scope="module")
def finished_sweep(private_ray, tmp_path_factory) -> str:
    from rank_search.search import LaunchConfig
    from rank_search.search.sweep import launch

    root = tmp_path_factory.mktemp("sweeps")
    space = root / "tiny.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    out = launch(LaunchConfig(space=str(space), storage=str(root), name="finished", num_samples=3, seed=5))
    assert out.complete and out.counts == {"TERMINATED": 3}
    return out.path


@pytest.fixture(scope="module")
def interrupted_sweep(finished_sweep, tmp_path_factory) -> str:
    """A copy of the sweep as if the driver was killed: the last trial has only its first epoch
    (plus a half-written line), lost its newest checkpoint and is RUNNING in the snapshot; a
    fourth trial started after the snapshot and reported nothing."""
    path = tmp_path_factory.mktemp("copy") / "interrupted"
    shutil.copytree(finished_sweep, path)
    trials = in_trial_order(load_experiment(str(path)).trials)
    last = trials.iloc[-1]
    result = path / last["folder"] / "result.json"
    first_line = result.read_text().splitlines()[0]
    result.write_text(first_line + "\n" + '{"epoch": 2, "val_acc')
    shutil.rmtree(path / last["folder"] / last["checkpoint"])
    (state,) = path.glob("experiment_state-*.json")
    data = json.loads(state.read_text())
    for item in data["trial_data"]:
        meta = json.loads(item[0])
        if meta["trial_id"] == last["trial_id"]:
            meta["status"] = "RUNNING"
            item[0] = json.dumps(meta)
    state.write_text(json.dumps(data))
    (path / "trial_late").mkdir()
    (path / "trial_late" / "params.json").write_text(json.dumps({"method": "factorized"}))
    return str(path)


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["analyze", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# -- real Tune experiments (private Ray) -------------------------------------------------------


@pytest.mark.ray
def test_real_sweep_loads_with_run_records(finished_sweep) -> None:
    # the files the sweep really wrote are the ones analysis reads (names from rank_search.schema)
    assert os.path.isfile(os.path.join(finished_sweep, SWEEP_FILE))
    exp = load_experiment(finished_sweep)
    t = exp.trials
    assert len(t) == 3 and t["finished"].all() and t["started"].notna().all()
    # the warm start runs every method first (then the searcher, seed 5)
    assert set(t["config/method"]) == {"factorized", "full"}
    for _, row in t.iterrows():
        record = run_record(finished_sweep, row["folder"], row["checkpoint"])
        if row["config/method"] == "full":
            assert record["ranks"] is None and "groups" not in record
        else:
            assert list(record["ranks"]["layers"]) == ["features.3", "classifier.1", "classifier.3"]
            # the trial wrote the layer -> rank group map it resolved (per_layer: each layer its own)
            assert record["groups"] == {"grouping": "per_layer",
                                        "layers": {n: n for n in ["features.3", "classifier.1", "classifier.3"]}}
    assert [c for c in t.columns if c.startswith("config/rank.")] == [
        "config/rank.features.3", "config/rank.classifier.1", "config/rank.classifier.3"]  # model order


@pytest.mark.ray
def test_interrupted_sweep_loads(interrupted_sweep) -> None:
    t = in_trial_order(load_experiment(interrupted_sweep).trials)
    assert len(t) == 4
    cut = t.iloc[2]
    assert cut["status"] == "RUNNING" and cut["epochs_run"] == 1 and not cut["finished"]
    assert run_record(interrupted_sweep, cut["folder"], cut["checkpoint"]) is not None  # older checkpoint
    late = t.set_index("trial_id").loc["trial_late"]
    assert late["status"] == "UNKNOWN" and late["epochs_run"] == 0


@pytest.mark.ray
def test_analyze_one_sweep(finished_sweep, tmp_path, capsys) -> None:
    out = tmp_path / "report"
    code, stdout, stderr = _run(capsys, finished_sweep, "--out", str(out))
    assert code == 0, stderr
    files = set(os.listdir(out))
    stems = [*FIGURES, "rank_heatmap-finished", "learning_curves-finished"]
    assert {f"{s}.{ext}" for s in stems for ext in ("png", "svg")} | {"trials.csv", "pareto.csv", "quality.csv",
                                                                   "report.html"} == files
    trials = pd.read_csv(out / "trials.csv")
    assert len(trials) == 3 and set(trials["sweep"]) == {"finished"}
    assert trials["on_front"].sum() == len(pd.read_csv(out / "pareto.csv")) and trials["knee"].sum() == 1
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 4 and "searcher" in html and "Pareto front" in html
    assert "hypervolume" in stdout and "<- knee" in stdout
    assert "analyze: writing report.html" in stderr  # progress lines


@pytest.mark.ray
def test_analyze_two_sweeps_overlays_fronts(finished_sweep, interrupted_sweep, tmp_path, capsys) -> None:
    out = tmp_path / "both"
    code, stdout, stderr = _run(capsys, finished_sweep, interrupted_sweep, "--labels", "a", "b", "--out", str(out))
    assert code == 0, stderr
    trials = pd.read_csv(out / "trials.csv")
    assert trials.groupby("sweep").size().to_dict() == {"a": 3, "b": 4}
    pareto = pd.read_csv(out / "pareto.csv")
    assert set(pareto["sweep"]) <= {"a", "b"} and "on_combined_front" in pareto
    for stem in ("rank_heatmap-a", "rank_heatmap-b", "learning_curves-a", "learning_curves-b", *FIGURES):
        assert (out / f"{stem}.png").stat().st_size > 5000 and (out / f"{stem}.svg").is_file()
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 6 and "Sweep a" in html and "Sweep b" in html
    assert "sweep a (" in stdout and "sweep b (" in stdout


# -- hand-made experiments: fast, no Ray -------------------------------------------------------


def test_analyze_hand_made_sweep_with_three_objectives(tmp_path, capsys) -> None:
    exp = make_experiment(tmp_path)
    out = tmp_path / "out"
    code, stdout, stderr = _run(capsys, str(exp), "--objectives", "val_accuracy:max,macs_compression:max,epoch:min",
                                "--reference", "0,1,3", "--out", str(out))
    assert code == 0, stderr
    assert "epoch (min)" in stdout and "reference point: val_accuracy=0, macs_compression=1, epoch=3" in stdout
    assert len(pd.read_csv(out / "trials.csv")) == 4


@pytest.mark.parametrize("args, message", [
    (["--labels", "a", "b"], "--labels needs one label per experiment (1), got 2"),
    (["--objectives", "nope:max,val_accuracy:max"], "objective 'nope' is not reported by any trial"),
    (["--objectives", "val_accuracy:best"], "objective must be METRIC:max or METRIC:min"),
    (["--reference", "0"], "the reference point needs 2 values"),
    (["--reference", "0,x"], "--reference: reference point must be comma-separated numbers"),
])
def test_analyze_bad_arguments_leave_no_output(tmp_path, capsys, args, message) -> None:
    exp = make_experiment(tmp_path)
    out = tmp_path / "out"
    code, stdout, stderr = _run(capsys, str(exp), *args, "--out", str(out))
    assert code == 2 and message in stderr and len(stderr.strip().splitlines()) == 1
    assert stderr.startswith("rank-search analyze: error:")
    assert not out.exists() and not [p for p in os.listdir(tmp_path) if p.startswith(".out.partial")]


def test_analyze_not_an_experiment_is_one_line_and_writes_nothing(tmp_path, capsys) -> None:
    good = make_experiment(tmp_path)
    bogus = tmp_path / "not_an_experiment"
    bogus.mkdir()
    (bogus / "notes.txt").write_text("hello")
    out = tmp_path / "out"
    code, stdout, stderr = _run(capsys, str(good), str(bogus), "--out", str(out))
    assert code == 2
    assert stderr.splitlines() == [f"rank-search analyze: error: {str(bogus)!r} is not a Ray Tune experiment "
                                   "(no experiment_state-*.json, no trial folders with params.json)"]
    assert set(os.listdir(tmp_path)) == {"exp", "not_an_experiment"}  # no --out, no partial folder


def test_analyze_refuses_a_non_empty_out(tmp_path, capsys) -> None:
    exp = make_experiment(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, _, stderr = _run(capsys, str(exp), "--out", str(out))
    assert code == 2 and "already exists and is not empty" in stderr
    assert os.listdir(out) == ["keep.txt"]
    assert _run(capsys, str(exp), "--out", str(out), "--overwrite")[0] == 0
    assert "report.html" in os.listdir(out) and "keep.txt" not in os.listdir(out)



def test_analyze_reads_a_uri(tmp_path, capsys) -> None:
    exp = make_experiment(tmp_path)
    code, stdout, stderr = _run(capsys, f"file://{exp}", "--out", str(tmp_path / "out"))
    assert code == 0, stderr
    assert len(pd.read_csv(tmp_path / "out" / "trials.csv")) == 4


@pytest.mark.ray
def test_rank_heatmap_comes_from_run_records_without_a_model(finished_sweep, monkeypatch) -> None:
    """The heatmap of a real sweep is complete from the trials' run records alone: no model is
    built (any attempt would fail here) and no cell is unknown."""
    import math

    import rank_search.models as models
    from analysis.plots import _get_rank_heatmap_info
    from analysis.summary import front

    def no_model(*args, **kwargs):
        raise AssertionError("analysis built a model")

    monkeypatch.setattr(models, "create_model", no_model)
    exp = load_experiment(finished_sweep)
    f = front(exp, objectives=exp.objectives)
    records = {str(r["trial_id"]): run_record(exp.path, r["folder"], r.get("checkpoint")) for _, r in f.iterrows()}
    info = _get_rank_heatmap_info(f, exp.objectives, run_records=records)
    assert info.columns and not info.columns_are_groups
    assert not any(math.isnan(v) for row in info.values for v in row)

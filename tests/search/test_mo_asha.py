"""MO-ASHA: rungs, non-dominated promotion on synthetic histories, the decision ledger across a
restart, stopped trials in the trials table and export; and real sweeps with mo-asha and asha."""
from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

from rank_search import schema
from rank_search.search.mo_asha import CONTINUE, STOP, MOASHAScheduler, decide, promotion_order, rung_epochs

OBJECTIVES = [(schema.VAL_ACCURACY, "max"), (schema.MACS_COMPRESSION, "max")]


def test_rungs_are_geometric_and_below_the_budget() -> None:
    assert rung_epochs(6) == (1, 3)
    assert rung_epochs(8, eta=2) == (1, 2, 4)
    assert rung_epochs(9, grace=1, eta=3) == (1, 3)
    assert rung_epochs(1) == ()
    with pytest.raises(ValueError, match="eta >= 2"):
        rung_epochs(6, eta=1)


def test_the_first_trial_at_a_rung_goes_on() -> None:
    assert decide([], [0.1, 0.0], eta=3) == CONTINUE


def test_a_dominated_trial_stops_and_a_front_trial_goes_on() -> None:
    # (accuracy, log compression), both maximised
    history = [[0.95, math.log(2)], [0.90, math.log(4)], [0.80, math.log(8)]]
    assert decide(history, [0.85, math.log(3)], eta=3) == STOP  # dominated by (0.90, 4x)
    # on the front with the most hypervolume to add: (0.95, 2x) is dominated by it
    assert decide(history, [0.97, math.log(3.9)], eta=3) == CONTINUE
    assert promotion_order(np.array([*history, [0.97, math.log(3.9)]]))[-1] == 0


def test_promotion_is_by_front_then_hypervolume_contribution() -> None:
    pts = np.array([[0.95, 1.0], [0.90, 2.0], [0.50, 0.5], [0.94, 1.9], [0.60, 3.0]])
    order = promotion_order(pts, ref=(0.4, 0.0))
    # exclusive areas above (0.4, 0): row 4 0.2 x 1.0 = 0.2, row 3 0.04 x 0.9 = 0.036, row 1 0.3 x 0.1 = 0.03,
    # row 0 0.01 x 1.0 = 0.01; row 2 is dominated and comes last
    assert order == [4, 3, 1, 0, 2]


def test_the_compressed_end_of_the_front_is_kept() -> None:
    # the most compressed front point adds the least hypervolume here, yet it is promoted
    history = [[0.95, math.log(2)], [0.93, math.log(2.1)], [0.91, math.log(2.2)], [0.89, math.log(2.3)],
               [0.87, math.log(2.4)]]
    end = [0.40, math.log(2.41)]
    ref = (0.30, 0.0)
    assert decide(history, end, eta=3, ref=ref) == STOP  # by contribution alone it would stop
    assert decide(history, end, eta=3, ref=ref, compressed=1) == CONTINUE


def _trial(tid: str) -> SimpleNamespace:
    return SimpleNamespace(trial_id=tid)


def _result(epoch: int, acc: float, macs: float) -> dict:
    return {"training_iteration": epoch, schema.VAL_ACCURACY: acc, schema.MACS_COMPRESSION: macs}


def _history():
    """A sweep's results in arrival order: (trial, epoch, val acc, MACs compression)."""
    rng = np.random.default_rng(0)
    out = []
    for k in range(12):
        macs = float(np.exp(rng.uniform(np.log(1.5), np.log(12))))
        acc = float(0.99 - 0.02 * np.log(macs) - rng.uniform(0, 0.1))
        for epoch in (1, 2, 3, 4, 5, 6):
            out.append((f"t{k:02d}", epoch, acc + 0.005 * epoch, macs))
    return out


def _run(sched: MOASHAScheduler, events, stopped: set[str]) -> dict[tuple[str, int], str]:
    decisions = {}
    for tid, epoch, acc, macs in events:
        if tid in stopped:
            continue
        action = sched.on_trial_result(None, _trial(tid), _result(epoch, acc, macs))
        decisions[(tid, epoch)] = action
        if action == STOP:
            stopped.add(tid)
    return decisions


def test_decisions_are_kept_and_replayed_after_a_restart(tmp_path) -> None:
    events = _history()
    (tmp_path / "a").mkdir()
    whole = _run(MOASHAScheduler(OBJECTIVES, max_epochs=6, path=str(tmp_path / "a"), floors={}), events, set())
    assert STOP in whole.values() and CONTINUE in whole.values()

    # the same sweep killed after 30 results: a new scheduler (as unpickled by a resume) on the same folder;
    # the trial that was running reports its last epoch again, as a trial restored from a checkpoint does
    (tmp_path / "b").mkdir()
    first = MOASHAScheduler(OBJECTIVES, max_epochs=6, path=str(tmp_path / "b"), floors={})
    stopped: set[str] = set()
    part = _run(first, events[:30], stopped)
    import pickle

    second = pickle.loads(pickle.dumps(first))
    assert second._ledger is None  # re-read from the folder, not carried in the pickle
    replay = _run(second, events[29:], stopped)
    assert {**part, **replay} == whole
    ledger = yaml.safe_load((tmp_path / "b" / schema.SCHEDULER_LEDGER_FILE).read_text())
    assert {t for t, d in ledger["decisions"].items() if STOP in d.values()} == stopped


def test_a_promoted_trial_is_not_stopped_again_when_the_rung_has_filled(tmp_path) -> None:
    sched = MOASHAScheduler(OBJECTIVES, max_epochs=6, path=str(tmp_path), floors={})
    assert sched.on_trial_result(None, _trial("a"), _result(1, 0.50, 2.0)) == CONTINUE  # the first goes on
    for k in range(5):  # better trials fill the rung
        sched.on_trial_result(None, _trial(f"b{k}"), _result(1, 0.90 + k / 100, 2.0 + k))
    # 'a' restored from a checkpoint before epoch 1 reports epoch 1 again: its decision stands
    assert MOASHAScheduler(OBJECTIVES, max_epochs=6, path=str(tmp_path)).on_trial_result(
        None, _trial("a"), _result(1, 0.50, 2.0)) == CONTINUE


def test_grouped_by_method_a_trial_is_compared_with_its_own_method_only(tmp_path) -> None:
    def trial(tid: str, method: str) -> SimpleNamespace:
        return SimpleNamespace(trial_id=tid, config={schema.METHOD_KEY: method})

    for group_by, slow_goes_on in ((None, False), (schema.METHOD_KEY, True)):
        sched = MOASHAScheduler(OBJECTIVES, max_epochs=6, path=str(tmp_path / str(group_by)), floors={},
                                group_by=group_by)
        (tmp_path / str(group_by)).mkdir()
        for k in range(4):  # a fast-learning method fills rung 1 at every compression
            sched.on_trial_result(None, trial(f"fast{k}", "fast"), _result(1, 0.95, 2.0 + k))
        # a slow starter dominated by them: stopped among every trial, first of its method when grouped
        action = sched.on_trial_result(None, trial("slow0", "slow"), _result(1, 0.60, 2.5))
        assert action == (CONTINUE if slow_goes_on else STOP)
        # grouped, a second slow trial dominated by the first slow one stops
        if group_by:
            assert sched.on_trial_result(None, trial("slow1", "slow"), _result(1, 0.50, 2.0)) == STOP
            ledger = yaml.safe_load((tmp_path / str(group_by) / schema.SCHEDULER_LEDGER_FILE).read_text())
            assert ledger["groups"] == {"fast0": "fast", "fast1": "fast", "fast2": "fast", "fast3": "fast",
                                        "slow0": "slow", "slow1": "slow"}


def test_minimised_objectives_and_missing_metrics(tmp_path) -> None:
    sched = MOASHAScheduler([(schema.VAL_ACCURACY, "max"), ("latency_ms", "min")], max_epochs=6, path=str(tmp_path))
    assert sched.on_trial_result(None, _trial("a"), {"training_iteration": 1, schema.VAL_ACCURACY: 0.9,
                                                     "latency_ms": 2.0}) == CONTINUE
    # slower and less accurate: dominated
    assert sched.on_trial_result(None, _trial("b"), {"training_iteration": 1, schema.VAL_ACCURACY: 0.8,
                                                     "latency_ms": 3.0}) == STOP
    # a result without the metrics, or off the rungs, is never a decision
    assert sched.on_trial_result(None, _trial("c"), {"training_iteration": 1}) == CONTINUE
    assert sched.on_trial_result(None, _trial("d"), {"training_iteration": 2, schema.VAL_ACCURACY: 0.1,
                                                     "latency_ms": 9.0}) == CONTINUE


def _stopped_sweep(tmp_path):
    """A finished mo-asha sweep on disk: a (3 epochs), b (stopped at rung 1, the best), c."""
    exp = tmp_path / "exp"
    exp.mkdir()
    sweep = {"launch": {"name": "x", "searcher": "random", "seed": 0, "scheduler": "mo-asha",
                        "objectives": ["val_accuracy:max", "macs_compression:max"]},
             "space": {"name": "x", "model": "lenet5", "dataset": "synthetic", "epochs": 3}}
    (exp / schema.SWEEP_FILE).write_text(yaml.safe_dump(sweep))
    trials = {"a": (3, 0.95, 2.0), "b": (1, 0.97, 6.0), "c": (3, 0.80, 8.0)}  # b dominates a: it would lead
    for tid, (epochs, acc, macs) in trials.items():
        folder = exp / f"trial_{tid}"
        folder.mkdir()
        config = {"method": "posthoc", "space.epochs": 3}
        (folder / "params.json").write_text(json.dumps(config))
        lines = [json.dumps({"epoch": e, "trial_id": tid, "val_accuracy": acc, "macs_compression": macs,
                             "done": e == epochs, "timestamp": 100.0 + e, "time_this_iter_s": 1.0, "config": config})
                 for e in range(1, epochs + 1)]
        (folder / "result.json").write_text("\n".join(lines) + "\n")
    (exp / schema.SCHEDULER_LEDGER_FILE).write_text(json.dumps(
        {"rungs": {}, "decisions": {"a": {"1": CONTINUE}, "b": {"1": STOP}, "c": {"1": CONTINUE}}}))
    return exp


def test_stopped_trials_are_marked_and_never_the_exported_knee(tmp_path) -> None:
    from analysis.loading import load_experiment
    from analysis.select import pick_trial

    exp = _stopped_sweep(tmp_path)
    t = load_experiment(str(exp)).trials.set_index("trial_id")
    assert t.loc["b", schema.STOPPED_RUNG] == 1 and t[schema.STOPPED_RUNG].isna().sum() == 2
    loaded = load_experiment(str(exp))
    assert pick_trial(loaded, pick="knee")["trial_id"] != "b"
    assert pick_trial(loaded, pick="max-accuracy")["trial_id"] == "a"
    assert pick_trial(loaded, pick="max-accuracy", include_stopped=True)["trial_id"] == "b"

    # status and the report mark it, with the rung; status --json says so per trial
    from analysis.summary import status_text
    from rank_search.cli.status import status_info

    text = status_text(loaded)
    assert "STOPPED@1 1" in text and "TERMINATED 2" in text
    front_rows = [line for line in text.splitlines() if line.startswith("b ")]
    assert front_rows and "STOPPED@1" in front_rows[0] and "knee" not in front_rows[0]
    info = status_info(loaded)
    by_id = {t["trial_id"]: t for t in info["trials"]}
    assert by_id["b"]["stopped_rung"] == 1 and by_id["a"]["stopped_rung"] is None
    assert by_id["b"]["state"] == "TERMINATED" and info["knee"] != "b"


def test_a_damaged_ledger_is_one_line(tmp_path) -> None:
    from analysis.loading import load_experiment
    from rank_search.errors import RankSearchError

    exp = tmp_path / "exp"
    (exp / "trial_a").mkdir(parents=True)
    (exp / "trial_a" / "params.json").write_text("{}")
    (exp / schema.SCHEDULER_LEDGER_FILE).write_text("{not json")
    with pytest.raises(RankSearchError, match="mo_asha.yaml.*cannot be read"):
        load_experiment(str(exp))


TINY = {"model": "lenet5", "dataset": "synthetic", "epochs": 3,
        "methods": {"posthoc": {}, "factorized": {}},
        "train": {"lr": {"float": [0.02, 0.1], "log": True}},
        "ranks": {"grouping": "uniform", "ratio": {"float": [0.1, 0.9]}}}


@pytest.mark.ray
@pytest.mark.parametrize("scheduler", ["mo-asha", "asha"])
def test_sweeps_with_an_early_stopping_scheduler(private_ray, tmp_path, scheduler) -> None:
    from analysis.loading import load_experiment
    from rank_search.search import LaunchConfig
    from rank_search.search.sweep import launch

    space = tmp_path / "tiny.yaml"
    space.write_text(yaml.safe_dump(TINY))
    out = launch(LaunchConfig(space=str(space), storage=str(tmp_path), name="s", num_samples=6, searcher="random",
                              seed=0, scheduler=scheduler, max_concurrent=1, warm_start=0))
    assert out.complete
    t = load_experiment(out.path).trials
    assert len(t) == 6 and (t["status"] == "TERMINATED").all()
    assert t["epochs_run"].min() >= 1 and (t["epochs_run"] == 3).any()
    if scheduler == "mo-asha":
        ledger = yaml.safe_load((tmp_path / "s" / schema.SCHEDULER_LEDGER_FILE).read_text())
        assert set(ledger["decisions"]) == set(t["trial_id"])  # every trial was judged at rung 1
        stopped = t[t[schema.STOPPED_RUNG].notna()]
        assert len(stopped) >= 1 and (stopped["epochs_run"] == 1).all()
        assert (t[t[schema.STOPPED_RUNG].isna()]["epochs_run"] == 3).all()
    else:
        assert (t["epochs_run"] < 3).any()  # ASHA stopped some on accuracy


def test_a_moved_experiment_keeps_its_ledger_where_its_trials_are(tmp_path) -> None:
    launched, moved = tmp_path / "launched", tmp_path / "moved"
    moved.mkdir()
    (moved / schema.SCHEDULER_LEDGER_FILE).write_text(json.dumps({"rungs": {"1": {"a": [0.5, 0.7]}},
                                                                 "decisions": {"a": {"1": STOP}}}))
    sched = MOASHAScheduler(OBJECTIVES, max_epochs=6, path=str(launched))  # as pickled at launch
    trial = SimpleNamespace(trial_id="a", path=str(moved / "trial_a"))
    assert sched.on_trial_result(None, trial, _result(1, 0.99, 9.0)) == STOP  # the recorded decision
    other = SimpleNamespace(trial_id="b", path=str(moved / "trial_b"))
    sched.on_trial_result(None, other, _result(1, 0.40, 1.1))
    assert "b" in yaml.safe_load((moved / schema.SCHEDULER_LEDGER_FILE).read_text())["decisions"]
    assert not launched.exists()


@pytest.mark.slow
@pytest.mark.ray
def test_decisions_survive_a_sigkilled_driver_and_resume(tmp_path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    from analysis.loading import epoch_history, load_experiment

    # the real MNIST subset makes an epoch last about a second, so the kill lands mid-sweep
    space = {**TINY, "dataset": "mnist5k", "train": {**TINY["train"], "batch_size": 16}}
    space_file = tmp_path / "s.yaml"
    space_file.write_text(yaml.safe_dump(space))
    exp = tmp_path / "k"
    ledger = exp / schema.SCHEDULER_LEDGER_FILE
    cmd = [sys.executable, "-m", "rank_search", "launch", "--space", str(space_file), "--num-samples", "8",
           "--scheduler", "mo-asha", "--searcher", "random", "--warm-start", "0", "--max-concurrent", "1",
           "--storage", str(tmp_path), "--name", "k"]
    with open(tmp_path / "launch.log", "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                if ledger.is_file() and len(yaml.safe_load(ledger.read_text())["decisions"]) >= 3:
                    break
                time.sleep(0.5)
            else:
                pytest.fail("no three rung decisions within 300 s")
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    before = yaml.safe_load(ledger.read_text())["decisions"]
    resume = subprocess.run([sys.executable, "-m", "rank_search", "resume", str(exp)], capture_output=True,
                            text=True, timeout=600)
    assert resume.returncode == 0, resume.stderr[-2000:]
    after = yaml.safe_load(ledger.read_text())["decisions"]
    assert {t: d for t, d in after.items() if t in before} == before  # nothing decided twice, nothing changed
    trials = load_experiment(str(exp)).trials
    assert len(trials) == 8 and trials["trial_id"].is_unique
    diverged = trials[schema.DIVERGED].fillna(False).astype(bool)
    assert set(after) == set(trials[~diverged]["trial_id"])  # every trial judged at its rung, once
    for _, t in trials[~diverged].iterrows():
        epochs = [r["epoch"] for r in epoch_history(str(exp), t["folder"])]
        if after[t["trial_id"]].get("1") == STOP:
            assert max(epochs) == 1, t["trial_id"]  # a stopped trial stays stopped
        else:
            assert max(epochs) == 3, t["trial_id"]  # a promoted one runs to the end


def test_export_takes_a_stopped_trial_only_when_asked(tmp_path, capsys) -> None:
    from rank_search.cli import main

    exp = _stopped_sweep(tmp_path)  # no checkpoints on disk: the error names the trial picked
    for extra, picked in (([], "a"), (["--include-stopped"], "b")):
        assert main(["export", str(exp), "--pick", "max-accuracy", "--out", str(tmp_path / "x.yaml"), *extra]) == 2
        assert f"trial {picked} has no final checkpoint" in capsys.readouterr().err


@pytest.mark.parametrize("name, group_by", [("mo-asha", None), ("mo-asha-method", schema.METHOD_KEY)])
def test_the_scheduler_names_build_mo_asha(tmp_path, name, group_by) -> None:
    from rank_search.search import LaunchConfig
    from rank_search.search.tune_setup import make_scheduler

    sched = make_scheduler(LaunchConfig(space="x", scheduler=name), path=str(tmp_path), epochs=6, dense_accuracy=0.9)
    assert isinstance(sched, MOASHAScheduler) and sched.group_by == group_by and sched.rungs == (1, 3)
    assert sched.floors == {schema.VAL_ACCURACY: 0.9 - schema.ACCURACY_MARGIN}

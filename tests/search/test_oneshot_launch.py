"""`launch --searcher oneshot` (issue 31): the nested model and the one-shot search run once, the
front's points become the sweep's trials, a relaunch or resume repeats neither, and a space the
nested method cannot train is refused before anything is made."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from rank_search import schema
from rank_search.cli import main

SPACE = {
    "model": "lenet5", "dataset": "synthetic", "epochs": 2,
    "methods": {"nested": {"min_ratio": 0.1}},
    "train": {"lr": 0.1},
    "ranks": {"grouping": "per_layer", "ratio": {"float": [0.1, 0.9]}},
}
MADE_ONCE = (schema.NESTED_WEIGHTS_FILE, schema.NESTED_RECORD_FILE, schema.ONESHOT_FILE, schema.DENSE_WEIGHTS_FILE)


def _space(tmp_path: Path, space: dict, name: str = "space.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(space))
    return str(path)


# -- no Ray ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("methods, schemes", [({"posthoc": {"scheme": "tiled"}}, "tiled"),
                                              ({"posthoc": {}, "factorized": {}}, "channel, tucker2"),
                                              ({"full": {}}, "no scheme")])
def test_a_space_nested_cannot_train_is_refused_before_anything(tmp_path, capsys, methods, schemes) -> None:
    import ray

    space = _space(tmp_path, {**SPACE, "methods": methods})
    code = main(["launch", "--space", space, "--searcher", "oneshot", "--storage", str(tmp_path / "runs")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "--searcher oneshot" in err[0] and "one scheme of channel, spatial, tucker2" in err[0] and f"plans in {schemes}" in err[0]
    assert not (tmp_path / "runs").exists() and not ray.is_initialized()


@pytest.mark.parametrize("flag", [["--budget-hours", "1"], ["--warm-start", "2"]])
def test_flags_that_do_not_apply_are_refused(tmp_path, capsys, flag) -> None:
    code = main(["launch", "--space", _space(tmp_path, SPACE), "--searcher", "oneshot", "--num-samples", "4", *flag,
                 "--storage", str(tmp_path / "runs")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and f"{flag[0]} does not apply to --searcher oneshot" in err[0], err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("flags, message", [
    (["--nested-epochs", "3"], "--nested-epochs applies to --searcher oneshot only"),
    (["--searcher", "oneshot", "--nested-epochs", "0"], "--nested-epochs must be >= 1, got 0"),
    (["--nested-lr", "0.01"], "--nested-lr applies to --searcher oneshot only"),
    (["--searcher", "oneshot", "--nested-lr", "0"], "--nested-lr must be a number > 0, got 0.0"),
    (["--searcher", "oneshot", "--nested-lr", "nan"], "--nested-lr must be a number > 0, got nan"),
])
def test_nested_flags_outside_a_oneshot_sweep_or_out_of_range_are_refused(tmp_path, capsys, flags, message) -> None:
    code = main(["launch", "--space", _space(tmp_path, SPACE), *flags, "--storage", str(tmp_path / "runs")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0], err
    assert not (tmp_path / "runs").exists()


def test_nested_epochs_default_to_three_times_the_space_s_and_round_trip_through_the_record(tmp_path) -> None:
    from search_spaces import space_from_mapping

    from rank_search.search import LaunchConfig
    from rank_search.search.oneshot_sweep import nested_epochs
    from rank_search.search.sweep_record import config_from_record, read_sweep_record, write_sweep_record

    space = space_from_mapping(SPACE)
    assert nested_epochs(space, LaunchConfig(space="s.yaml", searcher="oneshot")) == 3 * SPACE["epochs"]
    cfg = LaunchConfig(space="s.yaml", searcher="oneshot", nested_epochs=7, nested_lr=0.02)
    assert nested_epochs(space, cfg) == 7
    write_sweep_record(str(tmp_path / "exp"), cfg, SPACE)
    again = config_from_record(read_sweep_record(str(tmp_path / "exp")))
    assert (again.nested_epochs, again.nested_lr) == (7, 0.02)


@pytest.mark.parametrize("model, factor", [("lenet5_wide", 3), ("lenet5", 3), ("resnet20", 4), ("resnet32", 4)])
def test_the_nested_epochs_are_the_flag_s_else_the_model_s_factor_else_three_times_a_trial_s(model, factor) -> None:
    from search_spaces import space_from_mapping

    from rank_search.models import nested_epochs_factor
    from rank_search.search import LaunchConfig
    from rank_search.search.oneshot_sweep import NESTED_EPOCHS_FACTOR, nested_epochs

    space = space_from_mapping({**SPACE, "model": model})
    assert nested_epochs_factor(model) == (None if model.startswith("lenet") else factor)
    assert NESTED_EPOCHS_FACTOR == 3
    assert nested_epochs(space, LaunchConfig(space="s.yaml", searcher="oneshot")) == factor * SPACE["epochs"]
    assert nested_epochs(space, LaunchConfig(space="s.yaml", searcher="oneshot", nested_epochs=5)) == 5
    assert nested_epochs_factor("mypkg.models:net") is None  # an own builder: NESTED_EPOCHS_FACTOR


@pytest.mark.parametrize("model, rate", [("lenet5_wide", 0.01), ("resnet20", 0.1), ("resnet32", 0.1),
                                         ("lenet5", SPACE["train"]["lr"])])
def test_the_nested_rate_is_the_flag_s_else_the_model_s_else_the_space_s(model, rate) -> None:
    from search_spaces import space_from_mapping

    from rank_search.models import nested_lr as measured
    from rank_search.search import LaunchConfig
    from rank_search.search.oneshot_sweep import nested_lr, nested_settings

    space = space_from_mapping({**SPACE, "model": model})
    assert measured(model) == (None if model == "lenet5" else rate)
    assert nested_lr(space) == rate and nested_settings(space)["train.lr"] == rate
    asked = LaunchConfig(space="s.yaml", searcher="oneshot", nested_lr=0.003)
    assert nested_lr(space, asked) == 0.003 and nested_settings(space, asked)["train.lr"] == 0.003
    assert measured("mypkg.models:net") is None  # an own builder: the space's rate


def test_spread_keeps_both_ends_and_at_most_count() -> None:
    from rank_search.search.oneshot_sweep import spread

    values = [1.1, 1.2, 1.3, 2.0, 4.0, 4.1, 8.0]
    assert spread(values, 10) == list(range(7))
    picked = spread(values, 3)
    assert len(picked) == 3 and picked[0] == 0 and picked[-1] == 6 and picked == sorted(set(picked))
    assert spread(values, 1) in ([3], [4])


def test_an_explicit_plan_round_trips_through_the_trial_codec() -> None:
    from search_spaces import PlanRanks, TrialSpec, decode_trial

    from rank_search.plan import RankPlan
    from rank_search.search.trial import run_spec

    plan = PlanRanks({"features.0": ("channel", 3), "features.3": ("tucker2", (4, 2))})
    spec = TrialSpec(method="nested", model="lenet5", dataset="synthetic", epochs=1, knobs={"scheme": "channel"},
                     ranks=plan, dense="/x/dense.pt", nested="/x/nested.pt")
    assert decode_trial(spec.to_config()) == spec
    run = run_spec(spec.moved_to("/y"))
    assert run.ranks == RankPlan.from_dict(plan.to_dict()) and run.init == "/y/dense.pt"
    assert run.knobs["weights"] == "/y/nested.pt" and run.scheme == "channel"
    with pytest.raises(Exception, match="plan.a must be SCHEME:RANK"):
        PlanRanks.from_config({"plan.a": "channel:x"})


# -- sweeps on a private Ray --------------------------------------------------------------------

def _front(path: str) -> dict:
    """Plan (as a RankPlan dict) -> MACs compression of every factorized front point."""
    from rank_search.search.oneshot_sweep import read_oneshot

    return {json.dumps(r["plan"].to_dict(), sort_keys=True): r["macs_compression"]
            for r in read_oneshot(path) if r["front"] and r["plan"].layers}


def _trial_plans(path: str, epochs: int = 1) -> list[str]:
    """Each trial's plan (its run record's), checking it fine-tuned a nested model ``epochs`` epochs
    at a tenth of the rate the nested model trained at."""
    from analysis.loading import last_checkpoint, load_experiment, run_record
    from rank_search.search.oneshot_sweep import FINETUNE_LR_SHARE

    exp = load_experiment(path)
    rate = yaml.safe_load(Path(path, schema.NESTED_RECORD_FILE).read_text())["run"]["settings"]["train.lr"]
    plans = []
    for folder in exp.trials["folder"]:
        record = run_record(path, folder, last_checkpoint(path, folder))
        assert record["method"] == "nested" and record["epochs"] == epochs
        assert record["settings"]["nested.weights"].endswith(schema.NESTED_WEIGHTS_FILE)
        assert FINETUNE_LR_SHARE == 0.1 and record["settings"]["train.lr"] == pytest.approx(0.1 * rate)
        plans.append(json.dumps(record["ranks"], sort_keys=True))
    return plans


@pytest.fixture(scope="module")
def sweep(private_ray, tmp_path_factory):
    from rank_search.search import LaunchConfig, oneshot_sweep
    from rank_search.search.sweep import launch

    root = tmp_path_factory.mktemp("oneshot")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(oneshot_sweep, "ALLOCATIONS", 40)  # read by the driver, handed to the search task
        out = launch(LaunchConfig(space=_space(root, SPACE), storage=str(root / "runs"), name="os", num_samples=3,
                                  searcher="oneshot", seed=1))
    return out, root


def test_the_trials_are_the_front_points_each_fine_tuned(sweep) -> None:
    from rank_search.search.oneshot_sweep import spread

    out, _ = sweep
    front = _front(out.path)
    n = min(3, len(front))
    assert n >= 2, front
    assert out.complete and out.counts == {"TERMINATED": n} and out.num_samples == n
    plans = _trial_plans(out.path)
    assert len(plans) == n and len(set(plans)) == n and set(plans) <= set(front)
    ordered = sorted(front, key=front.get)
    assert set(plans) == {ordered[i] for i in spread([front[p] for p in ordered], 3)}
    # the trial's compact model is the front point's MACs
    from analysis.loading import load_experiment

    exp = load_experiment(out.path)
    got = sorted(float(c) for c in exp.trials[schema.MACS_COMPRESSION])
    assert got == pytest.approx(sorted(front[p] for p in plans), rel=1e-6)
    record = yaml.safe_load(Path(out.path, schema.SWEEP_FILE).read_text())
    assert record["launch"]["num_samples"] == n and record["launch"]["searcher"] == "oneshot"


def test_the_cost_is_in_the_sweep_record_and_status_export_work(sweep, tmp_path, capsys) -> None:
    out, _ = sweep
    dense = yaml.safe_load(Path(out.path, schema.DENSE_RECORD_FILE).read_text())
    nested = yaml.safe_load(Path(out.path, schema.NESTED_RECORD_FILE).read_text())
    assert dense["nested_seconds"] == nested["seconds"] > 0 and dense["oneshot_search_seconds"] == nested["search"]["seconds"] > 0
    assert dense["oneshot_seconds"] == pytest.approx(dense["nested_seconds"] + dense["oneshot_search_seconds"])
    assert nested["epochs"] == 6 and nested["search"]["evaluated"] == 40 and nested["requested_trials"] == 3
    assert nested["run"]["init"] == schema.DENSE_WEIGHTS_FILE and nested["run"]["teacher"] is None  # no distill
    assert nested["run"]["settings"]["train.lr"] == SPACE["train"]["lr"]  # lenet5 has no measured nested rate
    capsys.readouterr()
    assert main(["status", out.path, "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["state"] == "finished" and status["counts"]["TERMINATED"] == out.num_samples
    assert main(["export", out.path, "--out", str(tmp_path / "best.yaml"), "--weights"]) == 0
    exported = yaml.safe_load((tmp_path / "best.yaml").read_text())["run"]
    assert exported["method"] == "nested" and exported["settings"]["nested.weights"].endswith(schema.NESTED_WEIGHTS_FILE)


def test_a_relaunch_reuses_the_nested_model_and_the_search(sweep, capsys) -> None:
    """A launch stopped before its first trial holds only its record and what it made: the
    restart that `resume` runs reads them back and trains neither again."""
    from rank_search.search.sweep import resume

    out, root = sweep
    again = root / "runs" / "again"
    again.mkdir()
    for name in (schema.SWEEP_FILE, schema.DENSE_RECORD_FILE, *MADE_ONCE):
        shutil.copy2(Path(out.path, name), again / name)
    stamps = {f: os.stat(again / f).st_mtime_ns for f in MADE_ONCE}
    capsys.readouterr()
    done = resume(str(again))
    err = capsys.readouterr().err
    assert done.complete and done.counts == {"TERMINATED": out.num_samples}
    assert "nested model found in the experiment folder: reused" in err
    assert "one-shot search found in the experiment folder: reused" in err
    assert "training the nested model" not in err and "training the dense reference" not in err
    assert {f: os.stat(again / f).st_mtime_ns for f in MADE_ONCE} == stamps
    assert sorted(_trial_plans(str(again))) == sorted(_trial_plans(out.path))
    # resuming a finished one-shot sweep has nothing to do
    assert resume(out.path).nothing_to_do


@pytest.mark.parametrize("key, flag, asked, trained", [("nested_epochs", "--nested-epochs", 9, 6),
                                                        ("nested_lr", "--nested-lr", 0.02, 0.1)])
def test_a_relaunch_asking_another_nested_training_is_refused_and_keeps_the_model(sweep, tmp_path, capsys, key, flag,
                                                                                  asked, trained) -> None:
    out, root = sweep
    other = root / "runs" / f"other-{key}"
    other.mkdir()
    for name in (schema.SWEEP_FILE, schema.DENSE_RECORD_FILE, *MADE_ONCE):
        shutil.copy2(Path(out.path, name), other / name)
    record = yaml.safe_load((other / schema.SWEEP_FILE).read_text())
    record["launch"][key] = asked
    (other / schema.SWEEP_FILE).write_text(yaml.safe_dump(record))
    before = {f: (other / f).read_bytes() for f in MADE_ONCE}
    capsys.readouterr()
    assert main(["resume", str(other)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert f"was trained with {flag} {trained}, this launch asks for {asked}" in err[-1], err  # after progress
    assert {f: (other / f).read_bytes() for f in MADE_ONCE} == before
    assert not list(other.glob("trial_*"))


# -- SIGKILL of the driver (slow) -----------------------------------------------------------------

# the real MNIST subset makes an epoch last a second or more, so the kills land mid-step; lenet5 has
# no BatchNorm, and its nested training diverges at lr 0.05
SLOW_SPACE = {**SPACE, "dataset": "mnist5k", "epochs": 6, "train": {"lr": 0.01, "batch_size": 16}}
FINETUNE = 2  # a third of the space's epochs: a trial is seen started before it finishes


@pytest.mark.slow
@pytest.mark.ray
def test_sigkill_during_nested_training_and_fine_tuning_then_resume_runs_every_point_once(tmp_path) -> None:
    from _hardening import assert_complete_once, finished_on_disk, started_on_disk, wait_for

    space = _space(tmp_path, SLOW_SPACE)
    path = str(tmp_path / "runs" / "k")
    log = tmp_path / "driver.log"

    def killed(cmd: list[str], when, what: str, settle: float = 1.0) -> None:
        with open(log, "a") as fh:
            proc = subprocess.Popen([sys.executable, "-m", "rank_search", *cmd], stdout=fh, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            try:
                wait_for(lambda: when() or proc.poll() is not None, 600, what)
                assert proc.poll() is None, f"the driver ended before {what}: {log.read_text()[-2000:]}"
                time.sleep(settle)
            finally:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    killed(["launch", "--space", space, "--searcher", "oneshot", "--num-samples", "4", "--max-concurrent", "1",
            "--storage", str(tmp_path / "runs"), "--name", "k"],
           lambda: "training the nested model" in log.read_text(), "the nested training")
    assert not Path(path, schema.NESTED_RECORD_FILE).exists() and not started_on_disk(path)

    killed(["resume", path], lambda: os.path.isdir(path) and len(finished_on_disk(path, FINETUNE)) >= 1
           and len(started_on_disk(path)) > len(finished_on_disk(path, FINETUNE)), "one finished trial and one started",
           settle=0.2)  # a front of 2 points: the started trial, the last, must not finish first
    before = finished_on_disk(path, FINETUNE)
    stamps = {f: os.stat(Path(path, f)).st_mtime_ns for f in MADE_ONCE}
    trials = yaml.safe_load(Path(path, schema.SWEEP_FILE).read_text())["launch"]["num_samples"]
    assert 1 <= len(before) < trials

    done = subprocess.run([sys.executable, "-m", "rank_search", "resume", path], capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "training the nested model" not in done.stderr and "one-shot search:" not in done.stderr
    assert {f: os.stat(Path(path, f)).st_mtime_ns for f in MADE_ONCE} == stamps
    assert_complete_once(path, trials=trials, epochs=FINETUNE)
    after = finished_on_disk(path, FINETUNE)
    assert all(after[f] == text for f, text in before.items()), "a finished front point was run again"
    assert len(set(_trial_plans(path, epochs=FINETUNE))) == trials



def test_the_nested_training_distills_as_the_space_says() -> None:
    from search_spaces import space_from_mapping

    from rank_search.search.oneshot_sweep import nested_settings

    def distill(extra: dict) -> dict:
        space = space_from_mapping({**SPACE, **extra})
        return {k: v for k, v in nested_settings(space).items() if k.startswith("distill.")}

    assert distill({}) == {}
    assert distill({"distill": {"weight": 0.5, "temperature": {"float": [1, 3]}}}) == \
        {"distill.weight": 0.5, "distill.temperature": 2}


@pytest.mark.parametrize("scheme", ["tucker2", "spatial"])
def test_the_tasks_and_a_front_trial_without_ray(tmp_path, scheme) -> None:
    """The two tasks run as plain functions; a front point's trial, its plan read back from
    ``oneshot.csv``, fine-tunes the compact model of that point (same MACs), the scheme's ranks kept."""
    import io

    import torch
    from search_spaces import TrialSpec, space_from_mapping

    from rank_search.run import RunSpec, train
    from rank_search.search.oneshot_sweep import _to_csv, read_oneshot
    from rank_search.search.oneshot_tasks import nested_task, search_task
    from rank_search.search.reference import train_settings
    from rank_search.search.trial import run_spec

    space = space_from_mapping({**SPACE, "epochs": 1, "methods": {"nested": {"scheme": scheme, "min_ratio": 0.2}}})
    dense = train(RunSpec(model="lenet5", dataset="synthetic", method="full", epochs=1, settings={"train.lr": 0.1}))
    buffer = io.BytesIO()
    torch.save(dense.trainer.model.state_dict(), buffer)
    knobs, settings = {"min_ratio": 0.2}, train_settings(space)
    nested = nested_task(space.to_plain(), buffer.getvalue(), 1, scheme, knobs, settings, 1)
    taught = nested_task(space.to_plain(), buffer.getvalue(), 1, scheme, knobs,
                         {**settings, "distill.weight": 0.5, "distill.temperature": 1.0}, 1)
    assert "teacher" not in nested["record"]["run"] or nested["record"]["run"]["teacher"] is None
    assert taught["record"]["run"]["teacher"] == schema.DENSE_WEIGHTS_FILE and taught["weights"] != nested["weights"]
    found = search_task(space.to_plain(), buffer.getvalue(), nested["weights"], 1, scheme, knobs, settings, 12, 0)
    assert found["record"]["evaluated"] == len(found["rows"]) == 12
    (tmp_path / schema.ONESHOT_FILE).write_text(_to_csv(found["rows"]))
    rows = [r for r in read_oneshot(str(tmp_path)) if r["front"] and r["plan"].layers]
    row = max(rows, key=lambda r: r["macs_compression"])
    assert any(s == scheme and isinstance(rank, tuple if scheme == "tucker2" else int)
               for s, rank in row["plan"].layers.values())
    (tmp_path / "dense.pt").write_bytes(buffer.getvalue())
    (tmp_path / schema.NESTED_WEIGHTS_FILE).write_bytes(nested["weights"])
    trial = TrialSpec(method="nested", model="lenet5", dataset="synthetic", epochs=1,
                      knobs={**knobs, "scheme": scheme}, train={"lr": 0.1}, ranks=row["plan"],
                      dense=str(tmp_path / "dense.pt"), nested=str(tmp_path / schema.NESTED_WEIGHTS_FILE))
    result = train(run_spec(trial))
    assert result.metrics[schema.MACS_COMPRESSION] == pytest.approx(row["macs_compression"], rel=1e-9)
    assert result.trainer.method.plan.to_dict() == row["plan"].to_dict()

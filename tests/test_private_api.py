"""Private Ray and Optuna names (issue 27): all in ``search/_private_api.py``, behind a version
check whose range is pyproject's, and a moved experiment's study re-pointed without a patch."""
from __future__ import annotations

import os
import pickle
import re
import shutil
from pathlib import Path

import pytest

from rank_search.errors import RankSearchError
from rank_search.search import _private_api
from rank_search.search._private_api import TESTED, check_versions

ROOT = Path(__file__).resolve().parents[1]
PRIVATE = re.compile(r"\._ot_|\._backend\b|\._file_path\b|\._experiment\b|ray\._private|ray\.train\._internal|"
                     r"ray\.tune\.execution|\b_temp_dir\b|_should_force_sync_up|_schedule_trial_actor|on_trial_checkpoint")


def test_private_ray_and_optuna_names_appear_only_in_the_private_api_module() -> None:
    found = []
    for file in sorted((ROOT / "rank_search").rglob("*.py")):
        if file.name == "_private_api.py":
            continue
        for number, line in enumerate(file.read_text().splitlines(), start=1):
            if PRIVATE.search(line):
                found.append(f"{file.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not found, "\n".join(found)


def test_the_tested_range_is_the_range_pyproject_declares() -> None:
    text = (ROOT / "pyproject.toml").read_text()
    for name, requirement in (("ray", r"ray\[tune\]"), ("optuna", "optuna")):
        match = re.search(rf'"{requirement}>=(\d+)\.(\d+),<(\d+)\.(\d+)"', text)
        assert match, f"pyproject.toml declares no >=X.Y,<X.Y range for {name}"
        low, high = (int(match[1]), int(match[2])), (int(match[3]), int(match[4]))
        assert TESTED[name] == (low, high), name


def test_the_installed_ray_and_optuna_are_in_the_tested_range() -> None:
    check_versions()  # raises outside


@pytest.mark.parametrize("name, version", [("ray", "2.39.9"), ("ray", "2.61.0"), ("ray", "3.0.0"),
                                           ("optuna", "3.4.0"), ("optuna", "5.2.0rc1"), ("optuna", "6")])
def test_a_version_outside_the_range_is_one_line_naming_it(name, version) -> None:
    with pytest.raises(RankSearchError, match=rf"^{name} {re.escape(version)} is outside the range [^\n]*$"):
        check_versions({name: version})


@pytest.mark.parametrize("name", sorted(TESTED))
def test_both_ends_of_the_range_pass(name) -> None:
    (low, high) = TESTED[name]
    check_versions({name: f"{low[0]}.{low[1]}.0"})
    check_versions({name: f"{high[0]}.{high[1] - 1}.99"})


def test_the_sweep_classes_pickle_by_reference() -> None:
    for cls in (_private_api.SweepOptunaSearch, _private_api.SweepSearchGenerator):
        assert pickle.loads(pickle.dumps(cls)) is cls
        assert cls.__module__ == "rank_search.search._private_api"


def _searcher(folder: Path):
    from ray import tune

    from rank_search.search.tune_setup import study_storage

    folder.mkdir(exist_ok=True)
    return _private_api.SweepOptunaSearch(space={"x": tune.uniform(0, 1)}, metric="y", mode="max",
                                          storage=study_storage(str(folder)), study_name="rank_search")


def test_a_restored_searcher_follows_its_moved_journal_and_tells_the_study_there(tmp_path) -> None:
    import optuna

    launch = tmp_path / "launch"
    searcher = _searcher(launch)
    config = searcher.suggest("t1")  # a trial running when the driver stopped
    searcher.save(str(launch / "searcher.pkl"))

    moved = tmp_path / "moved"
    shutil.move(launch, moved)
    restored = _searcher(tmp_path / "elsewhere-made")  # what Tune unpickles, then restores
    with _private_api.resuming_at(str(moved)):
        restored.restore(str(moved / "searcher.pkl"))
    restored.on_trial_complete("t1", {"y": 0.5, **config})

    assert not os.path.exists(launch), "the restored searcher wrote to the launch location"
    journal = optuna.storages.journal.JournalFileBackend(str(moved / "optuna_study.log"))
    study = optuna.load_study(study_name="rank_search", storage=optuna.storages.JournalStorage(journal))
    assert [(t.state.name, t.values) for t in study.trials] == [("COMPLETE", [0.5])]


def test_outside_a_resume_a_restored_searcher_keeps_its_journal(tmp_path) -> None:
    searcher = _searcher(tmp_path)
    searcher.save(str(tmp_path / "searcher.pkl"))
    restored = _searcher(tmp_path / "other")
    restored.restore(str(tmp_path / "searcher.pkl"))
    restored.suggest("t1")
    assert (tmp_path / "optuna_study.log").stat().st_size > 0


def test_a_restored_generator_makes_new_trials_in_the_moved_folder(tmp_path) -> None:
    from ray import tune

    def trainable(config) -> None:  # never run: only the experiment spec is made
        pass

    def generator():
        return _private_api.SweepSearchGenerator(_searcher(tmp_path / "study"))

    launched = generator()
    launched.add_configurations([tune.Experiment("exp", run=trainable, storage_path=str(tmp_path / "launch"),
                                                 num_samples=3)])
    state = pickle.loads(pickle.dumps(launched.get_state()))  # as Tune saves and loads it
    moved = tmp_path / "moved" / "renamed"
    restored = generator()
    with _private_api.resuming_at(str(moved)):
        restored.set_state(state)
    trial = restored.next_trial()
    assert trial is not None and trial.storage.experiment_fs_path == str(moved)


def _refused_for_ray(capsys, argv: list[str]) -> None:
    from rank_search.cli import main

    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and re.search(r": ray \S+ is outside the range .*>=9\.0,<9\.1", err[0]), err


def test_launch_refuses_an_untested_ray_before_anything(monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.setitem(TESTED, "ray", ((9, 0), (9, 1)))
    monkeypatch.chdir(tmp_path)
    _refused_for_ray(capsys, ["launch", "--space", "demo", "--num-samples", "2", "--storage", str(tmp_path / "runs")])
    assert os.listdir(tmp_path) == []


def test_resume_refuses_an_untested_ray_before_it_touches_the_experiment(monkeypatch, tmp_path, capsys) -> None:
    from _experiments import hand_made

    exp = hand_made(tmp_path)
    before = {p: p.stat().st_mtime_ns for p in Path(exp).rglob("*")}
    monkeypatch.setitem(TESTED, "ray", ((9, 0), (9, 1)))
    _refused_for_ray(capsys, ["resume", str(exp)])
    assert {p: p.stat().st_mtime_ns for p in Path(exp).rglob("*")} == before


def _ray_optuna_names(tree) -> set[str]:
    """Names a module binds by importing from ray or optuna (any scope)."""
    import ast

    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names if a.name.split(".")[0] in ("ray", "optuna")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in ("ray", "optuna"):
            names |= {a.asname or a.name for a in node.names}
    return names


def _assigned_roots(node) -> list:
    """The root names of every attribute a statement assigns (``A.b = ``, ``A.b.c += ``, ``setattr(A, ...)``)."""
    import ast

    targets = []
    if isinstance(node, ast.Assign):
        targets = [t for target in node.targets for t in (target.elts if isinstance(target, ast.Tuple) else [target])]
    elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
        targets = [node.target]
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "setattr" and node.args:
        targets = [ast.Attribute(value=node.args[0], attr="?")]
    roots = []
    for target in targets:
        if isinstance(target, ast.Attribute):
            while isinstance(target, ast.Attribute):
                target = target.value
            if isinstance(target, ast.Name):
                roots.append(target.id)
    return roots


def test_no_attribute_of_a_ray_or_optuna_class_is_assigned() -> None:
    """Nothing in rank_search/ assigns an attribute of a name it imported from ray or optuna (a
    class, a module, a function): no runtime patch of either."""
    import ast

    found = []
    for file in sorted((ROOT / "rank_search").rglob("*.py")):
        tree = ast.parse(file.read_text())
        imported = _ray_optuna_names(tree)
        for node in ast.walk(tree):
            for root in _assigned_roots(node):
                if root in imported:
                    found.append(f"{file.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)[:120]}")
    assert not found, "\n".join(found)


def test_the_scan_finds_a_patch(tmp_path) -> None:
    import ast

    patch = ("from ray.tune.execution.tune_controller import TuneController\n"
             "import optuna\n"
             "def f(): pass\n"
             "TuneController._schedule_trial_actor = f\n"
             "optuna.samplers.RandomSampler.sample_relative += 1\n"
             "setattr(TuneController, 'checkpoint', f)\n")
    tree = ast.parse(patch)
    imported = _ray_optuna_names(tree)
    assert sorted(r for node in ast.walk(tree) for r in _assigned_roots(node) if r in imported) == [
        "TuneController", "TuneController", "optuna"]


# -- a study trial asked after the snapshot: enqueued again, once -----------------------------
def _journal_study(folder: Path):
    import optuna

    journal = optuna.storages.journal.JournalFileBackend(str(folder / "optuna_study.log"))
    return optuna.load_study(study_name="rank_search", storage=optuna.storages.JournalStorage(journal))


def test_a_study_trial_the_snapshot_never_knew_runs_next_and_once(tmp_path) -> None:
    searcher = _searcher(tmp_path)
    searcher.suggest("known")  # running when the snapshot was taken
    searcher.save(str(tmp_path / "searcher.pkl"))  # Tune's snapshot
    orphan = searcher.suggest("orphan")  # asked after it; then the driver is killed

    for made in ("made", "made-again"):  # a resume, then another one killed before its first trial
        restored = _searcher(tmp_path / made)
        restored.restore(str(tmp_path / "searcher.pkl"))
        states = [t.state.name for t in _journal_study(tmp_path).trials]
        assert states == ["RUNNING", "FAIL", "WAITING"], states  # enqueued once
    assert restored.suggest("next") == orphan  # the orphan's configuration, as the next trial
    assert [t.state.name for t in _journal_study(tmp_path).trials] == ["RUNNING", "FAIL", "RUNNING"]


def test_a_reclaim_cut_short_before_the_fail_is_finished_without_a_second_copy(tmp_path) -> None:
    from optuna.trial import TrialState

    searcher = _searcher(tmp_path)
    searcher.save(str(tmp_path / "searcher.pkl"))
    orphan = searcher.suggest("orphan")
    study = _journal_study(tmp_path)
    study.enqueue_trial(orphan, user_attrs={_private_api.RECLAIMS_ATTR: 0})  # killed right after this
    restored = _searcher(tmp_path / "made")
    restored.restore(str(tmp_path / "searcher.pkl"))
    trials = _journal_study(tmp_path).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING]


# -- the snapshot ordered by the scheduler ------------------------------------------------------
class _Checkpoint:
    def __init__(self, path: str) -> None:
        self.path = path


class _Trial:
    def __init__(self, trial_id: str) -> None:
        self.trial_id, self.checkpoint, self.status = trial_id, None, "RUNNING"


class _Controller:
    """What ``SnapshotFirst`` uses of Tune's controller wrapper: its trials and the controller's snapshot."""

    def __init__(self) -> None:
        self.trials, self.snapshots = [], []
        self._tune_controller = self

    def get_trials(self):
        return self.trials

    def checkpoint(self, force: bool = False, wait: bool = False) -> None:
        self.snapshots.append((force, wait, sorted(t.trial_id for t in self.trials)))


@pytest.mark.parametrize("scheduler", ["fifo", "asha", "mo-asha"])
def test_the_scheduler_snapshots_before_a_new_trial_starts_and_after_each_checkpoint(scheduler, tmp_path) -> None:
    from rank_search.search.settings import LaunchConfig
    from rank_search.search.tune_setup import make_scheduler

    sched = make_scheduler(LaunchConfig(space="x", scheduler=scheduler), path=str(tmp_path), epochs=6)
    assert isinstance(sched, _private_api.SnapshotFirst)
    tc = _Controller()
    sched.choose_trial_to_run(tc)
    assert tc.snapshots == [], "nothing changed, nothing written"
    tc.trials.append(_Trial("a"))
    sched.choose_trial_to_run(tc)  # the step that would start "a"
    assert tc.snapshots == [(True, True, ["a"])], "a new trial is listed, and the copy waited for, before it starts"
    sched.choose_trial_to_run(tc)
    assert len(tc.snapshots) == 1
    tc.trials[0].checkpoint = _Checkpoint("trial_a/checkpoint_000000")
    sched.choose_trial_to_run(tc)
    assert tc.snapshots[1:] == [(True, False, ["a"])], "a checkpoint is listed at the next step"
    tc.trials[0].checkpoint = _Checkpoint("trial_a/checkpoint_000001")
    tc.trials.append(_Trial("b"))
    sched.choose_trial_to_run(tc)
    assert tc.snapshots[2:] == [(True, True, ["a", "b"])]


def test_the_snapshot_schedulers_survive_the_tuner_pickle(tmp_path) -> None:
    from rank_search.search.settings import LaunchConfig
    from rank_search.search.tune_setup import make_scheduler

    for name in ("fifo", "asha"):
        sched = pickle.loads(pickle.dumps(make_scheduler(LaunchConfig(space="x", scheduler=name),
                                                         path=str(tmp_path), epochs=6)))
        assert isinstance(sched, _private_api.SnapshotFirst), name

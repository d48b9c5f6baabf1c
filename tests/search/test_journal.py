"""A journal that survives (issue 27): `resume` checks the Optuna journal before appending to it;
a cut last record is rolled back (the original kept), anything else unreadable is one line,
exit 2, before Ray; a missing journal with trials on disk too."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from rank_search import schema
from rank_search.cli import main
from rank_search.errors import RankSearchError
from rank_search.search.journal import check_journal

from _experiments import hand_made


def _study(folder: Path, trials: int = 3) -> Path:
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    file = folder / schema.STUDY_FILE
    study = optuna.create_study(study_name="rank_search", directions=["maximize", "maximize"],
                                storage=JournalStorage(JournalFileBackend(str(file))))
    for i in range(trials):
        t = study.ask()
        t.suggest_float("x", 0, 1)
        study.tell(t, [0.5 + i / 10, 1.0 + i])
    return file


def _trials(file: Path) -> int:
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return len(optuna.load_study(study_name="rank_search",
                                 storage=JournalStorage(JournalFileBackend(str(file)))).trials)


@pytest.mark.parametrize("tail", [b'{"op_code":4,"worker_id":"w","trial', b'{"op_code"',
                                  b'{"op_code":4,"worker_id":"w","trial_id":9,"sta{"op_code":5}\n'])
def test_a_cut_last_record_is_rolled_back_and_the_original_kept(tmp_path, capsys, tail) -> None:
    file = _study(tmp_path)
    whole = file.read_bytes()
    file.write_bytes(whole + tail)
    check_journal(str(tmp_path), trials_on_disk=3)
    assert file.read_bytes() == whole
    (backup,) = tmp_path.glob(f"{schema.STUDY_FILE}.torn-*")
    assert backup.read_bytes() == whole + tail
    assert "rolled back to the last complete record" in capsys.readouterr().err
    assert _trials(file) == 3
    check_journal(str(tmp_path), trials_on_disk=3)  # whole now: nothing more to do
    assert len(list(tmp_path.glob(f"{schema.STUDY_FILE}.torn-*"))) == 1


@pytest.mark.parametrize("damage, expected", [
    (lambda whole: b"Traceback (most recent call last):\n  garbage\n" + whole, "line 1 is not a JSON record"),
    (lambda whole: whole.replace(b"\n", b"\nnot json\n", 1), "line 2 is not a JSON record"),
    (lambda whole: b"\xff\xfe\x00garbage\n" * 3, "line 1 is not a JSON record"),
    (lambda whole: whole.split(b"\n", 1)[1], "Optuna cannot replay it"),  # the study's creation lost
])
def test_an_unreadable_journal_is_one_line(tmp_path, damage, expected) -> None:
    file = _study(tmp_path)
    file.write_bytes(damage(file.read_bytes()))
    before = file.read_bytes()
    with pytest.raises(RankSearchError, match=expected) as err:
        check_journal(str(tmp_path), trials_on_disk=3)
    assert "\n" not in str(err.value) and file.read_bytes() == before


def test_a_stale_journal_file_lock_is_removed_not_waited_on(tmp_path) -> None:
    file = _study(tmp_path)
    os.symlink(str(file) + ".gone", str(file) + ".lock")  # what a driver killed inside an append leaves
    check_journal(str(tmp_path), trials_on_disk=3)
    assert not os.path.lexists(str(file) + ".lock")


def _running(tmp_path) -> Path:
    return hand_made(tmp_path / "sweeps", trials={"a": "TERMINATED", "b": "RUNNING"})


def test_resume_with_a_garbage_journal_is_one_line_exit_2_before_ray(tmp_path, capsys) -> None:
    import ray

    exp = _running(tmp_path)
    (exp / schema.STUDY_FILE).write_text("Traceback (most recent call last):\n  File x\nValueError: y\n")
    code = main(["resume", str(exp)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "Optuna journal" in err[0] and "is damaged" in err[0], err
    assert not ray.is_initialized()


def test_resume_with_no_journal_but_trials_on_disk_is_one_line_exit_2(tmp_path, capsys) -> None:
    exp = _running(tmp_path)
    code = main(["resume", str(exp)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "2 trial(s) but no Optuna journal" in err[0], err
    assert not (exp / schema.STUDY_FILE).exists()

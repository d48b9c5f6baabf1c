"""`export` and `deploy` pick a sweep's trial and find its compact.pt through one helper
(``cli._pick.pick_checkpoint``): the same trial, the same file, the same errors."""
from __future__ import annotations

from pathlib import Path

import pytest

from rank_search import schema
from rank_search.cli import main

from _experiments import hand_made

PICKS = ("knee", "max-accuracy", "max-compression")


@pytest.fixture()
def exp(tmp_path: Path) -> Path:
    return hand_made(tmp_path / "sweeps")


@pytest.mark.parametrize("pick", PICKS)
def test_export_and_deploy_take_the_same_compact_file(exp: Path, tmp_path: Path, pick: str) -> None:
    from rank_search.cli._pick import pick_checkpoint
    from rank_search.cli.deploy import compact_of

    picked = pick_checkpoint(str(exp), pick=pick)
    assert picked.checkpoint == f"trial_{picked.trial_id}/checkpoint_000001"  # the final one
    weights = exp / picked.compact_weights()
    assert weights.is_file()
    with compact_of(str(exp), pick=pick, min_accuracy=None, max_macs=None) as (path, label):
        assert Path(path) == weights and f"(trial {picked.trial_id}, pick {pick})" in label
    out = tmp_path / f"{pick}.yaml"
    assert main(["export", str(exp), "--pick", pick, "--weights", "--out", str(out)]) == 0
    assert out.with_suffix(".pt").read_bytes() == weights.read_bytes()


def test_the_filters_reach_the_pick(exp: Path) -> None:
    from rank_search.cli._pick import pick_checkpoint
    from rank_search.errors import RankSearchError

    best = pick_checkpoint(str(exp), pick="max-accuracy")
    assert pick_checkpoint(str(exp), pick="knee", min_accuracy=0.6).trial_id == best.trial_id == "b"
    with pytest.raises(RankSearchError, match=r"no finished trial meets --min-accuracy 0.99"):
        pick_checkpoint(str(exp), pick="knee", min_accuracy=0.99)


def _one_line(capsys, argv: list[str]) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    return err[0]


def test_a_picked_trial_without_compact_weights_is_the_same_error_in_both(exp: Path, tmp_path: Path, capsys) -> None:
    for f in exp.glob(f"trial_*/checkpoint_*/{schema.COMPACT_WEIGHTS_FILE}"):
        f.unlink()
    want = f"has no {schema.COMPACT_WEIGHTS_FILE} in its final checkpoint in {str(exp)!r}"
    line = _one_line(capsys, ["export", str(exp), "--weights", "--out", str(tmp_path / "best.yaml")])
    assert line.startswith("rank-search export: error: trial ") and want in line
    line = _one_line(capsys, ["deploy", str(exp), "--format", "onnx", "--out", str(tmp_path / "m.onnx")])
    assert line.startswith("rank-search deploy: error: trial ") and want in line
    assert not list(tmp_path.glob("best.*")) and not list(tmp_path.glob("m.onnx*"))


def test_a_picked_trial_without_a_final_checkpoint_or_run_record(exp: Path, tmp_path: Path, capsys) -> None:
    for f in exp.glob(f"trial_*/checkpoint_000001/{schema.RUN_FILE}"):
        f.unlink()
    line = _one_line(capsys, ["export", str(exp), "--out", str(tmp_path / "best.yaml")])
    assert f"has no {schema.RUN_FILE} in its final checkpoint in {str(exp)!r}" in line
    import shutil

    for folder in exp.glob("trial_*/checkpoint_000001"):
        shutil.rmtree(folder)
    for argv in (["export", str(exp), "--out", str(tmp_path / "best.yaml")],
                 ["deploy", str(exp), "--format", "onnx", "--out", str(tmp_path / "m.onnx")]):
        assert f"has no final checkpoint in {str(exp)!r}" in _one_line(capsys, argv)

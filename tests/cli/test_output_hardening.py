"""What the read and write commands do with hostile or clashing files (issue 10): booby-trapped pickles
run no code, export copies checked weights and refuses an existing --out, output folders follow the
umask, a checkpoint naming another model or no plan."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from rank_search import schema
from rank_search.cli import main

from _experiments import booby_trap, hand_made

from _hardening import _one_line_exit_2


# -- item 2: status, export and analyze unpickle nothing; resume says it does -----------------
def test_status_export_analyze_run_no_code_from_booby_trapped_pickles(tmp_path, capsys) -> None:
    exp = hand_made(tmp_path / "sweeps")
    marker = tmp_path / "code-ran"
    booby_trap(exp, marker)
    assert main(["status", str(exp)]) == 0
    assert main(["export", str(exp), "--out", str(tmp_path / "best.yaml")]) == 0
    assert main(["analyze", str(exp), "--out", str(tmp_path / "report")]) == 0
    capsys.readouterr()
    # --weights checks the compact file it copies with weights_only=True: refused, nothing written
    assert main(["export", str(exp), "--weights", "--out", str(tmp_path / "w.yaml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot be read safely" in err[0] and "compact.pt" in err[0]
    assert not (tmp_path / "w.yaml").exists() and not (tmp_path / "w.pt").exists()
    assert not marker.exists(), "a command ran code from a pickle"


def test_export_weights_copies_a_checked_compact_file(tmp_path, capsys) -> None:
    exp = hand_made(tmp_path / "sweeps")
    assert main(["export", str(exp), "--weights", "--out", str(tmp_path / "best.yaml")]) == 0
    from rank_search.checkpoint import load_compact

    assert type(load_compact(str(tmp_path / "best.pt"))).__name__ == "LeNet5"


# -- item 11: housekeeping --------------------------------------------------------------------
def test_export_refuses_an_existing_out_and_writes_with_the_umask(tmp_path, capsys) -> None:
    exp = hand_made(tmp_path / "sweeps")
    out = tmp_path / "best.yaml"
    old = os.umask(0o022)
    try:
        assert main(["export", str(exp), "--weights", "--out", str(out)]) == 0
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == 0o644 and (tmp_path / "best.pt").stat().st_mode & 0o777 == 0o644
    capsys.readouterr()
    out.write_text("mine")
    line = _one_line_exit_2(capsys, ["export", str(exp), "--out", str(out)])
    assert "already exists" in line and "--overwrite" in line and out.read_text() == "mine"
    (tmp_path / "other.pt").write_text("mine too")  # --weights would overwrite OUT.pt
    line = _one_line_exit_2(capsys, ["export", str(exp), "--weights", "--out", str(tmp_path / "other.yaml")])
    assert "other.pt" in line and not (tmp_path / "other.yaml").exists()
    assert main(["export", str(exp), "--out", str(out), "--overwrite"]) == 0 and out.read_text() != "mine"


def test_train_and_analyze_out_folders_follow_the_umask(tmp_path) -> None:
    from rank_search.cli._output import atomic_output_dir

    old = os.umask(0o022)
    try:
        with atomic_output_dir(str(tmp_path / "out")) as tmp:
            Path(tmp, "f").write_text("x")
    finally:
        os.umask(old)
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o755


# -- item 6: a damaged sweep record on resume; compact checkpoints that do not fit ------------
def test_load_compact_of_a_checkpoint_naming_another_model_or_no_plan(tmp_path) -> None:
    import torch

    from rank_search.checkpoint import load_compact
    from rank_search.errors import RankSearchError

    exp = hand_made(tmp_path / "sweeps")
    data = torch.load(next(exp.glob(f"trial_a/checkpoint_000001/{schema.COMPACT_WEIGHTS_FILE}")), weights_only=True)
    for change, match in [({"model": "resnet20"}, r"does not fit model 'resnet20'"),
                          ({"plan": None}, r"lacks plan"),
                          ({"in_channels": "one"}, r"in_channels \(str, not int\)"),
                          ({"model": "nope"}, r"unknown model 'nope'")]:
        broken = {**data, **change}
        if change.get("plan", 1) is None:
            del broken["plan"]
        torch.save(broken, tmp_path / "c.pt")
        with pytest.raises(RankSearchError, match=match):
            load_compact(str(tmp_path / "c.pt"))

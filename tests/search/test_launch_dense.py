"""`launch --dense` and the target range are checked before any folder or Ray."""
from __future__ import annotations

import torch

from rank_search.cli import main


def test_dense_weights_of_another_model_are_refused_before_anything(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.pt"
    torch.save({"a": torch.zeros(1)}, bad)
    code = main(["launch", "--space", "demo", "--dense", str(bad), "--storage", str(tmp_path / "runs"), "--name", "x"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "--dense" in err[0] and "does not fit the model" in err[0] and "1 unexpected: a" in err[0]
    assert not (tmp_path / "runs").exists()


def test_min_max_compression_outside_the_range_is_refused(tmp_path, capsys) -> None:
    code = main(["launch", "--space", "demo", "--min-compression", "50", "--storage", str(tmp_path / "runs")])
    assert code == 2 and "leave no target in the space's range" in capsys.readouterr().err
    code = main(["launch", "--space", "demo", "--min-compression", "4", "--max-compression", "2",
                 "--storage", str(tmp_path / "runs")])
    assert code == 2 and "must be <= --max-compression" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()

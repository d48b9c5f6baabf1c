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


def _demo_dense(tmp_path) -> str:
    from rank_search.data import dataset_info
    from rank_search.models import create_model_for

    path = tmp_path / "dense.pt"
    torch.save(create_model_for("lenet5_wide", dataset_info("mnist5k")).state_dict(), path)
    return str(path)


def test_profile_without_dense_weights_is_refused(tmp_path, capsys) -> None:
    code = main(["launch", "--space", "demo", "--profile", str(tmp_path), "--storage", str(tmp_path / "runs")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--profile" in err[0] and "needs --dense" in err[0]
    assert not (tmp_path / "runs").exists()


def test_profile_of_another_model_or_for_a_space_without_budget_is_refused(tmp_path, capsys) -> None:
    from rank_search.allocation import Profile, save_profile

    prof = tmp_path / "prof"
    row = {"layer": "conv1", "scheme": "channel", "ratio": 1.0, "rank": "6", "val_accuracy": 0.9, "val_loss": 0.3,
           "energy": 1.0}
    save_profile(str(prof), Profile((row,), {"model": "resnet20", "dataset": "mnist5k", "dense_val_loss": 0.3}))
    dense = _demo_dense(tmp_path)
    code = main(["launch", "--space", "demo", "--dense", dense, "--profile", str(prof),
                 "--storage", str(tmp_path / "runs")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "measured on model 'resnet20'" in err[0] and "'lenet5_wide'" in err[0]
    # the right model, but rows for one layer only: the first layer without rows is named
    save_profile(str(prof), Profile((row,), {"model": "lenet5_wide", "dataset": "mnist5k", "dense_val_loss": 0.3}))
    code = main(["launch", "--space", "demo", "--dense", dense, "--profile", str(prof),
                 "--storage", str(tmp_path / "runs")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "does not fit space 'demo'" in err[0] and "no rows for layer" in err[0]
    # a space with per-group ratios has no allocation to use it
    space = tmp_path / "ratios.yaml"
    space.write_text("model: lenet5_wide\ndataset: mnist5k\nepochs: 1\nmethods: {posthoc: {}}\n"
                     "ranks: {grouping: per_layer, ratio: {float: [0.1, 0.5]}}\n")
    code = main(["launch", "--space", str(space), "--dense", dense, "--profile", str(prof),
                 "--storage", str(tmp_path / "runs")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "budget-driven space only" in err[0]
    assert not (tmp_path / "runs").exists()

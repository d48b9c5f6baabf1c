"""Files that parse but are wrong (issue 27): `--dense` weights holding NaN, a `--profile` whose
sensitivity.csv holds NaN or was cut mid-row, and an experiment whose own profile was damaged
before a `resume`: each one line, exit 2, before any folder or Ray."""
from __future__ import annotations

import json

import pytest
import torch
import yaml

from rank_search import schema
from rank_search.cli import main

from _experiments import hand_made

BUDGET = {
    "model": "lenet5", "dataset": "synthetic", "epochs": 2,
    "methods": {"posthoc": {}, "factorized": {}},
    "train": {"lr": {"float": [0.05, 0.2], "log": True}},
    "ranks": {"allocation": "sensitivity", "target": {"float": [1.5, 3.0], "log": True}, "proxy": "bn"},
}


def _one_line(capsys, argv) -> str:
    import ray

    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert not ray.is_initialized()
    return err[0]


def _dense(path, *, fill=None) -> str:
    from rank_search.models import create_model

    torch.manual_seed(0)
    model = create_model("lenet5", in_channels=1, num_classes=10, image_size=8)
    state = model.state_dict()
    if fill is not None:
        state["features.0.weight"] = torch.full_like(state["features.0.weight"], fill)
    torch.save(state, path)
    return str(path)


def _profile(folder) -> str:
    """A complete, finite profile of lenet5 on synthetic (every eligible layer, both schemes)."""
    from rank_search.models import create_model
    from rank_search.plan import eligible_layers
    from rank_search.tables import Profile, save_profile

    model = create_model("lenet5", in_channels=1, num_classes=10, image_size=8)
    rows = [{"layer": name, "scheme": scheme, "ratio": r, "rank": "1", "val_accuracy": 0.9, "val_loss": 0.3 + 1 - r,
             "energy": r, "macs": 10.0, "layer_macs": 10.0}
            for name in eligible_layers(model) for scheme in ("channel", "spatial", "tucker2", "tiled", "cp")
            for r in (0.25, 0.5, 1.0)]
    save_profile(str(folder), Profile(tuple(rows), {"model": "lenet5", "dataset": "synthetic",
                                                    "dense_val_loss": 0.3}))
    return str(folder)


@pytest.fixture
def space(tmp_path):
    path = tmp_path / "budget.yaml"
    path.write_text(yaml.safe_dump(BUDGET))
    return str(path)


@pytest.mark.parametrize("fill", [float("nan"), float("inf")])
def test_dense_weights_holding_non_finite_values_are_refused(tmp_path, capsys, space, fill) -> None:
    dense = _dense(tmp_path / "dense.pt", fill=fill)
    line = _one_line(capsys, ["launch", "--space", space, "--dense", dense, "--storage", str(tmp_path / "runs")])
    assert "--dense" in line and "non-finite values" in line and "features.0.weight" in line
    assert not (tmp_path / "runs").exists()


def _damage(folder: str, how: str) -> None:
    csv = f"{folder}/{schema.PROFILE_FILE}"
    text = open(csv).read()
    lines = text.splitlines()
    if how == "nan":
        cells = lines[1].split(",")
        cells[5] = "nan"  # val_loss
        lines[1] = ",".join(cells)
        text = "\n".join(lines) + "\n"
    elif how == "cut":
        text = text[: text.rindex(lines[-1]) + 12]  # the last row cut after a few characters
    elif how == "meta":
        meta = f"{folder}/{schema.PROFILE_META_FILE}"
        open(meta, "w").write(yaml.safe_dump({"model": "lenet5", "dataset": "synthetic", "dense_val_loss": float("nan")}))
    open(csv, "w").write(text)


@pytest.mark.parametrize("how, expected", [("nan", "not a finite number"), ("cut", "sensitivity.csv line"),
                                           ("meta", "dense_val_loss")])
def test_a_damaged_profile_is_refused_at_launch(tmp_path, capsys, space, how, expected) -> None:
    dense = _dense(tmp_path / "dense.pt")
    good = _profile(tmp_path / "prof")
    from rank_search.search import LaunchConfig
    from rank_search.search.sweep import preflight

    preflight(LaunchConfig(space=space, dense=dense, profile=good, storage=str(tmp_path / "runs")))  # passes whole
    _damage(good, how)
    line = _one_line(capsys, ["launch", "--space", space, "--dense", dense, "--profile", good,
                              "--storage", str(tmp_path / "runs")])
    assert expected in line and "prof" in line
    assert not (tmp_path / "runs").exists()


def test_resume_refuses_an_experiment_whose_own_profile_was_damaged(tmp_path, capsys) -> None:
    from search_spaces import space_from_mapping

    exp = hand_made(tmp_path / "sweeps", trials={"a": "TERMINATED", "b": "RUNNING"})
    record = yaml.safe_load((exp / schema.SWEEP_FILE).read_text())
    record["space"] = space_from_mapping(BUDGET, name="budget").to_plain()
    (exp / schema.SWEEP_FILE).write_text(yaml.safe_dump(record))
    _dense(exp / schema.DENSE_WEIGHTS_FILE)
    _profile(exp)
    _damage(str(exp), "cut")
    before = sorted(p.name for p in exp.iterdir())
    line = _one_line(capsys, ["resume", str(exp)])
    assert "sensitivity.csv line" in line and str(exp) in line
    assert sorted(p.name for p in exp.iterdir()) == before  # the lock went with its release

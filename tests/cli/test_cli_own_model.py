"""Your own model and your own weights through the CLI: `layers`, `train` (and `--config`),
`train --init` (a trained dense model saved, loaded and evaluated equal), a 2-trial `launch` on
the own model and `deploy` of the sweep's pick; the error paths as one line and exit code 2."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import yaml

from rank_search import schema
from rank_search.checkpoint import load_compact
from rank_search.cli import main
from rank_search.engine import evaluate

OWN_DIR = str(Path(__file__).resolve().parents[1] / "models")  # holds own_net.py
OWN = "own_net:tiny_convnet"
SPACE = {
    "model": OWN, "dataset": "synthetic", "epochs": 1,
    "methods": {"factorized": {}, "full": {}},
    "train": {"lr": 0.05},
    "ranks": {"grouping": "per_layer", "ratio": {"float": [0.2, 0.8]}},
}


@pytest.fixture(scope="module", autouse=True)
def own_models_importable():
    """own_net on sys.path here, and on PYTHONPATH for the Ray workers the sweep starts."""
    patch = pytest.MonkeyPatch()
    patch.syspath_prepend(OWN_DIR)
    patch.setenv("PYTHONPATH", os.pathsep.join(p for p in (OWN_DIR, os.environ.get("PYTHONPATH")) if p))
    yield
    patch.undo()


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def dense_run(tmp_path_factory) -> Path:
    """The own model trained dense (`full`)."""
    out = tmp_path_factory.mktemp("own") / "dense"
    assert main(["train", "--model", OWN, "--dataset", "synthetic", "--method", "full", "--epochs", "2",
                 "--out", str(out)]) == 0
    return out


def test_layers_lists_the_own_models_layers(capsys) -> None:
    code, stdout, _ = _run(capsys, "layers", "--model", OWN, "--dataset", "synthetic")
    assert code == 0
    rows = [line.split() for line in stdout.splitlines()[1:5]]
    assert [(r[0], r[1]) for r in rows[1:3]] == [("*", "body"), ("*", "mix")]
    assert rows[0][0] == "stem" and rows[3][0] == "head"
    assert f"{OWN} on synthetic (1, 8, 8)" in stdout and "2 layers in a uniform plan" in stdout


def test_train_and_retrain_from_config(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    code, _, _ = _run(capsys, "train", "--model", OWN, "--dataset", "synthetic", "--method", "posthoc",
                      "--ranks", "ratio:0.5", "--epochs", "2", "--out", str(out))
    assert code == 0
    plan = yaml.safe_load((out / schema.PLAN_FILE).read_text())
    assert plan["model"] == OWN and list(plan["layers"]) == ["body", "mix"]
    metrics = json.loads((out / schema.METRICS_FILE).read_text())
    assert metrics[schema.PARAMS_COMPRESSION] > 1
    model = load_compact(str(out / schema.COMPACT_WEIGHTS_FILE))  # rebuilt by its import path
    from rank_search.data import load_dataset

    accuracy, _ = evaluate(model, load_dataset("synthetic").test, torch.device("cpu"))
    assert accuracy == metrics[schema.TEST_ACCURACY]
    again = tmp_path / "again"
    code, _, _ = _run(capsys, "train", "--config", str(out / schema.CONFIG_FILE), "--out", str(again))
    assert code == 0
    assert json.loads((again / schema.METRICS_FILE).read_text())[schema.TEST_ACCURACY] == metrics[schema.TEST_ACCURACY]


def test_init_starts_from_the_saved_dense_weights(dense_run, tmp_path, capsys, synthetic_data) -> None:
    from rank_search.run import RunSpec, prepare
    from rank_search.weights import save_weights

    trained = json.loads((dense_run / schema.METRICS_FILE).read_text())[schema.TEST_ACCURACY]
    weights = tmp_path / "dense.pt"
    save_weights(load_compact(str(dense_run / schema.COMPACT_WEIGHTS_FILE)), str(weights))  # a plain state_dict
    for init in (str(weights), str(dense_run / schema.COMPACT_WEIGHTS_FILE)):  # a full run's compact.pt works too
        trainer = prepare(RunSpec(model=OWN, dataset="synthetic", method="full", epochs=1, init=init))
        assert evaluate(trainer.dense, synthetic_data.test, torch.device("cpu"))[0] == trained
        assert evaluate(trainer.model, synthetic_data.test, torch.device("cpu"))[0] == trained

    out = tmp_path / "compressed"
    code, _, stderr = _run(capsys, "train", "--model", OWN, "--dataset", "synthetic", "--method", "posthoc", "--ranks",
                           "ratio:0.5", "--epochs", "2", "--init", str(weights), "--out", str(out))
    assert code == 0, stderr
    assert yaml.safe_load((out / schema.CONFIG_FILE).read_text())["run"]["init"] == str(weights)


def test_errors_are_one_line_and_exit_2(dense_run, tmp_path, capsys) -> None:
    lenet = tmp_path / "lenet.pt"
    from rank_search.models import create_model
    from rank_search.weights import save_weights

    save_weights(create_model("lenet5", in_channels=1, num_classes=10, image_size=8), str(lenet))
    base = ["train", "--dataset", "synthetic", "--method", "full", "--epochs", "1", "--out", str(tmp_path / "o")]
    cases = [
        ([*base, "--model", "own_net:not_a_module"], "the builder returned a dict, not a torch.nn.Module"),
        ([*base, "--model", "own_net:missing"], "module 'own_net' has no attribute 'missing'"),
        ([*base, "--model", "no_such_pkg_xyz.net:build"], "module 'no_such_pkg_xyz.net' does not import"),
        ([*base, "--model", OWN, "--init", str(lenet)],
         "init '" + str(lenet) + "' does not fit the model (21 keys): 21 missing: stem.weight, stem_bn.weight, "
         "stem_bn.bias (+18 more); 10 unexpected: features.0.weight, features.0.bias, features.3.weight (+7 more)"),
        ([*base, "--model", OWN, "--init", str(tmp_path / "none.pt")], "does not exist"),
        (["layers", "--model", "own_net:NOT_CALLABLE", "--dataset", "synthetic"], "is a int, not a callable builder"),
    ]
    for argv, message in cases:
        code, _, stderr = _run(capsys, *argv)
        assert code == 2, argv
        assert message in stderr and stderr.count("\n") == 1, stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.ray
def test_launch_on_the_own_model_then_deploy_the_knee(private_ray, tmp_path, capsys) -> None:
    space = tmp_path / "own.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    code, stdout, stderr = _run(capsys, "launch", "--space", str(space), "--num-samples", "2", "--storage",
                                str(tmp_path), "--name", "own", "--max-concurrent", "2")
    assert code == 0, stderr
    exp = tmp_path / "own"
    out = tmp_path / "knee.onnx"
    code, stdout, stderr = _run(capsys, "deploy", str(exp), "--pick", "knee", "--format", "onnx", "--out", str(out))
    assert code == 0, stderr
    meta = yaml.safe_load(Path(f"{out}.yaml").read_text())
    assert meta["model"] == OWN and "(trial " in meta["source"] and "pick knee" in meta["source"]
    assert meta["batchnorm_folded"].keys() >= {"stem_bn"} and "mix_bn" not in meta["batchnorm_folded"]

"""`rank-search` CLI: a real run end to end, then every expected error as one line and exit code 2."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from rank_search import schema
from rank_search.checkpoint import load_compact, read_compact, save_compact
from rank_search.cli import main
from rank_search.cli.train import EXIT_DIVERGED
from rank_search.engine import evaluate
from rank_search.errors import RankSearchError
from rank_search.layers import FactorizedLayer
from rank_search.plan import RankPlan

TRAIN = ["train", "--model", "lenet5", "--dataset", "synthetic", "--method", "posthoc", "--ranks", "ratio:0.5",
         "--epochs", "2"]
LENET_LAYERS = ["features.0", "features.3", "classifier.1", "classifier.3", "classifier.5"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main([*TRAIN, "--set", "train.weight_decay=5e-4", "--out", str(out)]) == 0
    return out


def _metrics(folder: Path) -> dict:
    return json.loads((folder / schema.METRICS_FILE).read_text())


def test_train_writes_all_outputs(run_dir: Path) -> None:
    assert sorted(os.listdir(run_dir)) == sorted(
        [schema.METRICS_FILE, schema.PLAN_FILE, schema.RUN_FILE, schema.CONFIG_FILE, schema.COMPACT_WEIGHTS_FILE])
    assert not [p for p in os.listdir(run_dir.parent) if ".partial-" in p]  # the temporary folder is gone
    # the run record (what trials write too) holds the integer plan of plan.yaml
    record = yaml.safe_load((run_dir / schema.RUN_FILE).read_text())["run"]
    assert record["ranks"]["layers"] == yaml.safe_load((run_dir / schema.PLAN_FILE).read_text())["layers"]

    metrics = _metrics(run_dir)
    assert set(schema.REQUIRED_TRAIN_METRICS) <= set(metrics)
    for key in (schema.VAL_ACCURACY, schema.TEST_ACCURACY):
        assert 0.0 <= metrics[key] <= 1.0
    assert metrics[schema.EPOCHS] == 2
    assert metrics[schema.PARAMS_COMPRESSION] == metrics[schema.DENSE_PARAMS] / metrics[schema.COMPACT_PARAMS] > 1

    plan_data = yaml.safe_load((run_dir / schema.PLAN_FILE).read_text())
    assert (plan_data["model"], plan_data["dataset"], plan_data["method"]) == ("lenet5", "synthetic", "posthoc")
    assert list(plan_data["layers"]) == ["features.3", "classifier.1", "classifier.3"]
    for entry in plan_data["layers"].values():
        assert entry["scheme"] == "channel" and type(entry["rank"]) is int
    # ratio:0.5 of the max ranks 16, 64 and 84
    assert [e["rank"] for e in plan_data["layers"].values()] == [8, 32, 42]

    config = yaml.safe_load((run_dir / schema.CONFIG_FILE).read_text())
    assert config["run"]["model"] == "lenet5" and config["run"]["ranks"] == "ratio:0.5"
    assert config["run"]["epochs"] == 2
    assert config["run"]["settings"] == {"train.weight_decay": 5e-4}

    raw = torch.load(run_dir / schema.COMPACT_WEIGHTS_FILE, weights_only=True)
    assert raw["format"] == "rank-search/compact-v1" and raw["plan"] == {k: v for k, v in plan_data.items()
                                                                         if k == "layers"}


def test_compact_checkpoint_reproduces_the_test_accuracy(run_dir: Path, synthetic_data) -> None:
    model = load_compact(str(run_dir / schema.COMPACT_WEIGHTS_FILE))
    assert not model.training
    assert isinstance(model.features[3], FactorizedLayer) and model.features[3].rank == 8
    accuracy, _ = evaluate(model, synthetic_data.test, torch.device("cpu"))
    assert accuracy == _metrics(run_dir)[schema.TEST_ACCURACY]


def test_train_from_config_reproduces_the_run(run_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "again"
    assert main(["train", "--config", str(run_dir / schema.CONFIG_FILE), "--out", str(out)]) == 0
    first = yaml.safe_load((run_dir / schema.PLAN_FILE).read_text())
    again = yaml.safe_load((out / schema.PLAN_FILE).read_text())
    assert again == first
    drop = {schema.WALL_SECONDS}
    a, b = _metrics(run_dir), _metrics(out)
    assert {k: v for k, v in a.items() if k not in drop} == {k: v for k, v in b.items() if k not in drop}
    printed = capsys.readouterr().out
    assert "features.3" in printed and schema.TEST_ACCURACY in printed


def test_plan_file_is_reusable_as_ranks(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "from-plan"
    assert main(["train", "--model", "lenet5", "--dataset", "synthetic", "--method", "factorized", "--epochs", "1",
                 "--ranks", str(run_dir / schema.PLAN_FILE), "--out", str(out)]) == 0
    first = yaml.safe_load((run_dir / schema.PLAN_FILE).read_text())["layers"]
    again = yaml.safe_load((out / schema.PLAN_FILE).read_text())["layers"]
    assert again == first  # the per-layer schemes in the file win over factorized's default (tucker2)


def test_flags_override_the_config(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "override"
    assert main(["train", "--config", str(run_dir / schema.CONFIG_FILE), "--ranks", "4", "--epochs", "2",
                 "--out", str(out)]) == 0
    plan = yaml.safe_load((out / schema.PLAN_FILE).read_text())
    assert [e["rank"] for e in plan["layers"].values()] == [4, 4, 4]


def test_overwrite_replaces_a_non_empty_out(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("x")
    assert main(["train", "--model", "lenet5", "--dataset", "synthetic", "--method", "full", "--epochs", "1",
                 "--out", str(out), "--overwrite"]) == 0
    assert not (out / "old.txt").exists() and (out / schema.METRICS_FILE).exists()


def test_layers_command(capsys) -> None:
    assert main(["layers", "--model", "lenet5"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["layer", "type", "weight"]
    for scheme in ("channel", "spatial", "tiled", "tucker2"):
        assert f"max[{scheme}]" in lines[0]
    rows = {line.split()[1] if line.startswith("*") else line.split()[0]: line for line in lines[1:6]}
    assert list(rows) == LENET_LAYERS
    assert rows["features.3"].startswith("*") and not rows["features.0"].startswith("*")
    assert not rows["classifier.5"].startswith("*")
    assert "16x6x5x5" in rows["features.3"]
    assert "lenet5 on mnist5k" in out and "3 layers in a uniform plan" in out


@pytest.mark.parametrize("args,expected", [
    (["--model", "lenet6"], "unknown model 'lenet6'; valid choices: "),
    (["--model", "lenet5", "--dataset", "mnist"], "unknown dataset 'mnist'; valid choices: "),
])
def test_layers_command_errors(args: list[str], expected: str, capsys) -> None:
    assert main(["layers", *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("rank-search layers: error: ") and expected in lines[0]


# ---- errors: one line on stderr, exit code 2, --out never created ----

def _plan_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "plan.yaml"
    path.write_text(text)
    return str(path)


ERROR_CASES = [
    ("unknown-model", ["--model", "lenet6"], [r"unknown model 'lenet6'", "valid choices:", "lenet5", "resnet20"]),
    ("unknown-dataset", ["--dataset", "mnist"], [r"unknown dataset 'mnist'", "valid choices:", "mnist5k", "synthetic"]),
    ("unknown-method", ["--method", "magic"], [r"unknown method 'magic'", "valid choices:", "full", "posthoc"]),
    ("ratio-abc", ["--ranks", "ratio:abc"], ["bad rank spec 'ratio:abc'", "'abc' is not a number"]),
    ("foo-kind", ["--ranks", "foo:1"], ["bad rank spec 'foo:1'", "kind must be one of fixed, ratio, energy, value"]),
    ("plan-unknown-layer", ["--ranks", "PLAN:features.9: 2\n"],
     ["unknown layer 'features.9' in rank plan", "valid layers: " + ", ".join(LENET_LAYERS)]),
    ("plan-rank-too-big", ["--ranks", "PLAN:features.3: 99\n"],
     ["rank for layer 'features.3' must be in [1, 16], got 99"]),
    ("plan-invalid-yaml", ["--ranks", "PLAN:features.3: [1, 2\n"], ["is not valid YAML"]),
    ("plan-missing", ["--ranks", "nowhere.yaml"], ["rank plan file 'nowhere.yaml' does not exist"]),
    ("cifar-no-root", ["--dataset", "cifar10"], ["cifar10 needs a data root", "--data-root"]),
    ("unknown-set-key", ["--set", "train.foo=1"],
     ["unknown setting 'train.foo'", "valid settings: train.lr, train.momentum"]),
    ("negative-lr", ["--set", "train.lr=-1"], ["train.lr must be a finite number > 0, got -1"]),
    ("bad-lr", ["--set", "train.lr=fast"], ["train.lr must be a number, got 'fast'"]),
    ("set-no-equals", ["--set", "train.lr"], ["--set expects key=value, got 'train.lr'"]),
    ("set-bad-prefix", ["--set", "trp.interval=5"], ["setting 'trp.interval' must start with 'train.', 'distill.' or 'posthoc.'"]),
    ("zero-epochs", ["--epochs", "0"], ["epochs must be an integer >= 1, got 0"]),
    ("bad-scheme", ["--scheme", "cp"], ["unknown scheme 'cp'", "valid choices: channel, spatial, tiled, tucker2"]),
    ("missing-config", ["--config", "nowhere.yaml"], ["config file 'nowhere.yaml' does not exist"]),
    ("config-invalid-yaml", ["--config", "FILE:run: [1\n"], ["is not valid YAML"]),
    ("config-not-mapping", ["--config", "FILE:- 1\n"], ["must hold a mapping"]),
    ("config-run-not-mapping", ["--config", "FILE:run: [1, 2]\n"], ["'run' in config file", "must be a mapping, got list"]),
    ("config-settings-list", ["--config", "FILE:run:\n  settings: [train.lr=1]\n"],
     ["'settings' in --config must be a mapping", "got list"]),
    ("config-unknown-key", ["--config", "FILE:run:\n  learning_rate: 1\n"],
     ["unknown key(s) ['learning_rate']", "valid keys: model, dataset, method, ranks"]),
]


def _replace_flag(args: list[str], flag: str, value: str) -> list[str]:
    if flag in args:
        args = list(args)
        args[args.index(flag) + 1] = value
        return args
    return [*args, flag, value]


@pytest.mark.parametrize("extra,expected", [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES])
def test_train_errors(extra: list[str], expected: list[str], tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    args = list(TRAIN)
    for flag, value in zip(extra[::2], extra[1::2]):
        if value.startswith("PLAN:"):
            value = _plan_file(tmp_path, value[len("PLAN:"):])
        elif value.startswith("FILE:"):
            path = tmp_path / "config.yaml"
            path.write_text(value[len("FILE:"):])
            value = str(path)
        args = _replace_flag(args, flag, value) if flag != "--set" else [*args, flag, value]
    out = tmp_path / "out"
    assert main([*args, "--out", str(out)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("rank-search train: error: ")
    for text in expected:
        assert text in lines[0], (text, lines[0])
    assert not out.exists()
    assert not [p for p in os.listdir(tmp_path) if ".partial-" in p]


def test_existing_non_empty_out_is_refused(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    assert main([*TRAIN, "--out", str(out)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert "already exists and is not empty; choose another or pass --overwrite" in lines[0]
    assert os.listdir(out) == ["keep.txt"] and (out / "keep.txt").read_text() == "precious"


@pytest.mark.parametrize("where,match", [
    ("missing-parent/out", "parent folder of --out"),
    ("a-file", "exists and is not a directory"),
])
def test_bad_out_paths(where: str, match: str, tmp_path: Path, capsys) -> None:
    (tmp_path / "a-file").write_text("x")
    assert main([*TRAIN, "--out", str(tmp_path / where)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and match in lines[0]
    assert sorted(os.listdir(tmp_path)) == ["a-file"]


def test_divergence_is_an_error_and_leaves_no_output(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    # its own exit code (issue 11: 2 means bad input), documented in the README
    assert main([*TRAIN, "--set", "train.lr=1e6", "--out", str(out)]) == EXIT_DIVERGED == 3
    lines = capsys.readouterr().err.splitlines()
    assert "training diverged" in lines[-1] and lines[-1].startswith("rank-search train: error: ")
    assert not out.exists()
    assert not [p for p in os.listdir(tmp_path) if ".partial-" in p]


# ---- checkpoints ----

def test_load_compact_errors(run_dir: Path, tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes((run_dir / schema.COMPACT_WEIGHTS_FILE).read_bytes()[:200])
    with pytest.raises(RankSearchError, match=r"checkpoint '.*corrupt.pt' cannot be read safely"):
        load_compact(str(corrupt))
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(RankSearchError, match=r"cannot be read safely"):
        load_compact(str(garbage))
    with pytest.raises(RankSearchError, match=r"checkpoint '.*missing.pt' does not exist"):
        load_compact(str(tmp_path / "missing.pt"))
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(RankSearchError, match=r"is not a rank-search compact checkpoint \(format rank-search/compact-v1\)"):
        load_compact(str(foreign))
    # A state dict that does not fit the stored plan.
    data = read_compact(str(run_dir / schema.COMPACT_WEIGHTS_FILE))
    data["plan"]["layers"]["features.3"]["rank"] = 4
    mismatched = tmp_path / "mismatched.pt"
    torch.save(data, mismatched)
    with pytest.raises(RankSearchError, match=r"checkpoint '.*mismatched.pt' does not match its plan"):
        load_compact(str(mismatched))


def test_save_and_load_compact_round_trip(tmp_path: Path, lenet5) -> None:
    from rank_search.plan import build_plan
    from rank_search.surgery import compress

    plan = build_plan(lenet5, {"features.3": {"scheme": "tucker2", "rank": [4, 3]},
                               "classifier.1": {"scheme": "tiled", "rank": 3, "tiles": [2, 2]}})
    compact = compress(lenet5, plan).eval()
    path = tmp_path / "c.pt"
    save_compact(str(path), compact, plan=plan, model="lenet5", dataset="synthetic", method="posthoc",
                 in_channels=1, num_classes=10, image_size=8)
    loaded = load_compact(str(path))
    assert RankPlan.from_dict(read_compact(str(path))["plan"]) == plan
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded(x), compact(x))


# ---- the installed console script ----

def test_console_script_help() -> None:
    script = Path(sys.executable).parent / "rank-search"
    assert script.exists(), f"console script missing at {script}; is the package installed?"
    proc = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "usage: rank-search" in proc.stdout
    for command in ("train", "layers"):
        assert command in proc.stdout

"""`rank-search deploy` and `rank-search evaluate` end to end on a trained run, and every expected
error as one line and exit code 2."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from rank_search import schema
from rank_search.cli import main

TRAIN = ["train", "--model", "lenet5_wide", "--dataset", "synthetic", "--method", "posthoc", "--ranks", "ratio:0.5",
         "--epochs", "2"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli-deploy") / "run"
    assert main([*TRAIN, "--out", str(out)]) == 0
    return out


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("fmt, suffix", [("onnx", ".onnx"), ("torch-export", ".pt2")])
def test_deploy_then_evaluate_gives_the_runs_test_accuracy(run_dir, tmp_path, capsys, monkeypatch, fmt,
                                                           suffix) -> None:
    import sys

    compact = run_dir / schema.COMPACT_WEIGHTS_FILE
    out = tmp_path / f"model{suffix}"
    monkeypatch.setattr(sys, "argv", [".venv/bin/rank-search"])  # the hint is the command as invoked
    code, stdout, _ = _run(capsys, "deploy", str(compact), "--format", fmt, "--out", str(out))
    assert code == 0
    assert f"deployed {compact} as {fmt}: {out} (+ model{suffix}.yaml)" in stdout
    assert "BatchNorm folded: 3 layer(s); batch dimension dynamic" in stdout
    assert f"measure it with: .venv/bin/rank-search evaluate {out} --dataset synthetic" in stdout
    side = yaml.safe_load(Path(f"{out}.yaml").read_text())
    assert side["parity_max_abs_diff"] <= 1e-4 and side["source"] == str(compact)

    code, stdout, _ = _run(capsys, "evaluate", str(out), "--dataset", "synthetic", "--json", "--repeats", "2")
    assert code == 0
    result = json.loads(stdout)
    metrics = json.loads((run_dir / schema.METRICS_FILE).read_text())
    assert result[schema.TEST_ACCURACY] == metrics[schema.TEST_ACCURACY]
    assert result[schema.MACS] == metrics[schema.COMPACT_MACS]
    assert result[schema.EVAL_FORMAT] == fmt and result[schema.latency_key(64)] > 0


def test_evaluate_prints_a_table_for_a_compact_checkpoint(run_dir, capsys) -> None:
    code, stdout, _ = _run(capsys, "evaluate", str(run_dir / schema.COMPACT_WEIGHTS_FILE), "--dataset", "synthetic",
                           "--repeats", "2")
    assert code == 0
    lines = stdout.splitlines()
    assert lines[0].endswith("compact.pt (compact)")
    assert [line.split()[0] for line in lines[1:6]] == [schema.TEST_ACCURACY, schema.PARAMS, schema.MACS,
                                                       schema.latency_key(1), schema.latency_key(64)]
    assert "median of 2 runs" in lines[-1]


def test_errors_are_one_line_and_exit_2(run_dir, tmp_path, capsys) -> None:
    compact = str(run_dir / schema.COMPACT_WEIGHTS_FILE)
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("hi")
    cases = [
        (["deploy", compact, "--format", "tflite", "--out", str(tmp_path / "m")],
         "argument --format: unknown format 'tflite'; valid choices: onnx, torch-export"),
        (["deploy", compact, "--format", "onnx", "--out", str(tmp_path / "no" / "m.onnx")], "folder of --out"),
        (["deploy", str(tmp_path / "missing.pt"), "--format", "onnx", "--out", str(tmp_path / "m.onnx")],
         "is neither a compact.pt file nor an experiment folder"),
        (["deploy", str(tmp_path / "notes.txt"), "--format", "onnx", "--out", str(tmp_path / "m.onnx")],
         "cannot be read safely"),
        (["deploy", compact, "--format", "onnx", "--out", str(tmp_path / "empty")], "is a folder"),
        (["evaluate", str(tmp_path / "notes.txt"), "--dataset", "synthetic"],
         "is not a rank-search compact.pt, an ONNX file or a torch.export archive"),
        (["evaluate", compact, "--dataset", "mnist5k"], "takes inputs of 1x8x8, data set 'mnist5k' has 1x28x28"),
        (["evaluate", compact, "--dataset", "synthetic", "--repeats", "0"], "--repeats must be an integer >= 1"),
    ]
    for argv, message in cases:
        code, stdout, stderr = _run(capsys, *argv)
        assert code == 2, argv
        assert stderr.startswith(f"rank-search {argv[0]}: error: ") and message in stderr, (argv, stderr)
        assert stderr.count("\n") == 1, stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "notes.txt"]  # nothing half-written


def test_deploy_measure_batch_times_the_forms_and_keeps_the_accuracy(run_dir, tmp_path, capsys) -> None:
    compact = run_dir / schema.COMPACT_WEIGHTS_FILE
    out = tmp_path / "timed.onnx"
    code, _, _ = _run(capsys, "deploy", str(compact), "--format", "onnx", "--out", str(out), "--measure-batch", "2")
    assert code == 0
    side = yaml.safe_load(Path(f"{out}.yaml").read_text())
    assert side["parity_max_abs_diff"] <= 1e-4 and side["inference_forms"]  # a form chosen per factorized layer
    code, stdout, _ = _run(capsys, "evaluate", str(out), "--dataset", "synthetic", "--json", "--repeats", "2")
    metrics = json.loads((run_dir / schema.METRICS_FILE).read_text())
    assert code == 0 and json.loads(stdout)[schema.TEST_ACCURACY] == metrics[schema.TEST_ACCURACY]

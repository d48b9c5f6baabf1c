"""Every command on bad input (issue 10): exit 2, one line on stderr naming the problem, no
traceback, nothing left behind (in the working folder, the inputs or $TMPDIR), and no Ray
started. Grow the matrix whenever a new bad input turns up."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
import yaml

from rank_search import schema
from rank_search.cli import main

from _experiments import booby_trap, hand_made

SCRATCH_SPACE = {
    "model": "lenet5", "dataset": "synthetic", "epochs": 1,
    "methods": {"posthoc": {"init": "scratch"}},
    "ranks": {"grouping": "uniform", "ratio": 0.5},
}


def _record(exp: Path, change) -> None:
    path = exp / schema.SWEEP_FILE
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """The files the bad inputs name, made once (each test checks it changes none of them)."""
    root = tmp_path_factory.mktemp("inputs")
    exp = hand_made(root / "good")
    shutil.move(str(exp), root / "exp")
    shutil.rmtree(root / "good")
    booby_trap(hand_made(root / "trap_root"), root / "code-ran")
    shutil.move(str(root / "trap_root" / "exp"), root / "trapped")
    compact = next((root / "exp").glob(f"trial_a/checkpoint_000001/{schema.COMPACT_WEIGHTS_FILE}"))
    shutil.copy(compact, root / "compact.pt")
    data = torch.load(compact, weights_only=True)
    torch.save({**data, "model": "resnet20"}, root / "wrongmodel.pt")
    torch.save({k: v for k, v in data.items() if k != "plan"}, root / "noplan.pt")
    torch.save({**data, "model": "no_such_model"}, root / "unknownmodel.pt")
    (root / "garbage.pt").write_bytes(b"not a checkpoint at all")
    (root / "binary.bin").write_bytes(bytes(range(256)))
    (root / "latin1.yaml").write_bytes("model: caf\xe9\n".encode("latin-1"))
    (root / "list.yaml").write_text("- a\n- b\n")
    (root / "syntax.yaml").write_text("a: [1, 2\n")
    (root / "afile").write_text("x")
    (root / "nonempty").mkdir()
    (root / "nonempty" / "f").write_text("x")
    (root / "empty").mkdir()
    (root / "scratch.yaml").write_text(yaml.safe_dump(SCRATCH_SPACE))
    (root / "dense_wrong.pt").write_bytes(b"")
    torch.save({"a": torch.zeros(1)}, root / "dense_wrong.pt")
    # a data set whose files are not there: launch and resume refuse it before any folder or Ray
    cifar = {**SCRATCH_SPACE, "dataset": "cifar10", "methods": {"factorized": {}}}  # a space that passes otherwise
    (root / "cifar.yaml").write_text(yaml.safe_dump(cifar))
    (root / "cifar_rooted.yaml").write_text(yaml.safe_dump({**cifar, "data_root": str(root / "empty")}))
    for name, change in {
        "rec_yaml": lambda exp: (exp / schema.SWEEP_FILE).write_text("launch: [unclosed\n"),
        "rec_binary": lambda exp: (exp / schema.SWEEP_FILE).write_bytes(bytes(range(256))),
        "rec_type": lambda exp: _record(exp, lambda d: d["launch"].update(num_samples="abc")),
        "rec_nolaunch": lambda exp: _record(exp, lambda d: d.pop("launch")),
        "rec_unknown": lambda exp: _record(exp, lambda d: d["launch"].update(bogus=1)),
        "rec_objectives": lambda exp: _record(exp, lambda d: d["launch"].update(objectives="val_accuracy")),
        "rec_nospace": lambda exp: _record(exp, lambda d: d["launch"].pop("space")),
        "state_cut": lambda exp: [p.write_text(p.read_text()[:50]) for p in exp.glob("experiment_state-*.json")],
        "no_state": lambda exp: [p.unlink() for p in exp.glob("experiment_state-*.json")],
        "no_tuner": lambda exp: (exp / "tuner.pkl").unlink(),
        "result_binary": lambda exp: (exp / "trial_a" / "result.json").write_bytes(bytes(range(256))),
        "cifar_missing": lambda exp: _record(exp, lambda d: (d["launch"].update(num_samples=3), d["space"].update(
            dataset="cifar10", data_root=str(root / "empty")))),
    }.items():
        shutil.copytree(root / "exp", root / name)
        change(root / name)
    return root


# (id, argv, expected text in the one line); {in} is the inputs folder, {work} the test's folder
CASES = [
    # train
    ("train-no-out", ["train", "--model", "lenet5"], "required: --out"),
    ("train-no-model", ["train", "--out", "{work}/o"], "--model is required"),
    ("train-unknown-model", ["train", "--model", "nope", "--dataset", "synthetic", "--method", "full", "--out",
                             "{work}/o"], "unknown model 'nope'"),
    ("train-unknown-dataset", ["train", "--model", "lenet5", "--dataset", "nope", "--method", "full", "--out",
                               "{work}/o"], "nope"),
    ("train-unknown-method", ["train", "--model", "lenet5", "--dataset", "synthetic", "--method", "nope", "--out",
                              "{work}/o"], "nope"),
    ("train-epochs-0", ["train", "--model", "lenet5", "--dataset", "synthetic", "--method", "full", "--epochs", "0",
                        "--out", "{work}/o"], "epochs"),
    ("train-epochs-text", ["train", "--epochs", "abc", "--out", "{work}/o"], "invalid int value"),
    ("train-seed-text", ["train", "--seed", "x", "--out", "{work}/o"], "invalid int value"),
    ("train-unknown-set", ["train", "--model", "lenet5", "--dataset", "synthetic", "--method", "full", "--set",
                           "bogus=1", "--out", "{work}/o"], "bogus"),
    ("train-set-no-equals", ["train", "--model", "lenet5", "--dataset", "synthetic", "--method", "full", "--set",
                             "train.lr", "--out", "{work}/o"], "train.lr"),
    ("train-unknown-scheme", ["train", "--model", "lenet5", "--dataset", "synthetic", "--method", "posthoc",
                              "--scheme", "nope", "--out", "{work}/o"], "nope"),
    ("train-config-missing", ["train", "--config", "{in}/missing.yaml", "--out", "{work}/o"], "does not exist"),
    ("train-config-pt", ["train", "--config", "{in}/compact.pt", "--out", "{work}/o"], "is not valid YAML"),
    ("train-config-latin1", ["train", "--config", "{in}/latin1.yaml", "--out", "{work}/o"], "is not valid YAML"),
    ("train-config-list", ["train", "--config", "{in}/list.yaml", "--out", "{work}/o"], "must hold a mapping"),
    ("train-config-syntax", ["train", "--config", "{in}/syntax.yaml", "--out", "{work}/o"], "is not valid YAML"),
    ("train-out-proc", ["train", "--model", "lenet5", "--dataset", "synthetic", "--method", "full", "--out",
                        "/proc/rank-search-out"], "cannot write in /proc"),
    ("train-out-file", ["train", "--model", "lenet5", "--dataset", "synthetic", "--method", "full", "--out",
                        "{in}/afile"], "is not a directory"),
    ("train-out-nonempty", ["train", "--model", "lenet5", "--dataset", "synthetic", "--method", "full", "--out",
                            "{in}/nonempty"], "--overwrite"),
    ("train-out-no-parent", ["train", "--model", "lenet5", "--dataset", "synthetic", "--method", "full", "--out",
                             "{work}/missing/o"], "does not exist"),
    ("train-init-missing", ["train", "--model", "lenet5", "--dataset", "synthetic", "--method", "full", "--init",
                            "{in}/missing.pt", "--out", "{work}/o"], "missing.pt"),
    ("train-own-model-missing", ["train", "--model", "no_such_pkg.mod:build", "--dataset", "synthetic", "--method",
                                 "full", "--out", "{work}/o"], "no_such_pkg"),
    # layers
    ("layers-unknown-model", ["layers", "--model", "nope"], "unknown model 'nope'"),
    ("layers-unknown-dataset", ["layers", "--model", "lenet5", "--dataset", "nope"], "nope"),
    ("layers-no-model", ["layers"], "required: --model"),
    # profile
    ("profile-bad-proxy", ["profile", "--model", "lenet5", "--dataset", "synthetic", "--proxies", "bogus", "--out",
                           "{work}/p"], "bogus"),
    ("profile-ratio-2", ["profile", "--model", "lenet5", "--dataset", "synthetic", "--ratios", "2", "--out",
                         "{work}/p"], "(0, 1]"),
    ("profile-ratio-text", ["profile", "--model", "lenet5", "--dataset", "synthetic", "--ratios", "a,b", "--out",
                            "{work}/p"], "comma-separated numbers"),
    ("profile-bad-scheme", ["profile", "--model", "lenet5", "--dataset", "synthetic", "--scheme", "nope", "--out",
                            "{work}/p"], "nope"),
    ("profile-epochs-0", ["profile", "--model", "lenet5", "--dataset", "synthetic", "--epochs", "0", "--out",
                          "{work}/p"], "epochs"),
    ("profile-out-proc", ["profile", "--model", "lenet5", "--dataset", "synthetic", "--out", "/proc/rs-p"],
     "cannot write in /proc"),
    ("profile-dense-missing", ["profile", "--model", "lenet5", "--dataset", "synthetic", "--dense",
                               "{in}/missing.pt", "--out", "{work}/p"], "missing.pt"),
    # launch (all before any folder or Ray)
    ("launch-no-space", ["launch"], "required: --space"),
    ("launch-unknown-space", ["launch", "--space", "nope"], "unknown search space 'nope'"),
    ("launch-space-missing-file", ["launch", "--space", "{in}/missing.yaml"], "missing.yaml"),
    ("launch-space-binary", ["launch", "--space", "{in}/binary.bin"], "binary.bin"),
    ("launch-space-syntax", ["launch", "--space", "{in}/syntax.yaml"], "syntax"),
    ("launch-num-samples-0", ["launch", "--space", "demo", "--num-samples", "0"], "--num-samples must be >= 1"),
    ("launch-epochs-0", ["launch", "--space", "demo", "--epochs", "0"], "--epochs must be >= 1"),
    ("launch-searcher", ["launch", "--space", "demo", "--searcher", "nope"],
     "argument --searcher: unknown searcher 'nope'; valid choices: "),
    ("launch-scheduler", ["launch", "--space", "demo", "--scheduler", "nope"],
     "argument --scheduler: unknown scheduler 'nope'; valid choices: asha, fifo"),
    ("launch-objectives-form", ["launch", "--space", "demo", "--objectives", "bogus"], "METRIC:max or METRIC:min"),
    ("launch-objectives-metric", ["launch", "--space", "demo", "--objectives", "bogus:max,macs_compression:max"],
     "objective metric must be one every trial reports"),
    ("launch-objectives-mode", ["launch", "--space", "demo", "--objectives", "val_accuracy:up"],
     "METRIC:max or METRIC:min"),
    ("launch-nsga2-one-objective", ["launch", "--space", "demo", "--searcher", "nsga2", "--objectives",
                                    "val_accuracy:max"],
     "at least two --objectives"),
    ("launch-max-concurrent-0", ["launch", "--space", "demo", "--max-concurrent", "0"], "--max-concurrent"),
    ("launch-cpus-0", ["launch", "--space", "demo", "--cpus-per-trial", "0"], "--cpus-per-trial must be > 0"),
    ("launch-gpus-negative", ["launch", "--space", "demo", "--gpus-per-trial", "-1"], "--gpus-per-trial"),
    ("launch-resource-form", ["launch", "--space", "demo", "--resource", "x"], "NAME=AMOUNT"),
    ("launch-resource-builtin", ["launch", "--space", "demo", "--resource", "GPU=1"], "custom resource"),
    ("launch-storage-file", ["launch", "--space", "demo", "--storage", "{in}/afile"], "is a file, not a folder"),
    ("launch-storage-proc", ["launch", "--space", "demo", "--storage", "/proc/rs-runs"], "is not writable"),
    ("launch-storage-uri-proc", ["launch", "--space", "demo", "--storage", "file:///proc/rs-runs"],
     "is not writable"),
    ("launch-name-escape", ["launch", "--space", "demo", "--name", "../x"], "plain folder name"),
    ("launch-warm-start", ["launch", "--space", "demo", "--num-samples", "4", "--warm-start", "5"], "--warm-start"),
    ("launch-min-compression", ["launch", "--space", "demo", "--min-compression", "0.5"], ">= 1"),
    ("launch-cluster-no-storage", ["launch", "--space", "demo", "--address", "auto"], "needs --storage"),
    ("launch-existing", ["launch", "--space", "demo", "--storage", "{in}", "--name", "exp"], "already exists"),
    ("launch-existing-uri", ["launch", "--space", "demo", "--storage", "file://{in}", "--name", "exp"],
     "already exists"),
    ("launch-dense-missing", ["launch", "--space", "demo", "--dense", "{in}/missing.pt"], "does not exist"),
    ("launch-dense-wrong", ["launch", "--space", "demo", "--dense", "{in}/dense_wrong.pt"], "does not fit the model"),
    ("launch-epoch-budget", ["launch", "--space", "{in}/scratch.yaml"], "epochs must be > posthoc.finetune_epochs"),
    ("launch-max-failures", ["launch", "--space", "demo", "--max-failures", "-1"], "--max-failures"),
    # resume (no Ray for any of these)
    ("resume-missing", ["resume", "{in}/missing"], "is not a rank-search experiment"),
    ("resume-file", ["resume", "{in}/afile"], "is not a rank-search experiment"),
    ("resume-empty", ["resume", "{in}/empty"], "is not a rank-search experiment"),
    ("resume-record-yaml", ["resume", "{in}/rec_yaml"], "is not valid YAML"),
    ("resume-record-binary", ["resume", "{in}/rec_binary"], "is not valid YAML"),
    ("resume-record-type", ["resume", "{in}/rec_type"], "launch.num_samples must be int"),
    ("resume-record-no-launch", ["resume", "{in}/rec_nolaunch"], "has no 'launch' mapping"),
    ("resume-record-unknown", ["resume", "{in}/rec_unknown"], "does not know: bogus"),
    ("resume-record-objectives", ["resume", "{in}/rec_objectives"], "launch.objectives must be a list"),
    ("resume-record-no-space", ["resume", "{in}/rec_nospace"], "launch.space must name the space"),
    ("resume-state-cut", ["resume", "{in}/state_cut"], "is damaged"),
    ("resume-unstarted-bad-space", ["resume", "{in}/no_state"], "missing required key 'methods'"),
    ("launch-cifar-no-root", ["launch", "--space", "{in}/cifar.yaml"], "cifar10 needs a data root containing "
                                                                        "cifar-10-batches-py/; pass --data-root"),
    ("launch-cifar-empty-root", ["launch", "--space", "{in}/cifar.yaml", "--data-root", "{in}/empty"],
     "cifar10 files not found: expected {in}/empty/cifar-10-batches-py/data_batch_1 (and 6 more); pass --download"),
    ("launch-cifar-space-root", ["launch", "--space", "{in}/cifar_rooted.yaml"],
     "cifar10 files not found: expected {in}/empty/cifar-10-batches-py/data_batch_1"),
    ("launch-shipped-cifar-space", ["launch", "--space", "resnet20_cifar10", "--data-root", "{in}/missing"],
     "cifar10 files not found: expected {in}/missing/cifar-10-batches-py/"),
    ("launch-download-no-root", ["launch", "--space", "{in}/cifar.yaml", "--download"], "cifar10 needs a data root"),
    ("launch-download-imagefolder", ["launch", "--space", "resnet18_imagenet", "--download", "--data-root",
                                     "{in}/empty"], "imagefolder cannot be downloaded"),
    ("launch-imagefolder-empty-root", ["launch", "--space", "resnet18_imagenet", "--data-root", "{in}/empty"],
     "imagefolder: expected folder {in}/empty/train/<class>/*"),
    ("launch-data-root-uri", ["launch", "--space", "{in}/cifar.yaml", "--data-root", "s3://bucket/cifar"],
     "--data-root must be a local folder"),
    ("launch-data-root-blank", ["launch", "--space", "{in}/cifar.yaml", "--data-root", " "],
     "--data-root must name a folder, got ' '"),
    ("resume-state-no-tuner", ["resume", "{in}/no_tuner"], "holds no Tune experiment state"),
    ("resume-data-missing", ["resume", "{in}/cifar_missing"], "cifar10 files not found: expected {in}/empty/"),
    # status
    ("status-missing", ["status", "{in}/missing"], "does not exist"),
    ("status-file", ["status", "{in}/afile"], "is a file"),
    ("status-empty", ["status", "{in}/empty"], "is not a Ray Tune experiment"),
    ("status-top-negative", ["status", "{in}/exp", "--top", "-1"], "--top must be >= 0"),
    ("status-top-text", ["status", "{in}/exp", "--top", "x"], "invalid int value"),
    ("status-json-missing", ["status", "{in}/missing", "--json"], "does not exist"),
    ("status-json-top-negative", ["status", "{in}/exp", "--json", "--top", "-1"], "--top must be >= 0"),
    # export
    ("export-missing", ["export", "{in}/missing", "--out", "{work}/b.yaml"], "does not exist"),
    ("export-not-experiment", ["export", "{in}/empty", "--out", "{work}/b.yaml"], "is not a Ray Tune experiment"),
    ("export-pick", ["export", "{in}/exp", "--pick", "nope", "--out", "{work}/b.yaml"], "nope"),
    ("export-out-exists", ["export", "{in}/exp", "--out", "{in}/afile"], "already exists"),
    ("export-out-folder", ["export", "{in}/exp", "--out", "{in}/empty"], "is a folder"),
    ("export-out-proc", ["export", "{in}/exp", "--out", "/proc/rs-best.yaml"], "cannot write in /proc"),
    ("export-out-no-parent", ["export", "{in}/exp", "--out", "{work}/missing/b.yaml"], "does not exist"),
    ("export-min-accuracy", ["export", "{in}/exp", "--min-accuracy", "2", "--out", "{work}/b.yaml"], "2"),
    ("export-trapped-weights", ["export", "{in}/trapped", "--weights", "--out", "{work}/b.yaml"],
     "cannot be read safely"),
    # analyze
    ("analyze-missing", ["analyze", "{in}/missing", "--out", "{work}/r"], "does not exist"),
    ("analyze-out-proc", ["analyze", "{in}/exp", "--out", "/proc/rs-report"], "cannot write in /proc"),
    ("analyze-out-nonempty", ["analyze", "{in}/exp", "--out", "{in}/nonempty"], "--overwrite"),
    ("analyze-objectives", ["analyze", "{in}/exp", "--objectives", "x", "--out", "{work}/r"], "METRIC:max"),
    ("analyze-reference", ["analyze", "{in}/exp", "--reference", "abc", "--out", "{work}/r"], "--reference"),
    ("analyze-labels", ["analyze", "{in}/exp", "--labels", "a", "b", "--out", "{work}/r"], "label"),
    ("analyze-no-out", ["analyze", "{in}/exp"], "required: --out"),
    # deploy
    ("deploy-format", ["deploy", "{in}/compact.pt", "--format", "nope", "--out", "{work}/m.onnx"], "--format"),
    ("deploy-measure-batch-0", ["deploy", "{in}/compact.pt", "--format", "onnx", "--out", "{work}/m.onnx",
                                "--measure-batch", "0"], "--measure-batch must be an integer >= 1"),
    ("deploy-source-missing", ["deploy", "{in}/missing.pt", "--format", "onnx", "--out", "{work}/m.onnx"],
     "neither a compact.pt file nor an experiment folder"),
    ("deploy-garbage", ["deploy", "{in}/garbage.pt", "--format", "onnx", "--out", "{work}/m.onnx"],
     "cannot be read safely"),
    ("deploy-out-no-parent", ["deploy", "{in}/compact.pt", "--format", "onnx", "--out", "{work}/missing/m.onnx"],
     "does not exist"),
    ("deploy-wrong-model", ["deploy", "{in}/wrongmodel.pt", "--format", "onnx", "--out", "{work}/m.onnx"],
     "does not fit model 'resnet20'"),
    ("deploy-no-plan", ["deploy", "{in}/noplan.pt", "--format", "onnx", "--out", "{work}/m.onnx"], "lacks plan"),
    ("deploy-unknown-model", ["deploy", "{in}/unknownmodel.pt", "--format", "onnx", "--out", "{work}/m.onnx"],
     "unknown model 'no_such_model'"),
    # evaluate
    ("evaluate-missing", ["evaluate", "{in}/missing.pt", "--dataset", "synthetic"], "missing.pt"),
    ("evaluate-garbage", ["evaluate", "{in}/garbage.pt", "--dataset", "synthetic"], "garbage.pt"),
    ("evaluate-dataset", ["evaluate", "{in}/compact.pt", "--dataset", "nope"], "nope"),
    ("evaluate-no-dataset", ["evaluate", "{in}/compact.pt"], "required: --dataset"),
    ("evaluate-wrong-model", ["evaluate", "{in}/wrongmodel.pt", "--dataset", "synthetic"], "resnet20"),
]


def _listing(*folders: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for folder in folders:
        for p in sorted(folder.rglob("*")):
            st = p.lstat()
            out[str(p)] = (st.st_size, st.st_mtime_ns) if p.is_file() else (0, 0)
    return out


def test_the_matrix_is_large_enough() -> None:
    assert len(CASES) >= 60 and len({c[0] for c in CASES}) == len(CASES)
    assert {c[1][0] for c in CASES} >= {"train", "layers", "profile", "launch", "resume", "status", "export",
                                        "analyze", "deploy", "evaluate"}


@pytest.mark.parametrize("argv, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(inputs, tmp_path, monkeypatch, capsys, argv, expected):
    import ray

    work = tmp_path / "work"
    scratch = tmp_path / "tmpdir"
    work.mkdir()
    scratch.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    argv = [a.replace("{in}", str(inputs)).replace("{work}", str(work)) for a in argv]
    expected = expected.replace("{in}", str(inputs)).replace("{work}", str(work))
    before = _listing(work, scratch, inputs)
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse: usage errors
        code = exc.code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert expected in lines[0], lines[0]
    assert _listing(work, scratch, inputs) == before, "something was left behind or changed"
    assert not ray.is_initialized()
    assert not (inputs / "code-ran").exists()

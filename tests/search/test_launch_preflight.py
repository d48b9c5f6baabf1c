"""Launch errors found before any folder or Ray (issue 10), the demo's preflight, an existing experiment
at any URI, impossible resources refused right after Ray starts."""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
import yaml

from rank_search.cli import main

from _experiments import hand_made

from _hardening import TINY, _one_line_exit_2


@pytest.mark.parametrize("extra, expected", [
    (["--epochs", "1"], "posthoc from scratch trains dense for epochs - finetune_epochs"),
    (["--objectives", "bogus_metric:max,macs_compression:max"], "objective metric must be one every trial reports"),
    (["--objectives", "test_accuracy:max,macs_compression:max"], "got 'test_accuracy'"),
    (["--objectives", "val_accuracy:max,val_accuracy:min"], "must name each metric once"),
    (["--storage", "FILE"], "is a file, not a folder"),
    (["--storage", "FILE/below"], "cannot be created"),
    (["--storage", "/proc/rank-search-x"], "is not writable"),
    (["--storage", "file:///proc/rank-search-x"], "is not writable"),
    (["--name", "../escape"], "--name must be a plain folder name"),
    (["--resource", "CPU=1"], "--resource names a custom resource"),
    (["--resource", "slot=0"], "the amount must be > 0"),
    (["--max-failures", "-1"], "--max-failures must be >= 0"),
])
def test_launch_errors_come_before_any_folder_or_ray(tmp_path, capsys, monkeypatch, extra, expected) -> None:
    monkeypatch.chdir(tmp_path)
    space = tmp_path / "tiny.yaml"
    space.write_text(yaml.safe_dump(TINY))
    (tmp_path / "FILE").write_text("not a folder")
    extra = [e.replace("FILE", str(tmp_path / "FILE")) for e in extra]
    argv = ["launch", "--space", str(space), *(["--storage", str(tmp_path / "runs")] if "--storage" not in extra else []),
            *extra]
    before = sorted(os.listdir(tmp_path))
    line = _one_line_exit_2(capsys, argv)
    assert expected in line
    assert sorted(os.listdir(tmp_path)) == before, "a folder was left behind"


def test_demo_with_one_epoch_passes_the_preflight(tmp_path) -> None:
    """What a user tries first: every method of the demo runs in one epoch (posthoc fine-tunes its
    epoch from the dense reference)."""
    from rank_search.search import LaunchConfig
    from rank_search.search.sweep import preflight

    pre = preflight(LaunchConfig(space="demo", epochs=1, storage=str(tmp_path / "runs"), name="x"))
    assert pre.space.epochs == 1 and len(pre.space.methods) == 5
    assert not (tmp_path / "runs").exists()


# -- item 3: an existing experiment is refused at any URI -------------------------------------
@pytest.mark.parametrize("form", ["path", "file-uri", "file-uri-trailing-slash"])
def test_launch_refuses_an_existing_experiment_at_any_uri(tmp_path, capsys, form) -> None:
    exp = hand_made(tmp_path / "store")
    before = sorted(p.name for p in exp.iterdir())
    storage = {"path": str(exp.parent), "file-uri": exp.parent.as_uri(),
               "file-uri-trailing-slash": exp.parent.as_uri() + "/"}[form]
    space = tmp_path / "tiny.yaml"
    space.write_text(yaml.safe_dump(TINY))
    line = _one_line_exit_2(capsys, ["launch", "--space", str(space), "--storage", storage, "--name", "exp"])
    assert "already exists" in line and "rank-search resume" in line
    assert sorted(p.name for p in exp.iterdir()) == before


# -- item 7: a trial no node can fit is refused at start, not left PENDING for ever ----------
@pytest.mark.ray
def test_impossible_resources_are_refused_right_after_ray_starts(tmp_path, capsys, monkeypatch) -> None:
    import ray

    import tempfile

    short = Path(tempfile.mkdtemp(prefix="rs-t-", dir="/tmp"))  # Ray's socket paths must stay short
    monkeypatch.setattr(tempfile, "tempdir", str(short))  # where the private Ray's folder goes
    space = tmp_path / "tiny.yaml"
    space.write_text(yaml.safe_dump({**TINY, "methods": {"factorized": {}}}))
    for extra, expected in [(["--cpus-per-trial", "64"], "CPU 64"), (["--resource", "fake_gpu=1"], "fake_gpu 1")]:
        start = time.time()
        code = main(["launch", "--space", str(space), "--storage", str(tmp_path / "runs"), "--name", "x", *extra])
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert code == 2 and len(err) == 1, err
        assert "no node of the Ray cluster can ever run a trial needing" in err[0] and expected in err[0]
        assert "the nodes have: " in err[0] and "CPU " in err[0].split("the nodes have: ")[1]
        assert time.time() - start < 120
        assert not (tmp_path / "runs" / "x").exists() and not ray.is_initialized()
        assert not any(p.name.startswith("rs-ray-") for p in short.iterdir()), "the private Ray's folder was left"
    shutil.rmtree(short, ignore_errors=True)

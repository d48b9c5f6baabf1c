"""Launch flags validated before any folder, Ray start or network call (issue 27): each bad value
is one line naming the rule and the value, exit 2."""
from __future__ import annotations

import os

import pytest
import yaml

from rank_search.cli import main

TINY = {
    "model": "lenet5", "dataset": "synthetic", "epochs": 2,
    "methods": {"factorized": {}},
    "ranks": {"grouping": "per_layer", "ratio": {"float": [0.1, 0.9]}},
}


@pytest.mark.parametrize("flags, expected", [
    (["--cpus-per-trial", "nan"], "--cpus-per-trial must be a finite number, got nan"),
    (["--cpus-per-trial", "inf"], "--cpus-per-trial must be a finite number, got inf"),
    (["--gpus-per-trial", "nan"], "--gpus-per-trial must be a finite number, got nan"),
    (["--train-seed", "99999999999999999999"], "--train-seed must be <= 4294967295"),
    (["--searcher-seed", "-1"], "--searcher-seed must be an integer >= 0, got -1"),
    (["--searcher-seed", "4294967296"], "--searcher-seed must be <= 4294967295"),
    (["--num-samples", "1000000000000"], "--num-samples must be <= 100000, got 1000000000000"),
    (["--epochs", "1000000000000"], "--epochs must be <= 100000, got 1000000000000"),
    (["--max-concurrent", "1000000000000"], "--max-concurrent must be <= 100000"),
    (["--max-failures", "1000000000000"], "--max-failures must be <= 1000"),
    (["--name", "x" * 300], "--name must be at most 200 bytes, got 300"),
    (["--name", "two\nlines"], "--name must be a plain folder name (printable"),
    (["--name", "tab\there"], "--name must be a plain folder name (printable"),
    (["--name", "a/b"], "--name must be a plain folder name"),
    (["--storage", "foo://bar/x"], "--storage scheme 'foo' is not supported"),
    (["--storage", "http://example.com/x"], "--storage scheme 'http' is not supported"),
    (["--address", "garbage"], "--address must be local, auto or HOST:PORT"),
    (["--address", "127.0.0.1:70000"], "--address must be local, auto or HOST:PORT"),
    (["--resource", "slot=inf"], "the amount must be a finite number"),
    (["--resource", "slot=nan"], "the amount must be > 0"),
    (["--max-compression", "inf"], "--max-compression must be a finite number, got inf"),
    (["--min-compression", "nan"], "--min-compression must be a finite number, got nan"),
])
def test_a_bad_flag_is_one_line_exit_2_before_anything(tmp_path, capsys, monkeypatch, flags, expected) -> None:
    import ray

    monkeypatch.chdir(tmp_path)
    space = tmp_path / "tiny.yaml"
    space.write_text(yaml.safe_dump(TINY))
    storage = [] if "--storage" in flags else ["--storage", str(tmp_path / "runs")]
    before = sorted(os.listdir(tmp_path))
    code = main(["launch", "--space", str(space), *storage, *flags])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert expected in err[0], err[0]
    assert sorted(os.listdir(tmp_path)) == before, "a folder was made"
    assert not ray.is_initialized()


@pytest.mark.parametrize("flags", [["--address", "127.0.0.2:6379"], ["--address", "ray://head:10001"],
                                   ["--name", "my sweep-2026"], ["--storage", "s3://bucket/x"],
                                   ["--train-seed", "4294967295"], ["--num-samples", "100000"]])
def test_good_values_at_the_edges_pass(flags) -> None:
    from rank_search.search import LaunchConfig

    values = dict(zip(flags[::2], flags[1::2]))
    kw = {"--address": ("address", str), "--name": ("name", str), "--storage": ("storage", str),
          "--train-seed": ("train_seed", int), "--num-samples": ("num_samples", int)}
    (flag, text), = values.items()
    field, kind = kw[flag]
    LaunchConfig(space="demo", **{field: kind(text)})


def test_a_storage_that_does_not_answer_is_one_line_within_the_probe_time(monkeypatch) -> None:
    import time

    from rank_search.errors import RankSearchError
    from rank_search.search.settings import probe_storage
    from rank_search.storage import Location

    monkeypatch.setattr(Location, "__init__", lambda self, path: None)
    monkeypatch.setattr(Location, "exists", lambda self, rel="": time.sleep(30))
    start = time.perf_counter()
    with pytest.raises(RankSearchError, match=r"--storage 'gs://b/x' did not answer within 0.5 s"):
        probe_storage("gs://b/x", timeout=0.5)
    assert time.perf_counter() - start < 5

    def unreachable(self, rel=""):
        raise OSError("When resolving region for bucket 'b': Could not resolve host\nmore detail")

    monkeypatch.setattr(Location, "exists", unreachable)
    with pytest.raises(RankSearchError, match=r"^--storage 's3://b/x' cannot be reached: When resolving region.*host$"):
        probe_storage("s3://b/x", timeout=5)
    monkeypatch.setattr(Location, "exists", lambda self, rel="": False)
    probe_storage("s3://b/x", timeout=5)  # answers: passes


def test_an_address_where_nothing_listens_is_one_line_not_a_hang(tmp_path, capsys, monkeypatch) -> None:
    import socket
    import time

    import ray

    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.chdir(tmp_path)
    space = tmp_path / "tiny.yaml"
    space.write_text(yaml.safe_dump(TINY))
    start = time.perf_counter()
    code = main(["launch", "--space", str(space), "--storage", str(tmp_path / "runs"),
                 "--address", f"127.0.0.1:{port}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and f"nothing answers at 127.0.0.1:{port}" in err[0], err
    assert time.perf_counter() - start < 60 and not ray.is_initialized()
    assert not (tmp_path / "runs").exists()


def test_a_long_tmpdir_gives_ray_a_short_folder_under_tmp(tmp_path, monkeypatch) -> None:
    import tempfile

    from rank_search.search.ray_session import MAX_TEMP_LEN, private_temp_dir

    long = tmp_path / ("x" * 120)
    long.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(long))
    folder = private_temp_dir()
    try:
        assert folder.startswith("/tmp/rs-ray-") and len(folder) <= MAX_TEMP_LEN
    finally:
        os.rmdir(folder)
    monkeypatch.setattr(tempfile, "tempdir", "/tmp")
    folder = private_temp_dir()
    os.rmdir(folder)
    assert os.path.dirname(folder) == "/tmp"

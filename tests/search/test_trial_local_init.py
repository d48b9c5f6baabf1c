"""A trial's copy of a dense reference on URI storage: one stable name per source version, so
every worker process on a machine reuses one copy, and a new version replaces the old copy."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytest.importorskip("ray")

from rank_search.run import RunSpec  # noqa: E402
from rank_search.search.trainable import _local_init  # noqa: E402

NAME_OF = ("import sys; from rank_search.run import RunSpec; from rank_search.search.trainable import _local_init; "
           "print(_local_init(RunSpec(model='m', dataset='d', method='full', init=sys.argv[1])).init)")


def _source(tmp_path, monkeypatch):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "tmp"))
    os.makedirs(tmp_path / "tmp")
    source = tmp_path / "exp" / "dense.pt"
    source.parent.mkdir()
    source.write_bytes(b"v1")
    return source, RunSpec(model="m", dataset="d", method="full", init=f"file://{source}")


@pytest.mark.slow
def test_another_process_finds_the_same_copy(tmp_path, monkeypatch) -> None:
    source, spec = _source(tmp_path, monkeypatch)
    first = _local_init(spec).init
    env = {**os.environ, "PYTHONHASHSEED": "123", "TMPDIR": str(tmp_path / "tmp")}  # another hash seed
    out = subprocess.run([sys.executable, "-c", NAME_OF, spec.init], capture_output=True, text=True, env=env,
                         check=True)
    assert out.stdout.strip() == first


def test_the_local_copy_is_named_by_the_source_and_replaced_with_it(tmp_path, monkeypatch) -> None:
    source, spec = _source(tmp_path, monkeypatch)
    first = _local_init(spec).init
    assert open(first, "rb").read() == b"v1" and _local_init(spec).init == first
    source.write_bytes(b"version 2")  # a new reference at the same place: a new copy, the old one gone
    second = _local_init(spec).init
    assert second != first and open(second, "rb").read() == b"version 2"
    assert sorted(os.listdir(tmp_path / "tmp")) == [os.path.basename(second)]
    local = RunSpec(model="m", dataset="d", method="full", init=str(source))
    assert _local_init(local) is local  # a local path is used where it is

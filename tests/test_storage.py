"""storage.Location: the same operations on a local folder and on a file:// URI (pyarrow), so
callers ask the location instead of branching on what kind it is."""
from __future__ import annotations

import os

import pytest

from rank_search.storage import Location, split_path


@pytest.fixture(params=["path", "uri"])
def folder(request, tmp_path):
    root = tmp_path / "exp"
    root.mkdir()
    return root, Location(str(root) if request.param == "path" else root.as_uri())


def test_write_read_delete_and_addresses(folder) -> None:
    root, loc = folder
    loc.write_bytes("w.pt", b"\x00\x01")
    loc.write_text("r.yaml", "a: 1\n")
    assert loc.read_bytes("w.pt") == b"\x00\x01" and loc.read_text("r.yaml") == "a: 1\n"
    assert sorted(os.listdir(root)) == ["r.yaml", "w.pt"]  # no temporary sibling left
    assert loc.address("w.pt").endswith("/exp/w.pt")
    assert (loc.local_path("w.pt") == str(root / "w.pt")) if not loc.uri else loc.local_path("w.pt") is None
    assert loc.address("w.pt") == (str(root / "w.pt") if not loc.uri else root.as_uri() + "/w.pt")
    loc.delete("w.pt")
    assert not loc.is_file("w.pt") and loc.is_file("r.yaml")
    with pytest.raises(OSError):
        loc.delete("w.pt")
    loc.delete_tree()
    assert not root.exists()


def test_a_folder_moves_with_its_files_into_a_new_subfolder(folder) -> None:
    root, loc = folder
    (root / "trial_a" / "checkpoint_000000").mkdir(parents=True)
    (root / "trial_a" / "checkpoint_000000" / "state.pt").write_bytes(b"\x02")
    loc.move_dir("trial_a", "orphaned/trial_a")
    assert not (root / "trial_a").exists()
    assert (root / "orphaned" / "trial_a" / "checkpoint_000000" / "state.pt").read_bytes() == b"\x02"


def test_a_failed_local_write_leaves_the_old_file(tmp_path, monkeypatch) -> None:
    loc = Location(str(tmp_path))
    loc.write_bytes("f", b"old")

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError):
        loc.write_bytes("f", b"new")
    assert (tmp_path / "f").read_bytes() == b"old" and os.listdir(tmp_path) == ["f"]


@pytest.mark.parametrize("path,parts", [("/a/b/exp", ("/a/b", "exp")), ("/a/b/exp/", ("/a/b", "exp")),
                                         ("s3://bucket/sweeps/exp", ("s3://bucket/sweeps", "exp")),
                                         ("file:///tmp/x/exp", ("file:///tmp/x", "exp"))])
def test_split_path(path, parts) -> None:
    assert split_path(path) == parts

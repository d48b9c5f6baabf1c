"""``check_data``: is a data set's files where ``load_dataset`` would look, told without reading
them (a sweep's pre-flight), and ``fetch_data``: one download where the data set has files."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

import rank_search.data as data
from rank_search.data import DATASETS, PRESENCE_CHECKS, check_data, fetch_data, load_dataset
from rank_search.errors import RankSearchError

NEED_FILES = {"cifar10", "cifar100", "imagefolder"}
CIFAR_FILES = {"cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch",
                                                                                             "batches.meta"]),
               "cifar100": ("cifar-100-python", ["train", "test", "meta"])}


def _touch_cifar(root: Path, name: str) -> None:
    folder, files = CIFAR_FILES[name]
    (root / folder).mkdir(parents=True)
    for f in files:
        (root / folder / f).write_bytes(b"")


def test_the_checks_are_for_registered_data_sets() -> None:
    assert set(PRESENCE_CHECKS.names()) == NEED_FILES and set(PRESENCE_CHECKS.names()) <= set(DATASETS.names())
    with pytest.raises(ValueError, match="already registered"):
        PRESENCE_CHECKS.register("cifar10")(lambda **kw: None)


@pytest.mark.parametrize("name", DATASETS.names())
def test_every_data_set_without_a_root(name: str, tmp_path) -> None:
    """Embedded and generated sets need nothing; the others refuse in one line, as loading does."""
    if name not in NEED_FILES:
        check_data(name)
        check_data(name, data_root=str(tmp_path / "nowhere"), download=True)
        return
    with pytest.raises(RankSearchError) as checked:
        check_data(name)
    with pytest.raises(RankSearchError) as loaded:
        load_dataset(name)
    assert "\n" not in str(checked.value) and str(checked.value) == str(loaded.value)


def test_an_unknown_name_lists_the_valid_ones() -> None:
    with pytest.raises(RankSearchError, match=r"unknown dataset 'nope'; valid choices: cifar10, "):
        check_data("nope")


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_files_are_looked_for_not_read(name: str, tmp_path) -> None:
    folder, files = CIFAR_FILES[name]
    with pytest.raises(RankSearchError) as checked:
        check_data(name, data_root=str(tmp_path))
    with pytest.raises(RankSearchError) as loaded:
        load_dataset(name, data_root=str(tmp_path))
    assert str(checked.value) == str(loaded.value)  # the same line: the first missing file named
    assert str(checked.value).startswith(f"{name} files not found: expected {tmp_path / folder / files[0]} ")
    check_data(name, data_root=str(tmp_path), download=True)  # a download would put them there
    _touch_cifar(tmp_path, name)
    check_data(name, data_root=str(tmp_path))  # all there: the md5 check is loading's
    with pytest.raises(RankSearchError, match="fail torchvision's integrity check"):
        load_dataset(name, data_root=str(tmp_path))
    os.unlink(tmp_path / folder / files[-1])
    with pytest.raises(RankSearchError, match=rf"expected .*{files[-1]}; pass --download"):
        check_data(name, data_root=str(tmp_path))


def test_imagefolder_needs_its_folders(tmp_path) -> None:
    with pytest.raises(RankSearchError, match="imagefolder cannot be downloaded"):
        check_data("imagefolder", data_root=str(tmp_path), download=True)
    (tmp_path / "train").mkdir()
    with pytest.raises(RankSearchError) as checked:
        check_data("imagefolder", data_root=str(tmp_path))
    with pytest.raises(RankSearchError) as loaded:
        load_dataset("imagefolder", data_root=str(tmp_path))
    assert str(checked.value) == str(loaded.value) == f"imagefolder: expected folder {tmp_path / 'val'}/<class>/*; " \
                                                      "check --data-root"
    (tmp_path / "val").mkdir()
    check_data("imagefolder", data_root=str(tmp_path))


def test_fetch_loads_once_with_download(tmp_path, monkeypatch) -> None:
    """What ``load_dataset(download=True)`` does (torchvision's download, then its md5 check) is
    tested in test_cifar.py; fetching is that, once, its data dropped."""
    loaded = []
    monkeypatch.setattr(data, "load_dataset", lambda *a, **kw: loaded.append((a, kw)))
    fetch_data("cifar10", data_root=str(tmp_path))
    assert loaded == [(("cifar10",), {"data_root": str(tmp_path), "download": True})]


def test_fetch_of_a_set_without_files_does_nothing(monkeypatch) -> None:
    monkeypatch.setattr(data, "load_dataset", lambda *a, **kw: pytest.fail("loaded"))
    for name in sorted(set(DATASETS.names()) - NEED_FILES):
        fetch_data(name, data_root=None)
    with pytest.raises(RankSearchError, match="cifar100 needs a data root"):
        fetch_data("cifar100", data_root=None)
    with pytest.raises(RankSearchError, match="imagefolder cannot be downloaded"):
        fetch_data("imagefolder", data_root="/data")

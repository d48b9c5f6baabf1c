"""CIFAR-10/100 through torchvision's dataset classes. No genuine CIFAR copy can be had offline,
so the tests write small files in the official pickle layout: torchvision's md5 check rightly
refuses them (the project's one-line error says so), and the loading path is tested with that
check alone replaced by "the file exists"."""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from rank_search.data import cifar_augment, load_dataset
from rank_search.errors import RankSearchError

N_TRAIN = {"cifar10": 100, "cifar100": 60}
N_CLASSES = {"cifar10": 10, "cifar100": 100}


def _write_pickle(path: Path, entry: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        pickle.dump(entry, f)  # str keys, as the official (Python 2) files read with encoding="latin1"


@pytest.fixture()
def cifar_root(tmp_path: Path) -> Path:
    """Both data sets in torchvision's layout: 5 x 20 + 20 CIFAR-10 images, 60 + 20 CIFAR-100."""
    rng = np.random.default_rng(0)

    def images(n: int) -> np.ndarray:
        return rng.integers(0, 256, (n, 3072), dtype=np.uint8)

    c10 = tmp_path / "cifar-10-batches-py"
    for i in range(1, 6):
        _write_pickle(c10 / f"data_batch_{i}", {"data": images(20), "labels": [j % 10 for j in range(20)]})
    _write_pickle(c10 / "test_batch", {"data": images(20), "labels": list(range(10)) * 2})
    _write_pickle(c10 / "batches.meta", {"label_names": [f"c{i}" for i in range(10)]})
    c100 = tmp_path / "cifar-100-python"
    _write_pickle(c100 / "train", {"data": images(60), "fine_labels": [j * 7 % 100 for j in range(60)]})
    _write_pickle(c100 / "test", {"data": images(20), "fine_labels": list(range(80, 100))})
    _write_pickle(c100 / "meta", {"fine_label_names": [f"c{i}" for i in range(100)]})
    return tmp_path


@pytest.fixture()
def trusting_torchvision(monkeypatch):
    """torchvision's CIFAR classes with their md5 check reduced to "the file exists" (this test
    only): the one thing our small files cannot pass."""
    import torchvision.datasets.cifar

    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda fpath, md5=None: os.path.isfile(fpath))


def _test_images(root: Path, name: str) -> torch.Tensor:
    path = root / ("cifar-10-batches-py/test_batch" if name == "cifar10" else "cifar-100-python/test")
    with path.open("rb") as f:
        return torch.from_numpy(pickle.load(f)["data"].reshape(-1, 3, 32, 32))


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_through_torchvision(cifar_root: Path, trusting_torchvision, name: str) -> None:
    splits = load_dataset(name, data_root=str(cifar_root), seed=1, batch_size=8)
    n_train, n_classes = N_TRAIN[name], N_CLASSES[name]
    assert (splits.in_channels, splits.num_classes, splits.image_size) == (3, n_classes, 32)
    n_val = n_train // 10
    assert splits.val.num_samples == n_val and splits.train.num_samples == n_train - n_val
    assert splits.test.num_samples == 20
    # channels first again (torchvision keeps HWC), pixel for pixel the file's CHW rows
    assert splits.test.images.dtype == torch.uint8 and torch.equal(splits.test.images, _test_images(cifar_root, name))
    assert splits.train.augment is cifar_augment and splits.val.augment is None
    for loader in (splits.train, splits.val, splits.test):
        for x, y in loader:
            assert x.shape[1:] == (3, 32, 32) and x.dtype == torch.float32
            assert y.dtype == torch.long and 0 <= int(y.min()) and int(y.max()) < n_classes
    train_keys = {img.numpy().tobytes() for img in splits.train.images}
    assert not train_keys & {img.numpy().tobytes() for img in splits.val.images}
    again = load_dataset(name, data_root=str(cifar_root), seed=9)
    assert torch.equal(again.val.images, splits.val.images)  # the split does not follow the seed


@pytest.mark.parametrize("name, folder, first, more", [("cifar10", "cifar-10-batches-py", "data_batch_1", 6),
                                                       ("cifar100", "cifar-100-python", "train", 2)])
def test_files_that_are_not_the_official_ones_are_refused_in_one_line(cifar_root: Path, name: str, folder: str,
                                                                      first: str, more: int) -> None:
    """What the old reader accepted (a 200-image fake) torchvision refuses: not the official md5s."""
    with pytest.raises(RankSearchError) as info:
        load_dataset(name, data_root=str(cifar_root))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{name} files in {cifar_root / folder} fail torchvision's integrity check "
                              f"(md5 of {first} and {more} more): ")
    assert "not the official files, or are damaged; pass --download" in message


def test_a_damaged_file_is_named(cifar_root: Path, monkeypatch) -> None:
    """torchvision told our files' md5s, but the test batch's wrong: the error names that file."""
    import hashlib

    import torchvision.datasets

    folder = cifar_root / "cifar-10-batches-py"
    lists = {f: hashlib.md5((folder / f).read_bytes()).hexdigest() for f in os.listdir(folder)}
    cls = torchvision.datasets.CIFAR10
    monkeypatch.setattr(cls, "train_list", [[f"data_batch_{i}", lists[f"data_batch_{i}"]] for i in range(1, 6)])
    monkeypatch.setattr(cls, "test_list", [["test_batch", "0" * 32]])
    monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": lists["batches.meta"]})
    with pytest.raises(RankSearchError, match=r"cifar10 files in .*cifar-10-batches-py fail torchvision's "
                                              r"integrity check \(md5 of test_batch\)"):
        load_dataset("cifar10", data_root=str(cifar_root))


def test_cifar_missing_files(tmp_path: Path, cifar_root: Path) -> None:
    with pytest.raises(RankSearchError, match=r"cifar10 needs a data root.*--data-root"):
        load_dataset("cifar10")
    with pytest.raises(RankSearchError, match=r"cifar10 files not found: expected .*nowhere[/\\]cifar-10-batches-py"
                                              r"[/\\]data_batch_1 \(and 6 more\); pass --download.*--data-root"):
        load_dataset("cifar10", data_root=str(tmp_path / "nowhere"))
    (cifar_root / "cifar-100-python" / "test").unlink()
    with pytest.raises(RankSearchError, match=r"expected .*cifar-100-python[/\\]test;"):
        load_dataset("cifar100", data_root=str(cifar_root))


def test_download_goes_through_torchvision(cifar_root: Path, trusting_torchvision, monkeypatch) -> None:
    import torchvision.datasets

    calls = []
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "download", lambda self: calls.append(self.root))
    load_dataset("cifar10", data_root=str(cifar_root), download=True)
    assert calls == [str(cifar_root)]  # once: the test split is fetched with the train split
    load_dataset("cifar10", data_root=str(cifar_root))
    assert len(calls) == 1  # only when asked


def test_a_failed_download_is_one_line(tmp_path: Path, monkeypatch) -> None:
    import urllib.error

    import torchvision.datasets

    def offline(self) -> None:
        raise urllib.error.URLError("no network here")

    monkeypatch.setattr(torchvision.datasets.CIFAR100, "download", offline)
    with pytest.raises(RankSearchError) as info:
        load_dataset("cifar100", data_root=str(tmp_path), download=True)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"cifar100: download into {tmp_path} failed (")
    assert "no network here" in message and "pass --data-root to the parent of cifar-100-python/" in message

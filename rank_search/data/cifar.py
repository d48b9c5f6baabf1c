"""CIFAR-10 / CIFAR-100 read straight from the official python pickle batches."""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rank_search.data import DataSplits, register_dataset
from rank_search.data.loader import cifar_augment, make_loaders, split_indices
from rank_search.errors import RankSearchError

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)
CIFAR_VAL_SIZE = 5000  # taken from train; 10 % of train when that is smaller

_SPECS: dict[str, dict[str, Any]] = {
    "cifar10": {
        "folder": "cifar-10-batches-py",
        "train": [f"data_batch_{i}" for i in range(1, 6)],
        "test": ["test_batch"],
        "label_key": "labels",
        "num_classes": 10,
        "mean": CIFAR10_MEAN,
        "std": CIFAR10_STD,
    },
    "cifar100": {
        "folder": "cifar-100-python",
        "train": ["train"],
        "test": ["test"],
        "label_key": "fine_labels",
        "num_classes": 100,
        "mean": CIFAR100_MEAN,
        "std": CIFAR100_STD,
    },
}


def _read_batches(paths: list[Path], label_key: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate pickle batches into uint8 ``[N, 3, 32, 32]`` images and long labels."""
    images, labels = [], []
    for path in paths:
        try:
            with path.open("rb") as f:
                entry = pickle.load(f, encoding="bytes")
            data = entry.get(b"data", entry.get("data"))
            target = entry.get(label_key.encode(), entry.get(label_key))
        except (OSError, pickle.UnpicklingError, AttributeError, EOFError) as exc:
            raise RankSearchError(f"cannot read CIFAR batch {path}: {exc}") from None
        if data is None or target is None:
            raise RankSearchError(
                f"CIFAR batch {path} lacks the 'data' or {label_key!r} entry"
            )
        images.append(np.asarray(data, dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.append(np.asarray(target, dtype=np.int64))
    return torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels))


def _download(name: str, root: Path) -> None:
    import torchvision

    factory = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100
    for train in (True, False):
        factory(str(root), train=train, download=True)


def load_cifar(
    name: str,
    *,
    data_root: str | None,
    download: bool = False,
    seed: int = 0,
    batch_size: int = 128,
    eval_batch_size: int = 512,
) -> DataSplits:
    """Load ``cifar10`` or ``cifar100`` from ``data_root`` with a fixed seeded val split.

    Raises:
        RankSearchError: No ``data_root``, or a batch file missing/unreadable.
    """
    spec = _SPECS[name]
    if data_root is None:
        raise RankSearchError(
            f"{name} needs a data root containing {spec['folder']}/; "
            "pass --data-root DIR (add --download to fetch it)"
        )
    root = Path(data_root).expanduser()
    if download:
        _download(name, root)
    folder = root / spec["folder"]
    train_paths = [folder / f for f in spec["train"]]
    test_paths = [folder / f for f in spec["test"]]
    missing = [p for p in train_paths + test_paths if not p.is_file()]
    if missing:
        raise RankSearchError(
            f"{name} files not found: expected {missing[0]}"
            f"{f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''}; "
            "pass --download to fetch them or --data-root to point at the parent of "
            f"{spec['folder']}/"
        )
    x_train, y_train = _read_batches(train_paths, spec["label_key"])
    x_test, y_test = _read_batches(test_paths, spec["label_key"])
    for split, y in (("train", y_train), ("test", y_test)):
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= spec["num_classes"]):
            raise RankSearchError(
                f"{name} {split} labels must lie in [0, {spec['num_classes']}), "
                f"got range [{int(y.min())}, {int(y.max())}]"
            )
    val_size = min(CIFAR_VAL_SIZE, max(1, len(y_train) // 10))
    tr, va, _ = (torch.as_tensor(i) for i in split_indices(y_train.numpy(), val_size=val_size))
    train, val, test = make_loaders(
        [(x_train[tr], y_train[tr]), (x_train[va], y_train[va]), (x_test, y_test)],
        seed=seed,
        batch_size=batch_size,
        eval_batch_size=eval_batch_size,
        mean=spec["mean"],
        std=spec["std"],
        augment=cifar_augment,
    )
    return DataSplits(
        name, train, val, test, in_channels=3, num_classes=spec["num_classes"], image_size=32
    )


@register_dataset("cifar10")
def cifar10(**kwargs: Any) -> DataSplits:
    """CIFAR-10: 45k/5k train/val from the five training batches, 10k test; augmented train."""
    return load_cifar("cifar10", **kwargs)


@register_dataset("cifar100")
def cifar100(**kwargs: Any) -> DataSplits:
    """CIFAR-100 (fine labels): 45k/5k train/val, 10k test; augmented train."""
    return load_cifar("cifar100", **kwargs)

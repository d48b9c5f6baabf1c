"""CIFAR-10 / CIFAR-100 through ``torchvision.datasets`` (which checks the md5 of every file
before it unpickles one), as fixed seeded train/val/test splits."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from rank_search.data import DataSplits, register_dataset, register_presence_check
from rank_search.data.loader import cifar_augment, make_loaders, split_indices
from rank_search.errors import RankSearchError

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)
CIFAR_VAL_SIZE = 5000  # taken from train; 10 % of train when that is smaller

_SPECS: dict[str, dict[str, Any]] = {
    "cifar10": {"dataset": "CIFAR10", "num_classes": 10, "mean": CIFAR10_MEAN, "std": CIFAR10_STD},
    "cifar100": {"dataset": "CIFAR100", "num_classes": 100, "mean": CIFAR100_MEAN, "std": CIFAR100_STD},
}


def _dataset_class(name: str):
    import torchvision.datasets

    return getattr(torchvision.datasets, _SPECS[name]["dataset"])


def _files(cls) -> list[tuple[str, str]]:
    """(file name, md5) of everything ``cls`` reads: its class attributes, which its own
    integrity check walks too (torchvision has no public accessor for them)."""
    return [*map(tuple, cls.train_list), *map(tuple, cls.test_list), (cls.meta["filename"], cls.meta["md5"])]


def _no_root(name: str, cls) -> str:
    return f"{name} needs a data root containing {cls.base_folder}/; pass --data-root DIR (add --download to fetch it)"


def _missing(name: str, cls, root: Path) -> str | None:
    """The first file torchvision would read that is not under ``root``, in one line (None: all there)."""
    folder = root / cls.base_folder
    missing = [folder / f for f, _ in _files(cls) if not (folder / f).is_file()]
    if not missing:
        return None
    more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
    return (f"{name} files not found: expected {missing[0]}{more}; pass --download to fetch them or "
            f"--data-root to point at the parent of {cls.base_folder}/")


def _refusal(name: str, cls, root: Path) -> str:
    """Why torchvision refused ``root``, in one line: the first missing file, else the first whose
    md5 is not the official one."""
    from torchvision.datasets.utils import check_integrity

    missing = _missing(name, cls, root)
    if missing:
        return missing
    folder = root / cls.base_folder
    files = _files(cls)
    damaged = [f for f, md5 in files if not check_integrity(str(folder / f), md5)]
    if damaged:
        more = f" and {len(damaged) - 1} more" if len(damaged) > 1 else ""
        return (f"{name} files in {folder} fail torchvision's integrity check (md5 of {damaged[0]}{more}): "
                "they are not the official files, or are damaged; pass --download to fetch them again")
    return f"{name}: torchvision refused {folder}"


def _split(name: str, cls, root: Path, *, train: bool, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """One split as uint8 ``[N, 3, 32, 32]`` images and long labels."""
    try:
        ds = cls(str(root), train=train, download=download)
    except RuntimeError:  # torchvision: "Dataset not found or corrupted"
        raise RankSearchError(_refusal(name, cls, root)) from None
    except OSError as exc:  # only a download touches the network (urllib's errors are OSErrors)
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise RankSearchError(f"{name}: download into {root} failed ({reason}); fetch {cls.url} where there is "
                              f"network, unpack it and pass --data-root to the parent of {cls.base_folder}/") from None
    images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()  # torchvision keeps HWC
    return images, torch.as_tensor(ds.targets, dtype=torch.long)


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
        RankSearchError: No ``data_root``, a file missing or not the official one, or a failed
            ``download``.
    """
    spec = _SPECS[name]
    cls = _dataset_class(name)
    if data_root is None:
        raise RankSearchError(_no_root(name, cls))
    root = Path(data_root).expanduser()
    x_train, y_train = _split(name, cls, root, train=True, download=download)
    x_test, y_test = _split(name, cls, root, train=False, download=False)  # fetched with train, if at all
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


def check_cifar(name: str, *, data_root: str | None, download: bool = False) -> None:
    """``data_root`` holds every file of ``name`` (looked for, not read: the md5s are checked on
    loading), or ``download`` will fetch them there.

    Raises:
        RankSearchError: no ``data_root``, or a file missing (the first one named).
    """
    cls = _dataset_class(name)
    if data_root is None:
        raise RankSearchError(_no_root(name, cls))
    missing = None if download else _missing(name, cls, Path(data_root).expanduser())
    if missing:
        raise RankSearchError(missing)


@register_presence_check("cifar10")
def _check_cifar10(**kwargs: Any) -> None:
    check_cifar("cifar10", **kwargs)


@register_presence_check("cifar100")
def _check_cifar100(**kwargs: Any) -> None:
    check_cifar("cifar100", **kwargs)


@register_dataset("cifar10")
def cifar10(**kwargs: Any) -> DataSplits:
    """CIFAR-10: 45k/5k train/val from the five training batches, 10k test; augmented train."""
    return load_cifar("cifar10", **kwargs)


@register_dataset("cifar100")
def cifar100(**kwargs: Any) -> DataSplits:
    """CIFAR-100 (fine labels): 45k/5k train/val, 10k test; augmented train."""
    return load_cifar("cifar100", **kwargs)

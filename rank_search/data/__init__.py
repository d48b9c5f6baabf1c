"""Datasets: fixed seeded train/val/test splits behind one ``load_dataset`` entry point, and
``check_data``, which tells without reading them whether a data set's files are where
``load_dataset`` would look (a sweep's pre-flight calls it before Ray starts).

Every split is drawn with :data:`~rank_search.data.loader.SPLIT_SEED`, never with the
training seed, so all runs share one partition. ``val`` drives searches; ``test`` is only
for reporting. The ``seed`` argument only drives shuffling and augmentation.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable

from rank_search._registry import Registry
from rank_search.data.loader import (
    SPLIT_SEED,
    Loader,
    TensorLoader,
    cifar_augment,
    epoch_seed,
    split_indices,
)


@dataclass(frozen=True)
class DataSplits:
    """The three loaders of a dataset plus the shape facts models are built from."""

    name: str
    train: Loader
    val: Loader
    test: Loader
    in_channels: int
    num_classes: int
    image_size: int


DatasetBuilder = Callable[..., DataSplits]

DATASETS: Registry[DatasetBuilder] = Registry("dataset")
register_dataset = DATASETS.register

#: ``check(*, data_root, download)`` of each data set read from files: raises a one-line
#: ``RankSearchError`` when they are not there. Data sets embedded in a package or generated
#: have none.
PresenceCheck = Callable[..., None]
PRESENCE_CHECKS: Registry[PresenceCheck] = Registry("data presence check")
register_presence_check = PRESENCE_CHECKS.register


def load_dataset(
    name: str,
    *,
    data_root: str | None = None,
    download: bool = False,
    seed: int = 0,
    batch_size: int = 128,
    eval_batch_size: int = 512,
    **options: Any,
) -> DataSplits:
    """Load a registered dataset as fixed train/val/test loaders.

    Args:
        name: Registered dataset name (see :func:`list_datasets`).
        data_root: Directory holding the files (file-based datasets only).
        download: Fetch missing files first where supported (CIFAR); opt-in, needs network.
        seed: Drives shuffling/augmentation only, never the split.
        batch_size: Training batch size.
        eval_batch_size: Batch size of the val and test loaders.
        **options: Dataset-specific extras (e.g. ``image_size``/``num_workers`` for
            ``imagefolder``, sizes for ``synthetic``).

    Raises:
        ValueError: Unknown dataset name (lists valid names).
        RankSearchError: Missing files or bad arguments.
    """
    from rank_search.errors import RankSearchError

    builder = DATASETS.get(name)
    for arg, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
        if value <= 0:
            raise RankSearchError(f"{arg} must be > 0, got {value}")
    if seed < 0:
        raise RankSearchError(f"seed must be >= 0, got {seed}")
    return builder(
        data_root=data_root,
        download=download,
        seed=seed,
        batch_size=batch_size,
        eval_batch_size=eval_batch_size,
        **options,
    )


@dataclass(frozen=True)
class DatasetInfo:
    """Input shape and class count of a dataset, known without loading it, and the training
    batch size and learning rate used when the user sets none (tuned for short budgets on
    the small sets; the CIFAR/ImageNet values are the papers')."""

    in_channels: int
    num_classes: int
    image_size: int
    batch_size: int = 128
    lr: float = 0.1


_INFO = {
    "mnist5k": DatasetInfo(1, 10, 28, batch_size=16, lr=0.02),
    "digits": DatasetInfo(1, 10, 8, batch_size=16, lr=0.02),
    "cifar10": DatasetInfo(3, 10, 32),
    "cifar100": DatasetInfo(3, 100, 32),
    "synthetic": DatasetInfo(1, 10, 8, batch_size=32, lr=0.05),
    "imagefolder": DatasetInfo(3, 1000, 224, batch_size=256, lr=0.1),
}


def dataset_info(name: str, *, data_root: str | None = None) -> DatasetInfo:
    """Shape facts of ``name`` without reading its data (``imagefolder`` counts the class
    folders of ``data_root/train`` when it exists, else assumes ImageNet's 1000)."""
    import os

    DATASETS.get(name)  # unknown names raise with the valid list
    info = _INFO[name]
    if name == "imagefolder" and data_root and os.path.isdir(os.path.join(data_root, "train")):
        classes = [d for d in os.scandir(os.path.join(data_root, "train")) if d.is_dir()]
        info = replace(info, num_classes=len(classes))
    return info


def check_data(name: str, *, data_root: str | None = None, download: bool = False) -> None:
    """Fail, in one line and without reading any file, where ``load_dataset(name, data_root=...,
    download=...)`` would not find the data set's files. Cheap: it looks for the files and
    folders (their content, e.g. CIFAR's md5s, is checked when they are loaded); with
    ``download`` only that a download can go somewhere.

    Raises:
        RankSearchError: an unknown name (lists the valid ones), no ``data_root`` where one is
            needed, a missing file or folder (named), or ``download`` of a data set that cannot be.
    """
    DATASETS.get(name)
    if name in PRESENCE_CHECKS:
        PRESENCE_CHECKS.get(name)(data_root=data_root, download=download)


def fetch_data(name: str, *, data_root: str | None) -> None:
    """Download ``name``'s files into ``data_root`` where they are missing or damaged (as
    ``load_dataset(download=True)`` does, which it calls once and drops), e.g. once in a sweep's
    driver so that its trials only read. Nothing to do for a data set that has no files.

    Raises:
        RankSearchError: as :func:`check_data` with ``download``, or a failed download.
    """
    check_data(name, data_root=data_root, download=True)
    if name in PRESENCE_CHECKS:
        load_dataset(name, data_root=data_root, download=True)


def list_datasets(pattern: str = "*") -> list[str]:
    """Sorted registered dataset names matching the glob ``pattern``."""
    return DATASETS.names(pattern)


# Imported for their registration side effects.
from rank_search.data import cifar, digits, imagefolder, mnist, synthetic  # noqa: E402,F401

__all__ = [
    "DATASETS",
    "PRESENCE_CHECKS",
    "SPLIT_SEED",
    "DataSplits",
    "DatasetInfo",
    "DatasetBuilder",
    "Loader",
    "TensorLoader",
    "check_data",
    "cifar_augment",
    "epoch_seed",
    "dataset_info",
    "fetch_data",
    "list_datasets",
    "load_dataset",
    "register_dataset",
    "register_presence_check",
    "split_indices",
]

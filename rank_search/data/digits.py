"""``digits``: scikit-learn's 1,797 real 8x8 handwritten digits."""
from __future__ import annotations

import torch

from rank_search.data import DataSplits, register_dataset
from rank_search.data.loader import make_loaders, split_indices

DIGITS_VAL = 180  # ~10 %
DIGITS_TEST = 360  # ~20 %; train gets the remaining 1,257 (~70 %)


@register_dataset("digits")
def digits(
    *,
    data_root: str | None = None,
    download: bool = False,
    seed: int = 0,
    batch_size: int = 128,
    eval_batch_size: int = 512,
) -> DataSplits:
    """8x8 digits (values 0-16 scaled to [0, 1]), stratified fixed split 1257/180/360."""
    del data_root, download  # bundled with scikit-learn
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.as_tensor(bunch.images, dtype=torch.float32).div_(16.0).unsqueeze(1)
    labels = torch.as_tensor(bunch.target).long()
    parts = [torch.as_tensor(p) for p in split_indices(
        bunch.target, val_size=DIGITS_VAL, test_size=DIGITS_TEST
    )]
    train_x = images[parts[0]]
    mean, std = (float(train_x.mean()),), (float(train_x.std()),)  # fixed: split is fixed
    train, val, test = make_loaders(
        [(images[i], labels[i]) for i in parts],
        seed=seed,
        batch_size=batch_size,
        eval_batch_size=eval_batch_size,
        mean=mean,
        std=std,
    )
    return DataSplits("digits", train, val, test, in_channels=1, num_classes=10, image_size=8)

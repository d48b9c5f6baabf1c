"""``synthetic``: a tiny learnable dataset (class prototypes + noise) for tests."""
from __future__ import annotations

import torch

from rank_search.data import DataSplits, register_dataset
from rank_search.data.loader import SPLIT_SEED, make_loaders
from rank_search.errors import RankSearchError


@register_dataset("synthetic")
def synthetic(
    *,
    data_root: str | None = None,
    download: bool = False,
    seed: int = 0,
    batch_size: int = 128,
    eval_batch_size: int = 512,
    in_channels: int = 1,
    image_size: int = 8,
    num_classes: int = 10,
    sizes: tuple[int, int, int] = (512, 128, 128),
    noise: float = 1.0,
) -> DataSplits:
    """Images ``prototype[label] + noise * N(0, 1)`` from fixed random prototypes.

    The data and split depend only on :data:`SPLIT_SEED` and the shape options; ``seed``
    only drives shuffling. Labels are balanced (cycled ``0..num_classes-1``).
    """
    del data_root, download
    for rule, ok, value in (
        ("in_channels must be >= 1", in_channels >= 1, in_channels),
        ("image_size must be >= 1", image_size >= 1, image_size),
        ("num_classes must be >= 2", num_classes >= 2, num_classes),
        ("sizes must be 3 positive ints", len(sizes) == 3 and min(sizes) > 0, sizes),
        ("noise must be >= 0", noise >= 0, noise),
    ):
        if not ok:
            raise RankSearchError(f"synthetic: {rule}, got {value!r}")
    gen = torch.Generator().manual_seed(SPLIT_SEED)
    shape = (in_channels, image_size, image_size)
    prototypes = torch.randn((num_classes, *shape), generator=gen)
    splits = []
    for n in sizes:
        labels = torch.arange(n) % num_classes
        labels = labels[torch.randperm(n, generator=gen)]
        images = prototypes[labels] + noise * torch.randn((n, *shape), generator=gen)
        splits.append((images, labels))
    scale = (1.0 + noise**2) ** 0.5  # prototypes and noise are unit-variance
    train, val, test = make_loaders(
        splits,
        seed=seed,
        batch_size=batch_size,
        eval_batch_size=eval_batch_size,
        mean=(0.0,),
        std=(scale,),
    )
    return DataSplits(
        "synthetic", train, val, test,
        in_channels=in_channels, num_classes=num_classes, image_size=image_size,
    )

"""``imagefolder``: ImageNet-style ``train/`` + ``val/`` (+ optional ``test/``) class folders.

Streams from disk with torchvision ``ImageFolder`` and a ``DataLoader``. When ``test/`` is
absent, ``val/`` is split into two fixed seeded halves (``SPLIT_SEED``): the first half is
``val`` (drives searches), the second ``test`` (reporting only), so a search never selects
on the images it is reported on.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from rank_search.data import DataSplits, register_dataset, register_presence_check
from rank_search.data.loader import SPLIT_SEED, Batch, epoch_seed
from rank_search.errors import RankSearchError

if TYPE_CHECKING:
    from torchvision.datasets import ImageFolder

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class StreamingLoader:
    """A ``DataLoader`` whose shuffle order and worker seeds derive from ``(seed, epoch)``.

    With ``num_workers=0`` the random transforms draw from torch's global RNG, so only the
    sample order (not the augmentation) is reproducible; workers are seeded from the
    loader's generator and make both reproducible.
    """

    def __init__(
        self,
        dataset: Dataset,
        *,
        batch_size: int,
        shuffle: bool,
        seed: int,
        num_workers: int,
        drop_last: bool = False,
    ) -> None:
        self.dataset = dataset
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = 0
        self._gen = torch.Generator()
        self._loader = DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            num_workers=num_workers,
            generator=self._gen,
            drop_last=drop_last,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=False,
        )

    @property
    def num_samples(self) -> int:
        """Number of samples in the split."""
        return len(self.dataset)  # type: ignore[arg-type]

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose shuffle order the next iteration uses."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self._loader)

    def __iter__(self) -> Iterator[Batch]:
        self._gen.manual_seed(epoch_seed(self.seed, self.epoch))
        return iter(self._loader)


def _image_folder(path: Path, transform: object) -> ImageFolder:
    from torchvision.datasets import ImageFolder

    try:
        return ImageFolder(str(path), transform=transform)
    except (FileNotFoundError, OSError) as exc:
        raise RankSearchError(f"imagefolder: cannot read {path}: {exc}") from None


@register_presence_check("imagefolder")
def check_imagefolder(*, data_root: str | None, download: bool = False) -> None:
    """``data_root`` holds ``train/`` and ``val/`` folders (their images are read on loading).

    Raises:
        RankSearchError: ``download`` (nothing to fetch from), no ``data_root``, or a folder missing.
    """
    if download:
        raise RankSearchError("imagefolder cannot be downloaded; pass --data-root DIR")
    if data_root is None:
        raise RankSearchError("imagefolder needs --data-root DIR containing train/ and val/")
    root = Path(data_root).expanduser()
    for sub in ("train", "val"):
        if not (root / sub).is_dir():
            raise RankSearchError(f"imagefolder: expected folder {root / sub}/<class>/*; check --data-root")


@register_dataset("imagefolder")
def imagefolder(
    *,
    data_root: str | None = None,
    download: bool = False,
    seed: int = 0,
    batch_size: int = 128,
    eval_batch_size: int = 512,
    image_size: int = 224,
    num_workers: int | None = None,
) -> DataSplits:
    """Class-folder images: train RandomResizedCrop+flip, eval Resize+CenterCrop, 3 channels.

    Args:
        image_size: Crop size (eval resizes the short side to ``image_size * 256 / 224``).
        num_workers: DataLoader workers (default ``min(8, cpu_count)``).
    """
    from torchvision import transforms as T

    check_imagefolder(data_root=data_root, download=download)
    if image_size < 8:
        raise RankSearchError(f"imagefolder image_size must be >= 8, got {image_size}")
    root = Path(data_root).expanduser()
    workers = min(8, os.cpu_count() or 1) if num_workers is None else num_workers
    norm = T.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    train_tf = T.Compose([
        T.RandomResizedCrop(image_size), T.RandomHorizontalFlip(), T.ToTensor(), norm,
    ])
    eval_tf = T.Compose([
        T.Resize(round(image_size * 256 / 224)), T.CenterCrop(image_size), T.ToTensor(), norm,
    ])
    train_ds = _image_folder(root / "train", train_tf)
    val_ds = _image_folder(root / "val", eval_tf)
    if val_ds.classes != train_ds.classes:
        raise RankSearchError(
            f"imagefolder: val/ classes must equal train/ classes, got "
            f"{len(val_ds.classes)} vs {len(train_ds.classes)}"
        )
    test_ds: Dataset
    if (root / "test").is_dir():
        test_ds = _image_folder(root / "test", eval_tf)
        if test_ds.classes != train_ds.classes:  # type: ignore[attr-defined]
            raise RankSearchError("imagefolder: test/ classes must equal train/ classes")
        val_part: Dataset = val_ds
    else:
        if len(val_ds) < 2:
            raise RankSearchError(
                "imagefolder: val/ needs >= 2 images to split into val and test, "
                f"got {len(val_ds)}"
            )
        order = torch.randperm(len(val_ds), generator=torch.Generator().manual_seed(SPLIT_SEED))
        half = len(val_ds) // 2
        val_part = Subset(val_ds, sorted(order[:half].tolist()))
        test_ds = Subset(val_ds, sorted(order[half:].tolist()))

    def loader(ds: Dataset, bs: int, shuffle: bool) -> StreamingLoader:
        return StreamingLoader(ds, batch_size=bs, shuffle=shuffle, seed=seed, num_workers=workers)

    return DataSplits(
        "imagefolder",
        loader(train_ds, batch_size, True),
        loader(val_part, eval_batch_size, False),
        loader(test_ds, eval_batch_size, False),
        in_channels=3,
        num_classes=len(train_ds.classes),
        image_size=image_size,
    )

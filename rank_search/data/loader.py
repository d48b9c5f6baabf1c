"""In-memory tensor loader with (seed, epoch)-derived shuffling, plus shared split helpers."""
from __future__ import annotations

from typing import Callable, Iterator, Protocol, Sequence

import numpy as np
import torch

#: Seed of every fixed train/val/test partition. It never depends on the training seed, so
#: all runs and seeds of a dataset see exactly the same split.
SPLIT_SEED = 0

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
Batch = tuple[torch.Tensor, torch.Tensor]


class Loader(Protocol):
    """What training and evaluation code may rely on for every split loader."""

    batch_size: int

    def __iter__(self) -> Iterator[Batch]: ...

    def __len__(self) -> int: ...

    def set_epoch(self, epoch: int) -> None: ...

    @property
    def num_samples(self) -> int: ...


def epoch_seed(seed: int, epoch: int) -> int:
    """A well-mixed 63-bit generator seed derived from ``(seed, epoch)``."""
    if seed < 0 or epoch < 0:
        raise ValueError(f"seed and epoch must be >= 0, got seed={seed}, epoch={epoch}")
    state = np.random.SeedSequence([seed, epoch]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


class TensorLoader:
    """Yields ``(normalised float images, long labels)`` batches from tensors held in memory.

    uint8 images are divided by 255; float images are taken to be already on a [0, 1]-like
    scale. ``augment`` runs on that unnormalised float batch, then ``(x - mean) / std`` is
    applied. Shuffling and augmentation use a private generator seeded from
    ``(seed, epoch)`` at the start of each iteration, so calling :meth:`set_epoch` with the
    same epoch reproduces the exact batches (e.g. after resuming) without saved RNG state.
    The epoch is not advanced automatically: call ``set_epoch`` once per epoch.

    Args:
        images: ``[N, C, H, W]`` uint8 or floating tensor.
        labels: ``[N]`` integer labels.
        batch_size: Samples per batch (> 0).
        shuffle: Shuffle the sample order each epoch.
        seed: Base seed for shuffling and augmentation.
        augment: Optional ``callable(x, generator) -> x`` applied per batch.
        mean: Per-channel mean (length C or 1).
        std: Per-channel standard deviation (length C or 1).
        drop_last: Drop the final incomplete batch.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        augment: Augment | None = None,
        mean: Sequence[float] = (0.0,),
        std: Sequence[float] = (1.0,),
        drop_last: bool = False,
    ) -> None:
        if images.dim() != 4:
            raise ValueError(f"images must be [N, C, H, W], got shape {tuple(images.shape)}")
        if labels.shape != (images.shape[0],):
            raise ValueError(
                f"labels must be [N] with N={images.shape[0]}, got shape {tuple(labels.shape)}"
            )
        if batch_size <= 0:
            raise ValueError(f"batch_size must be > 0, got {batch_size}")
        channels = images.shape[1]
        if len(mean) not in (1, channels) or len(std) not in (1, channels):
            raise ValueError(
                f"mean/std need 1 or {channels} values, got {len(mean)} and {len(std)}"
            )
        if min(std) <= 0:
            raise ValueError(f"std values must be > 0, got {tuple(std)}")
        self.images = images
        self.labels = labels.long()
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.augment = augment
        self.drop_last = drop_last
        self.epoch = 0
        self._mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self._std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)

    @property
    def num_samples(self) -> int:
        """Number of samples in the split."""
        return int(self.images.shape[0])

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose shuffle order and augmentation the next iteration uses."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.epoch = epoch

    def __len__(self) -> int:
        n = self.num_samples
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    @property
    def fixed_inputs(self) -> bool:
        """Each sample's input is the same in every epoch (no augmentation), so a function of it
        (a teacher's logits) can be computed once per sample and looked up by ``indexed``."""
        return self.augment is None

    def __iter__(self) -> Iterator[Batch]:
        for x, y, _ in self.indexed():
            yield x, y

    def indexed(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """The batches of iteration, each with its samples' indices into the split."""
        gen = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        n = self.num_samples
        order = torch.randperm(n, generator=gen) if self.shuffle else torch.arange(n)
        for b in range(len(self)):
            idx = order[b * self.batch_size:min(n, (b + 1) * self.batch_size)]
            yield self._inputs(idx, gen), self.labels[idx], idx

    def in_order(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Every sample once, in index order, un-augmented: ``(normalised inputs, indices)``."""
        n = self.num_samples
        for lo in range(0, n, self.batch_size):
            idx = torch.arange(lo, min(n, lo + self.batch_size))
            yield self._inputs(idx), idx

    def _inputs(self, idx: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
        """Samples ``idx`` as normalised float inputs, augmented with ``gen`` where the loader
        augments and a generator is given."""
        x = self.images[idx]
        x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
        if gen is not None and self.augment is not None:
            x = self.augment(x, gen)
        return (x - self._mean) / self._std


def cifar_augment(
    x: torch.Tensor, generator: torch.Generator, *, padding: int = 4
) -> torch.Tensor:
    """Standard CIFAR augmentation, vectorised: zero-pad + random crop, random h-flip.

    Args:
        x: ``[B, C, H, W]`` batch (unnormalised, so zero padding is black).
        generator: Source of all randomness; the result is deterministic given its state.
        padding: Pixels of zero padding on each side before cropping back to ``H x W``.

    Returns:
        A new ``[B, C, H, W]`` tensor of the same dtype.
    """
    b, c, h, w = x.shape
    padded = torch.nn.functional.pad(x, (padding, padding, padding, padding))
    oy = torch.randint(0, 2 * padding + 1, (b,), generator=generator)
    ox = torch.randint(0, 2 * padding + 1, (b,), generator=generator)
    flip = torch.rand(b, generator=generator) < 0.5
    rows = oy[:, None] + torch.arange(h)[None, :]  # [B, H]
    cols = ox[:, None] + torch.arange(w)[None, :]  # [B, W]
    cols = torch.where(flip[:, None], cols.flip(1), cols)  # flipping = reversed columns
    return padded[
        torch.arange(b)[:, None, None, None],
        torch.arange(c)[None, :, None, None],
        rows[:, None, :, None],
        cols[:, None, None, :],
    ]


def split_indices(
    labels: np.ndarray, *, val_size: int, test_size: int = 0, seed: int = SPLIT_SEED
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fixed seeded partition into sorted (train, val, test) index arrays.

    Stratified by label when every class can be represented in each held-out part,
    otherwise a plain seeded random split.
    """
    from sklearn.model_selection import train_test_split

    labels = np.asarray(labels)
    n = len(labels)
    if val_size <= 0 or test_size < 0 or val_size + test_size >= n:
        raise ValueError(
            f"need 0 < val_size and val_size + test_size < {n} samples, "
            f"got val_size={val_size}, test_size={test_size}"
        )
    idx = np.arange(n)

    def cut(pool: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
        try:
            keep, held = train_test_split(
                pool, test_size=size, random_state=seed, stratify=labels[pool]
            )
        except ValueError:  # too few samples per class to stratify
            keep, held = train_test_split(pool, test_size=size, random_state=seed)
        return np.sort(keep), np.sort(held)

    rest, test = cut(idx, test_size) if test_size > 0 else (idx, idx[:0])
    train, val = cut(rest, val_size)
    return train, val, test


def make_loaders(
    splits: Sequence[tuple[torch.Tensor, torch.Tensor]],
    *,
    seed: int,
    batch_size: int,
    eval_batch_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    augment: Augment | None = None,
) -> tuple[TensorLoader, TensorLoader, TensorLoader]:
    """Build (train, val, test) loaders; only train shuffles and augments."""
    (xtr, ytr), (xva, yva), (xte, yte) = splits
    train = TensorLoader(
        xtr, ytr, batch_size=batch_size, shuffle=True, seed=seed, augment=augment,
        mean=mean, std=std,
    )
    val = TensorLoader(xva, yva, batch_size=eval_batch_size, seed=seed, mean=mean, std=std)
    test = TensorLoader(xte, yte, batch_size=eval_batch_size, seed=seed, mean=mean, std=std)
    return train, val, test

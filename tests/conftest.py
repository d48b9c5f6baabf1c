"""Shared fixtures: tiny data and models, so every test stays fast on two CPU cores."""
from __future__ import annotations

import pytest
import torch


def pytest_configure(config) -> None:
    # Tiny tensors: one intra-op thread avoids OpenMP barrier waits, which make each small
    # matmul/SVD cost tens of milliseconds when the two cores are busy with other work.
    torch.set_num_threads(1)


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


@pytest.fixture(scope="module")
def private_ray():
    """A private local Ray (2 CPUs) for the in-process sweeps of one test module; shut down after it."""
    import shutil
    import tempfile

    import ray

    temp = tempfile.mkdtemp(prefix="rs-test-")  # short: Ray's socket paths must stay under 107 chars
    ray.init(address="local", num_cpus=2, include_dashboard=False, _temp_dir=temp, logging_level="WARNING",
             log_to_driver=False)
    yield ray
    ray.shutdown()
    shutil.rmtree(temp, ignore_errors=True)

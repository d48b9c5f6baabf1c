"""Exact resume under mixed precision and channels_last (CPU: bf16, which has no grad scaler;
the fp16 scaler's resume is checked on CUDA in tests/engine/test_gpu.py)."""
from __future__ import annotations

import pytest

from rank_search.run import RunSpec

from _resume import assert_same_run, resumed_run, straight_run


@pytest.mark.parametrize("method", ["trp", "posthoc"])
def test_bf16_channels_last_resumes_exactly(method: str) -> None:
    spec = RunSpec(model="lenet5", dataset="synthetic", method=method, ranks="ratio:0.5", epochs=2,
                   settings={"train.amp": "bf16", "train.channels_last": True, "train.batch_size": 64})
    straight = straight_run(spec)
    assert straight.state_dict()["scaler"] is None
    resumed = resumed_run(spec, after=1)
    resumed.fit()
    assert_same_run(straight, resumed)

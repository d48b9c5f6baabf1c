"""Measured latency: the interleaved timer (``rank_search.latency``), a run's compact-vs-dense
measurement (``run.prepare.latency``) and the trial's batch-size setting. No timed assertions:
the numbers are only checked to be there, positive and consistent with each other."""
from __future__ import annotations

import math

import time

import pytest
import torch
from torch import nn

from rank_search import schema
from rank_search.errors import RankSearchError
from rank_search.latency import latency_metrics, measure_latency, median_forward_ms
from rank_search.run import RunSpec, prepare
from rank_search.run.prepare import latency

LATENCY_KEYS = {schema.LATENCY_MS, schema.DENSE_LATENCY_MS, schema.LATENCY_SPEEDUP, schema.LATENCY_SPREAD}


class _Recorder(nn.Module):
    """Records the order of its calls, the batch it saw, its mode and whether autograd was on."""

    def __init__(self, name: str, log: list) -> None:
        super().__init__()
        self.name, self.log = name, log
        self.linear = nn.Linear(4, 2)
        self.bn = nn.BatchNorm1d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.log.append((self.name, tuple(x.shape), self.training, torch.is_grad_enabled()))
        return self.bn(self.linear(x))


def test_forwards_are_interleaved_in_alternating_order() -> None:
    calls: list[str] = []
    fa, fb = (lambda x: calls.append("a")), (lambda x: calls.append("b"))
    medians = median_forward_ms([fa, fb], torch.zeros(1), repeats=3, warmup=1)
    assert len(medians) == 2 and all(m >= 0 for m in medians)
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]  # warm-up, then a b | b a | a b


def test_the_time_cap_stops_after_the_minimum_rounds() -> None:
    calls: list[int] = []

    def slow(x) -> None:
        calls.append(1)
        time.sleep(0.002)

    median_forward_ms([slow], torch.zeros(1), repeats=50, warmup=1, max_seconds=0.001, min_repeats=3)
    assert len(calls) == 1 + 3
    calls.clear()
    median_forward_ms([slow], torch.zeros(1), repeats=5, warmup=0)  # no cap: every round
    assert len(calls) == 5


@pytest.mark.parametrize("kwargs, match", [({"repeats": 0}, "repeats must be an integer >= 1"),
                                           ({"repeats": 2, "warmup": -1}, "warmup must be an integer >= 0")])
def test_bad_counts_are_refused(kwargs, match) -> None:
    with pytest.raises(RankSearchError, match=match):
        median_forward_ms([lambda x: None], torch.zeros(1), **kwargs)


def test_the_speedup_is_dense_over_compact() -> None:
    assert latency_metrics(3.0, 1.5) == {schema.LATENCY_MS: 1.5, schema.DENSE_LATENCY_MS: 3.0,
                                         schema.LATENCY_SPEEDUP: 2.0}
    assert latency_metrics(3.0, 1.5, 0.25)[schema.LATENCY_SPREAD] == 0.25


def test_the_spread_is_the_interquartile_range_of_the_per_round_speedups() -> None:
    from rank_search.latency import speedup_spread

    # rounds' speed-ups 1, 2, 3, 4, 5: quartiles 2 and 4 (inclusive)
    assert speedup_spread([1.0, 2.0, 3.0, 4.0, 5.0], [1.0] * 5) == pytest.approx(2.0)
    assert speedup_spread([2.0] * 6, [1.0] * 6) == 0.0  # steady timings
    assert math.isnan(speedup_spread([2.0], [1.0]))


def test_both_models_run_in_eval_without_grad_at_the_batch_size_and_are_restored() -> None:
    log: list = []
    dense, compact = _Recorder("dense", log), _Recorder("compact", log)
    compact.eval()  # modes differ before: each gets its own back
    before = {k: v.clone() for k, v in dense.state_dict().items()}
    threads = torch.get_num_threads()
    out = measure_latency(dense, compact, (4,), batch_size=3, threads=1, repeats=4, warmup=1)
    assert set(out) == LATENCY_KEYS and out[schema.LATENCY_MS] > 0 and out[schema.DENSE_LATENCY_MS] > 0
    assert out[schema.LATENCY_SPEEDUP] == pytest.approx(out[schema.DENSE_LATENCY_MS] / out[schema.LATENCY_MS])
    assert {entry[0] for entry in log} == {"dense", "compact"}
    assert len(log) == 2 * (1 + 4)
    assert all(shape == (3, 4) and not training and not grad for _, shape, training, grad in log)
    assert dense.training and not compact.training
    assert torch.get_num_threads() == threads
    after = dense.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BatchNorm statistics untouched


def test_without_a_compact_model_the_dense_stands_in() -> None:
    log: list = []
    out = measure_latency(_Recorder("dense", log), None, (4,), batch_size=1, repeats=2, warmup=0)
    assert out[schema.LATENCY_MS] == out[schema.DENSE_LATENCY_MS] and out[schema.LATENCY_SPEEDUP] == 1.0
    assert out[schema.LATENCY_SPREAD] == 0.0
    assert len(log) == 2


@pytest.mark.parametrize("batch", [0, -1, True, 1.5])
def test_a_bad_batch_size_is_refused(batch) -> None:
    with pytest.raises(RankSearchError, match="latency batch size must be an integer >= 1"):
        measure_latency(nn.Linear(4, 2), None, (4,), batch_size=batch)


@pytest.fixture(scope="module")
def trainer():
    tr = prepare(RunSpec(model="lenet5", dataset="synthetic", method="factorized", ranks="ratio:0.3", epochs=1))
    tr.compact_model()
    return tr


def test_a_run_measures_its_compact_model_against_the_dense(trainer) -> None:
    compact = trainer.compact_model()
    out = latency(trainer, batch_size=2)
    assert set(out) == LATENCY_KEYS
    assert out[schema.LATENCY_MS] > 0 and out[schema.DENSE_LATENCY_MS] > 0 and out[schema.LATENCY_SPEEDUP] > 0
    assert trainer.compact_model() is compact  # the cached compact model, not rebuilt
    assert trainer.dense.training  # the cost reference is left as it was
    same = latency(trainer, compact=False)
    assert same[schema.LATENCY_SPEEDUP] == 1.0


def test_the_trial_reads_its_batch_size_from_the_space_constants() -> None:
    from search_spaces import latency_batch_size  # the trial codec, which the trainable reads it through

    assert latency_batch_size({}) == schema.DEFAULT_LATENCY_BATCH_SIZE == 1
    assert latency_batch_size({schema.LATENCY_BATCH_SIZE_KEY: 8}) == 8
    for bad in (0, True, "8", 2.0):
        with pytest.raises(RankSearchError, match="space.latency_batch_size must be an integer >= 1"):
            latency_batch_size({schema.LATENCY_BATCH_SIZE_KEY: bad})


def test_channels_last_times_both_models_and_the_batch_in_that_layout_leaving_them_as_they_were() -> None:
    """A run trained with ``train.channels_last`` keeps its compact model so: the dense model is
    timed in the same layout (a copy), not NCHW against channels_last."""
    seen: list = []

    class Conv(nn.Conv2d):
        def forward(self, x):
            seen.append((self.weight.is_contiguous(memory_format=torch.channels_last),
                         x.is_contiguous(memory_format=torch.channels_last)))
            return super().forward(x)

    dense = Conv(3, 8, 3)
    compact = Conv(3, 4, 3).to(memory_format=torch.channels_last)
    out = measure_latency(dense, compact, (3, 8, 8), batch_size=2, repeats=2, warmup=0, channels_last=True)
    assert out[schema.LATENCY_SPEEDUP] > 0
    assert seen and all(weight and batch for weight, batch in seen)
    assert dense.weight.is_contiguous() and not dense.weight.is_contiguous(memory_format=torch.channels_last)
    seen.clear()
    measure_latency(dense, None, (3, 8, 8), batch_size=2, repeats=1, warmup=0)
    assert seen == [(False, False)]  # off by default: the models as given


def test_a_channels_last_run_reports_a_same_layout_speedup() -> None:
    tr = prepare(RunSpec(model="lenet5", dataset="synthetic", method="factorized", ranks="ratio:0.3", epochs=1,
                         settings={"train.channels_last": True}))
    assert tr.compact_model().features[3].core.weight.is_contiguous(memory_format=torch.channels_last)
    assert set(latency(tr, batch_size=2)) == LATENCY_KEYS
    assert not tr.dense.features[3].weight.is_contiguous(memory_format=torch.channels_last)  # not converted

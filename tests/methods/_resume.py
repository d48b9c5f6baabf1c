"""Exact resume, written once: the recipe the contract test and the method tests share.

A straight run trains every epoch; a resumed run trains ``after`` epochs, saves
``trainer.state_dict()`` with ``torch.save``, and a fresh trainer from ``prepare`` loads it with
``torch.load(..., weights_only=True)`` and fits the rest. ``assert_same_run`` then checks that
both ended in the same state, bit for bit.
"""
from __future__ import annotations

import io

import pytest
import torch

from rank_search import schema
from rank_search.run import RunSpec, final_metrics, prepare

from _training import fit_until  # noqa: F401  (re-exported for the method tests)


def straight_run(spec: RunSpec):
    """The uninterrupted run of ``spec``, trained to the end."""
    trainer = prepare(spec)
    trainer.fit()
    return trainer


def resumed_run(spec: RunSpec, *, after: int):
    """A fresh trainer holding the saved state of a run of ``spec`` stopped after ``after``
    epochs; not fitted yet, so a test can look at the restored state first."""
    first = prepare(spec)
    fit_until(first, after)
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    del first
    torch.manual_seed(12345)  # whatever happened since, the state restores the RNGs
    trainer = prepare(spec)
    buffer.seek(0)
    trainer.load_state_dict(torch.load(buffer, weights_only=True))
    assert (trainer.epoch, trainer.global_step) == (after, after * trainer.steps_per_epoch)
    return trainer


def assert_same_state(a: dict, b: dict) -> None:
    """Two state dicts with the same keys, in order, and bit-identical tensors (other values equal)."""
    assert list(a) == list(b)
    for key in a:
        x, y = a[key], b[key]
        if isinstance(x, torch.Tensor):
            assert isinstance(y, torch.Tensor) and x.dtype == y.dtype and torch.equal(x, y), key
        else:
            assert x == y, key


def _metrics_without_time(trainer) -> dict:
    metrics = final_metrics(trainer, wall_seconds=0.0)
    return {k: v for k, v in metrics.items() if k != schema.WALL_SECONDS}


def assert_same_run(straight, resumed) -> None:
    """``resumed`` ended where ``straight`` did: weights, optimizer state, compact model, plan,
    history and final metrics."""
    assert (resumed.epoch, resumed.global_step) == (straight.epoch, straight.global_step)
    assert straight.epoch == straight.epochs
    assert_same_state(straight.model.state_dict(), resumed.model.state_dict())
    a, b = straight.optimizer.state_dict()["state"], resumed.optimizer.state_dict()["state"]
    assert list(a) == list(b)
    for index in a:
        assert_same_state(a[index], b[index])
    assert_same_state(straight.compact_model().state_dict(), resumed.compact_model().state_dict())
    assert straight.method.plan == resumed.method.plan
    assert [(r.epoch, r.train_loss, r.val_accuracy, r.val_loss) for r in straight.history] == \
        [(r.epoch, r.train_loss, r.val_accuracy, r.val_loss) for r in resumed.history]
    assert _metrics_without_time(straight) == _metrics_without_time(resumed)

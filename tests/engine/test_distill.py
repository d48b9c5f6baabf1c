"""Distillation from a dense teacher (issue 30): ``distill.weight`` 0 is bit-identical to
training without it, the teacher never receives a gradient nor changes, no compact model holds it,
and bad settings are one-line errors."""
from __future__ import annotations

import pytest
import torch

from rank_search.engine import DistillConfig, TrainConfig, Trainer
from rank_search.engine.distill import distill_loss
from rank_search.engine.trainer import seed_everything
from rank_search.errors import RankSearchError
from rank_search.methods import create_method
from rank_search.models import create_model_for
from rank_search.overrides import replace_validated

from _tiny import tiny_data


@pytest.fixture(scope="module")
def data():
    return tiny_data()


def _trainer(data, method: str = "posthoc", *, distill: DistillConfig | None = None, teacher=None,
             epochs: int = 1) -> Trainer:
    m = create_method(method, {"init": "dense"} if method == "posthoc" else None, ranks="ratio:0.5")
    seed_everything(0)
    dense = create_model_for("lenet5", data)
    m.initialized = True
    if m.uses_plan:
        m.resolve_plan(dense)
    cfg = TrainConfig(lr=0.05, batch_size=32, device="cpu", threads=1)
    return Trainer(dense, m, data, cfg, epochs=epochs, seed=0, distill=distill, teacher=teacher)


def _teacher(data):
    seed_everything(7)
    return create_model_for("lenet5", data)


@pytest.mark.parametrize("method", ["posthoc", "factorized"])
def test_weight_zero_is_bit_identical_to_no_distillation(data, method: str) -> None:
    plain = _trainer(data, method)
    plain.fit()
    off = _trainer(data, method, distill=DistillConfig(weight=0.0, temperature=2.0), teacher=_teacher(data))
    off.fit()
    assert off.teacher is None  # nothing built, nothing run
    a, b = plain.model.state_dict(), off.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert plain.history[0].train_loss == off.history[0].train_loss


def test_the_teacher_gets_no_gradient_and_stays_out_of_the_compact_model(data) -> None:
    teacher = _teacher(data)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    trainer = _trainer(data, distill=DistillConfig(weight=0.5, temperature=4.0), teacher=teacher)
    plain = _trainer(data)
    trainer.fit()
    plain.fit()
    frozen = trainer.teacher
    assert frozen is not None and not frozen.training
    assert all(not p.requires_grad and p.grad is None for p in frozen.parameters())
    assert all(torch.equal(before[k], v) for k, v in frozen.state_dict().items())
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())  # the caller's copy too
    student = {id(p) for p in trainer.model.parameters()} | {id(p) for p in trainer.compact_model().parameters()}
    assert student.isdisjoint(id(p) for p in frozen.parameters())
    assert trainer.compact_model().state_dict().keys() == plain.compact_model().state_dict().keys()
    assert "teacher" not in str(trainer.state_dict().keys())
    assert trainer.history[0].train_loss != plain.history[0].train_loss  # the teacher did take part


def _seen_by(trainer: Trainer) -> list[int]:
    """The batch sizes ``trainer``'s teacher will run on, recorded by a forward hook."""
    sizes: list[int] = []
    trainer.teacher.register_forward_hook(lambda _m, inputs, _out: sizes.append(inputs[0].shape[0]))
    return sizes


def _two_epochs(data, teacher) -> Trainer:
    return _trainer(data, distill=DistillConfig(weight=0.5, temperature=4.0), teacher=teacher, epochs=2)


def test_fixed_inputs_run_the_teacher_once_per_sample_and_train_as_every_batch_does(data) -> None:
    """A loader without augmentation: the teacher's logits come from one pass over the training
    samples (``teacher_table``), and training matches the per-batch teacher of a loader that
    augments with the identity (the same batches) to float rounding."""
    cached = _two_epochs(data, _teacher(data))
    seen = _seen_by(cached)
    cached.fit()
    assert data.train.fixed_inputs and sum(seen) == data.train.num_samples  # once per sample, not per epoch
    per_batch_data = tiny_data()
    per_batch_data.train.augment = lambda x, _gen: x
    assert not per_batch_data.train.fixed_inputs
    per_batch = _two_epochs(per_batch_data, _teacher(data))
    seen = _seen_by(per_batch)
    per_batch.fit()
    assert sum(seen) == 2 * per_batch_data.train.num_samples  # every batch of both epochs
    assert [h.train_loss for h in cached.history] == pytest.approx([h.train_loss for h in per_batch.history],
                                                                   rel=1e-5)
    a, b = cached.model.state_dict(), per_batch.model.state_dict()
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-5) for k in a)


def test_the_loss_is_the_weighted_sum_of_hard_and_soft_terms() -> None:
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
    hard = torch.tensor(1.25)
    assert torch.equal(distill_loss(hard, logits, logits.clone(), DistillConfig(0.3, 2.0)), 0.7 * hard)
    teacher = torch.tensor([[0.0, 3.0, 0.0], [1.0, -1.0, 2.0]])
    t = 2.0
    p = torch.softmax(teacher / t, 1)
    kl = (p * (p.log() - torch.log_softmax(logits / t, 1))).sum(1).mean()
    got = distill_loss(hard, logits, teacher, DistillConfig(1.0, t))
    assert got.item() == pytest.approx((t * t * kl).item(), rel=1e-6)


def test_distillation_without_a_teacher_is_a_one_line_error(data) -> None:
    with pytest.raises(RankSearchError, match=r"distill.weight=0.5 needs a dense teacher: train --init FILE"):
        _trainer(data, distill=DistillConfig(weight=0.5))


@pytest.mark.parametrize("key, value, match", [
    ("weight", 1.5, r"distill.weight must be a number in \[0, 1\], got 1.5"),
    ("weight", -0.1, r"distill.weight must be a number in \[0, 1\], got -0.1"),
    ("weight", float("nan"), r"distill.weight must be a number in \[0, 1\], got nan"),
    ("weight", "high", r"distill.weight must be a number, got 'high'"),
    ("temperature", 0, r"distill.temperature must be a finite number > 0, got 0.0"),
    ("temperature", float("inf"), r"distill.temperature must be a finite number > 0, got inf"),
    ("tau", 1.0, r"unknown setting 'distill.tau'; valid settings: distill.weight, distill.temperature"),
])
def test_bad_settings_are_one_line_errors(key: str, value, match: str) -> None:
    with pytest.raises(RankSearchError, match=match) as info:
        replace_validated(DistillConfig(), {key: value}, prefix="distill.")
    assert "\n" not in str(info.value)

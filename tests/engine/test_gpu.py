"""The CUDA paths of the engine: fp16 with its grad scaler, bf16, channels_last, and the scaler in
the exact-resume state. Marked ``gpu``; skipped where ``torch.cuda.is_available()`` is false
(CI, and the CPU machines this project is developed on)."""
from __future__ import annotations

import io
import math

import pytest
import torch

from rank_search.errors import RankSearchError
from rank_search.methods import METHODS

import _tiny
from _tiny import record_hooks, record_svds, tiny_trainer
from _training import fit_until

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(),
                                                  reason="needs CUDA (torch.cuda.is_available() is false)")]


@pytest.fixture(scope="module")
def tiny_rgb():
    return _tiny.tiny_data(in_channels=3)


def _trains(trainer, monkeypatch, half: torch.dtype) -> None:
    """Fit ``trainer``; the forward ran in ``half``, every hook and SVD in float32 outside autocast,
    the loss is finite and the weights stay float32 on the GPU."""
    svds = record_svds(monkeypatch, "cuda")
    hooks = record_hooks(trainer, monkeypatch, "cuda")
    outputs = set()
    trainer.model.register_forward_hook(lambda mod, inp, out: outputs.add(out.dtype) if mod.training else None)
    trainer.fit()
    assert outputs == {half}
    assert all(math.isfinite(r.train_loss) and math.isfinite(r.val_loss) for r in trainer.history)
    assert {(p.dtype, p.device.type) for p in trainer.model.parameters()} == {(torch.float32, "cuda")}
    assert {p.dtype for p in trainer.compact_model().parameters()} == {torch.float32}
    assert hooks and not any(on for _, on in hooks)
    assert all(dtype in (torch.float32, torch.float64) and not on for _, dtype, on in svds), svds


@pytest.mark.parametrize("method", METHODS.names())
def test_fp16_with_a_grad_scaler_trains_every_method(method: str, tiny_rgb, monkeypatch) -> None:
    trainer = tiny_trainer(method, tiny_rgb, amp="fp16", device="cuda")
    assert isinstance(trainer.scaler, torch.amp.GradScaler) and trainer.scaler.is_enabled()
    _trains(trainer, monkeypatch, torch.float16)
    assert math.isfinite(trainer.scaler.get_scale()) and trainer.scaler.get_scale() > 0


@pytest.mark.parametrize("method", METHODS.names())
def test_bf16_trains_every_method(method: str, tiny_rgb, monkeypatch) -> None:
    trainer = tiny_trainer(method, tiny_rgb, amp="bf16", device="cuda")
    assert trainer.scaler is None
    _trains(trainer, monkeypatch, torch.bfloat16)


def test_fp16_is_accepted_with_device_auto(tiny_rgb) -> None:
    trainer = tiny_trainer("full", tiny_rgb, amp="fp16", device="auto", epochs=1)
    assert trainer.device.type == "cuda" and trainer.scaler is not None


@pytest.mark.parametrize("method", ["full", "trp", "elrt"])
@pytest.mark.parametrize("amp", ["off", "bf16"])
def test_channels_last_trains_like_contiguous(method: str, amp: str, tiny_rgb) -> None:
    runs = {}
    for cl in (False, True):
        trainer = tiny_trainer(method, tiny_rgb, epochs=1, amp=amp, device="cuda", channels_last=cl)
        trainer.fit()
        fmt = torch.channels_last if cl else torch.contiguous_format
        assert all(p.is_contiguous(memory_format=fmt) for p in trainer.model.parameters() if p.dim() == 4)
        runs[cl] = trainer
    # cuDNN picks other kernels (and TF32 or bf16 roundings) for the other layout
    rel = 1e-2 if amp == "off" else 5e-2
    assert runs[True].history[0].train_loss == pytest.approx(runs[False].history[0].train_loss, rel=rel)
    assert runs[True].history[0].val_loss == pytest.approx(runs[False].history[0].val_loss, rel=rel)


@pytest.mark.parametrize("amp", ["off", "bf16"])
def test_the_teacher_s_logits_are_kept_on_the_gpu_and_train_as_every_batch_does(amp: str) -> None:
    from rank_search.engine import DistillConfig
    from rank_search.models import create_model_for

    runs = {}
    for fixed in (True, False):
        data = _tiny.tiny_data(in_channels=3)
        if not fixed:
            data.train.augment = lambda x, _gen: x  # the same batches; the teacher runs on each
        torch.manual_seed(7)
        trainer = tiny_trainer("posthoc", data, amp=amp, device="cuda", distill=DistillConfig(0.5, 4.0),
                               teacher=create_model_for("lenet5", data))
        trainer.fit()
        assert (trainer._teacher_logits is not None) == fixed
        if fixed:
            assert trainer._teacher_logits.device.type == "cuda"
            assert trainer._teacher_logits.shape == (data.train.num_samples, data.num_classes)
        runs[fixed] = [h.train_loss for h in trainer.history]
    assert runs[True] == pytest.approx(runs[False], rel=1e-3 if amp == "off" else 2e-2)


def test_fp16_resume_restores_the_grad_scaler(tiny_rgb) -> None:
    straight = tiny_trainer("trp", tiny_rgb, amp="fp16", device="cuda")
    straight.fit()
    first = tiny_trainer("trp", tiny_rgb, amp="fp16", device="cuda")
    fit_until(first, 1)
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    saved = first.state_dict()["scaler"]
    assert set(saved) >= {"scale", "_growth_tracker"} and saved["scale"] > 0
    resumed = tiny_trainer("trp", tiny_rgb, amp="fp16", device="cuda")
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    resumed.load_state_dict(state)
    assert resumed.scaler.state_dict() == saved
    resumed.fit()
    assert resumed.scaler.state_dict() == straight.scaler.state_dict()
    assert all(math.isfinite(r.train_loss) for r in resumed.history)
    # the scaler's presence must match the run's train.amp, both ways
    with pytest.raises(RankSearchError, match=r"trained with train.amp='fp16' \(a grad scaler\) but this run has "
                                              r"train.amp='bf16'"):
        tiny_trainer("trp", tiny_rgb, amp="bf16", device="cuda").load_state_dict(state)
    plain = tiny_trainer("trp", tiny_rgb, amp="off", device="cuda").state_dict()
    with pytest.raises(RankSearchError, match=r"trained without train.amp='fp16' \(a grad scaler\) but this run has "
                                              r"train.amp='fp16'"):
        tiny_trainer("trp", tiny_rgb, amp="fp16", device="cuda").load_state_dict(plain)

"""Mixed precision (``train.amp``) and ``train.channels_last`` on CPU: every method trains under
bf16 autocast with float32 weights and float32 decompositions outside autocast; channels_last
trains as contiguous does; bad values give one-line errors; the grad scaler is part of the
exact-resume state (bf16 resumes exactly: tests/methods/test_methods_amp.py). The CUDA paths
(fp16 and its scaler) are in test_gpu.py."""
from __future__ import annotations

import io
import math

import pytest
import torch

from rank_search.decomp import full_precision, low_rank_approx, truncated_svd
from rank_search.engine import TrainConfig
from rank_search.errors import RankSearchError
from rank_search.methods import METHODS
from rank_search.run import RunSpec, prepare
from rank_search.run.results import resolved_settings

import _tiny
from _tiny import record_hooks, record_svds, tiny_trainer


@pytest.fixture(scope="module")
def tiny_data():
    return _tiny.tiny_data()


@pytest.fixture(scope="module")
def tiny_rgb():
    """Three channels: where channels_last and contiguous differ in memory."""
    return _tiny.tiny_data(in_channels=3)


# ---- bf16 trains every method on CPU ----

@pytest.mark.parametrize("method", METHODS.names())
def test_bf16_trains_every_method_with_float32_weights_and_svds(method: str, tiny_data, monkeypatch) -> None:
    svds = record_svds(monkeypatch, "cpu")
    trainer = tiny_trainer(method, tiny_data, amp="bf16")
    assert trainer.scaler is None  # bfloat16 has float32's range: no grad scaler
    hooks = record_hooks(trainer, monkeypatch, "cpu")
    forward_dtypes = set()
    trainer.model.register_forward_hook(lambda mod, inp, out: forward_dtypes.add(out.dtype) if mod.training else None)
    trainer.fit()
    assert trainer.epoch == 2 and all(math.isfinite(r.train_loss) for r in trainer.history)
    assert forward_dtypes == {torch.bfloat16}  # the training forward ran under autocast
    assert {p.dtype for p in trainer.model.parameters()} == {torch.float32}
    assert {p.dtype for p in trainer.compact_model().parameters()} == {torch.float32}
    assert {v.dtype for s in trainer.optimizer.state.values() for v in s.values()
            if isinstance(v, torch.Tensor)} <= {torch.float32}
    assert hooks and not any(on for _, on in hooks), [name for name, on in hooks if on]
    assert all(dtype in (torch.float32, torch.float64) and not on for _, dtype, on in svds), svds
    if trainer.method.uses_plan:
        assert svds, "a compressing method decomposes its planned layers"


def test_bf16_changes_the_forward_pass_only(tiny_data) -> None:
    """bf16 and float32 runs start from the same weights and end near each other, not equal."""
    runs = {}
    for amp in ("off", "bf16"):
        trainer = tiny_trainer("full", tiny_data, amp=amp, epochs=1)
        trainer.fit()
        runs[amp] = trainer
    a, b = (runs[k].model.state_dict() for k in ("off", "bf16"))
    assert any(not torch.equal(a[k], b[k]) for k in a)
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=0.05) for k in a)
    assert runs["bf16"].last_loss == pytest.approx(runs["off"].last_loss, rel=0.02)


def test_regularizer_is_float32_outside_autocast(tiny_data) -> None:
    trainer = tiny_trainer("elrt", tiny_data, amp="bf16")
    plain = trainer.method.regularization_loss(trainer)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = trainer.method.regularization_loss(trainer)  # the hook keeps float32 on its own
    assert plain.dtype == under.dtype == torch.float32 and torch.equal(plain, under)


# ---- the decompositions ignore a caller's autocast ----

def test_decompositions_run_in_float32_under_autocast(monkeypatch) -> None:
    torch.manual_seed(0)
    m = torch.randn(24, 40)
    expected_u, expected_s, expected_vh = truncated_svd(m, 5, randomized=False)
    expected_low = low_rank_approx(m, 5, randomized=False)
    svds = record_svds(monkeypatch, "cpu")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16  # autocast is on here
        u, s, vh = truncated_svd(m, 5, randomized=False)
        low = low_rank_approx(m, 5, randomized=False)
        with full_precision():
            assert not torch.is_autocast_enabled("cpu")
        assert torch.is_autocast_enabled("cpu")  # and back on after it
    assert svds and all(dtype == torch.float32 and not on for _, dtype, on in svds)
    assert low.dtype == u.dtype == torch.float32
    assert torch.equal(u, expected_u) and torch.equal(s, expected_s) and torch.equal(vh, expected_vh)
    assert torch.equal(low, expected_low)


@pytest.mark.parametrize("method", ["trp", "lrpet", "deeptwist"])
def test_projections_under_autocast_equal_float32_ones(method: str, tiny_data) -> None:
    """Each projection method's in-place projection gives bit-identical float32 weights whether
    or not the caller holds an autocast context."""
    weights = []
    for amp in (False, True):
        trainer = tiny_trainer(method, tiny_data)
        trainer.method.on_train_start(trainer)
        project = {"trp": lambda t: t.method.project(t.model),
                   "lrpet": lambda t: t.method._project_in_place(t, final=True),
                   "deeptwist": lambda t: t.method.distort(t)}[method]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            project(trainer)
        weights.append(trainer.model.state_dict())
    for key in weights[0]:
        assert weights[1][key].dtype == weights[0][key].dtype and torch.equal(weights[0][key], weights[1][key]), key


# ---- channels_last ----

@pytest.mark.parametrize("method", ["full", "trp", "elrt"])
def test_channels_last_trains_like_contiguous(method: str, tiny_rgb) -> None:
    runs = {}
    for cl in (False, True):
        trainer = tiny_trainer(method, tiny_rgb, epochs=1, channels_last=cl)
        inputs = []
        trainer.model.register_forward_pre_hook(lambda mod, args: inputs.append(args[0]) if mod.training else None)
        trainer.fit()
        fmt = torch.channels_last if cl else torch.contiguous_format
        convs = [p for p in trainer.model.parameters() if p.dim() == 4]
        assert convs and all(p.is_contiguous(memory_format=fmt) for p in convs)
        assert len(inputs) == 3 and all(x.is_contiguous(memory_format=fmt) for x in inputs)
        assert all(p.is_contiguous(memory_format=fmt) for p in trainer.compact_model().parameters() if p.dim() == 4)
        runs[cl] = trainer
    a, b = runs[False], runs[True]
    assert b.history[0].train_loss == pytest.approx(a.history[0].train_loss, rel=1e-4)
    assert b.history[0].val_loss == pytest.approx(a.history[0].val_loss, rel=1e-4)
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert all(torch.allclose(sa[k], sb[k], atol=1e-5) for k in sa)


# ---- settings ----

@pytest.mark.parametrize("settings,match", [
    ({"amp": "x"}, r"^train.amp must be one of off, bf16, fp16, got 'x'$"),
    ({"amp": "fp32"}, r"^train.amp must be one of off, bf16, fp16, got 'fp32'$"),
    ({"amp": "fp16", "device": "cpu"},
     r"^train.amp='fp16' needs a CUDA device \(use train.amp=bf16 on cpu\), got train.device='cpu'$"),
    ({"channels_last": "yes"}, r"^train.channels_last must be true or false, got 'yes'$"),
])
def test_bad_precision_settings_give_one_line_errors(settings, match) -> None:
    with pytest.raises(RankSearchError, match=match):
        TrainConfig(**settings)


@pytest.mark.parametrize("settings,match", [
    ({"train.amp": "half"}, r"^train.amp must be one of off, bf16, fp16, got 'half'$"),
    ({"train.channels_last": "yes"}, r"^train.channels_last must be true or false, got 'yes'$"),
    ({"train.channels_last": 1}, r"^train.channels_last must be true or false, got 1$"),
])
def test_bad_precision_settings_through_set(settings, match) -> None:
    spec = RunSpec(model="lenet5", dataset="synthetic", method="full", epochs=1, settings=settings)
    with pytest.raises(RankSearchError, match=match):
        prepare(spec)


@pytest.mark.skipif(torch.cuda.is_available(), reason="device auto resolves to CUDA here")
def test_fp16_on_a_machine_without_cuda_is_refused(tiny_data) -> None:
    with pytest.raises(RankSearchError, match=r"^train.amp='fp16' needs a CUDA device \(use train.amp=bf16 on cpu\), "
                                              r"got train.device='auto' \(cpu on this machine\)$"):
        tiny_trainer("full", tiny_data, amp="fp16", device="auto")


def test_the_run_record_holds_the_precision_settings() -> None:
    spec = RunSpec(model="lenet5", dataset="synthetic", method="full", epochs=1,
                   settings={"train.amp": "bf16", "train.channels_last": True})
    trainer = prepare(spec)
    assert (trainer.config.amp, trainer.config.channels_last) == ("bf16", True)
    settings = resolved_settings(trainer)
    assert settings["train.amp"] == "bf16" and settings["train.channels_last"] is True
    assert resolved_settings(prepare(RunSpec(model="lenet5", dataset="synthetic", method="full", epochs=1)))[
        "train.amp"] == "off"


# ---- exact resume ----

def test_a_state_with_a_grad_scaler_needs_fp16(tiny_data) -> None:
    """A state saved under fp16 (it holds the scaler's scale) is not resumed without it; the
    resume of the scaler itself is checked on CUDA (test_gpu.py)."""
    trainer = tiny_trainer("full", tiny_data, epochs=1)
    state = trainer.state_dict()
    assert state["scaler"] is None
    buffer = io.BytesIO()
    torch.save({**state, "scaler": torch.amp.GradScaler("cpu", init_scale=1024.0).state_dict()}, buffer)
    buffer.seek(0)
    with pytest.raises(RankSearchError, match=r"^the saved state was trained with train.amp='fp16' \(a grad scaler\) "
                                              r"but this run has train.amp='off': resume it with the train.amp it "
                                              r"was trained with$"):
        trainer.load_state_dict(torch.load(buffer, weights_only=True))
    old = {k: v for k, v in state.items() if k != "scaler"}  # a state saved before train.amp existed
    tiny_trainer("full", tiny_data, epochs=1).load_state_dict(old)

"""LRPET: projection math against full SVDs, BN mapping, schedule, end-to-end exactness, resume."""
from __future__ import annotations

import types

import pytest
import torch
from torch import nn

from rank_search.errors import RankSearchError
from rank_search.methods import create_method
from rank_search.methods._lrpet_ops import (
    BN_REGULARIZER,
    following_batchnorms,
    project_matrices,
    rectify,
    unrectify,
)
from rank_search.methods.lrpet import LRPET
from rank_search.models import create_model
from rank_search.plan import candidate_layers
from rank_search.run import RunSpec, prepare, train

from _resume import assert_same_run, resumed_run, straight_run


@pytest.fixture(autouse=True)
def _one_thread():
    """Small SVDs are much faster single-threaded, above all on a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _matrix(n: int = 12, m: int = 20, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, m, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _expected(m: torch.Tensor, k: int, *, beta: float, a: torch.Tensor | None = None, et: bool = True):
    """Steps 1-4 written out with a full SVD (independent of the implementation's shortcut)."""
    mt = m if a is None else torch.diag(a) @ m
    u, s, vh = torch.linalg.svd(mt, full_matrices=False)
    alpha = (s.square().sum() - beta**2 * s[k:].square().sum()) / s[:k].square().sum() if et else 1.0
    s2 = torch.cat([s[:k] * alpha**0.5, s[k:] * beta])
    out = u @ torch.diag(s2) @ vh
    return out if a is None else torch.diag(a / (a * a + 1e-5)) @ out


# ---- projection math ----
@pytest.mark.parametrize("beta", [0.0, 0.3])
def test_energy_transfer_preserves_frobenius_norm(beta: float) -> None:
    m, k = _matrix(), 4
    (out,) = project_matrices([m], [k], beta=beta)
    assert torch.allclose(torch.linalg.norm(out), torch.linalg.norm(m), rtol=1e-10)
    assert torch.allclose(out, _expected(m, k, beta=beta), atol=1e-10)
    expected_rank = k if beta == 0 else min(m.shape)
    assert torch.linalg.matrix_rank(out).item() == expected_rank


def test_without_energy_transfer_is_plain_truncation() -> None:
    m, k = _matrix(), 3
    (out,) = project_matrices([m], [k], energy_transfer=False)
    u, s, vh = torch.linalg.svd(m, full_matrices=False)
    assert torch.allclose(out, (u[:, :k] * s[:k]) @ vh[:k], atol=1e-10)
    (soft,) = project_matrices([m], [k], beta=0.5, energy_transfer=False)
    assert torch.allclose(soft, _expected(m, k, beta=0.5, et=False), atol=1e-10)


def test_bn_rectification_round_trip_deviation() -> None:
    m = _matrix(6, 9)
    a = torch.tensor([2.0, 0.5, 1e-2, 1e-3, 0.0, 1.0], dtype=torch.float64)
    back = unrectify(rectify(m, a), a)
    # diag(a / (a^2 + eps)) diag(a) M = M - diag(eps / (a^2 + eps)) M
    deviation = (BN_REGULARIZER / (a * a + BN_REGULARIZER)).unsqueeze(1) * m
    assert torch.allclose(m - back, deviation, atol=1e-12)
    assert torch.allclose(back[[0, 1, 5]], m[[0, 1, 5]], rtol=1e-4)  # a ~ 1: nearly exact
    assert torch.equal(back[4], torch.zeros(9, dtype=torch.float64))  # gamma = 0: a zero row


@pytest.mark.parametrize("beta", [0.0, 0.4])
def test_rectified_projection_matches_full_svd_and_rank(beta: float) -> None:
    m, k = _matrix(10, 18, seed=1), 3
    a = torch.rand(10, generator=torch.Generator().manual_seed(2), dtype=torch.float64) + 0.1
    (out,) = project_matrices([m], [k], scales=[a], beta=beta)
    assert torch.allclose(out, _expected(m, k, beta=beta, a=a), atol=1e-10)
    # The energy is preserved on the rectified matrix, up to the regularised inverse.
    restored = torch.diag(a * a + 1e-5) @ torch.diag(1 / a) @ out
    assert torch.allclose(torch.linalg.norm(restored), torch.linalg.norm(torch.diag(a) @ m), rtol=1e-10)
    if beta == 0:
        assert torch.linalg.matrix_rank(out).item() == k


def test_batched_same_shape_layers_equal_single_calls() -> None:
    mats = [_matrix(8, 12, seed=s).float() for s in range(3)] + [_matrix(5, 7, seed=9).float()]
    ranks = [2, 3, 2, 4]
    together = project_matrices(mats, ranks, beta=0.2)
    for m, k, out in zip(mats, ranks, together):
        (alone,) = project_matrices([m], [k], beta=0.2)
        assert out.dtype == torch.float32
        assert torch.allclose(out, alone, atol=1e-5)


def test_layers_below_threshold_are_skipped() -> None:
    tiny = _matrix(6, 8) * (1e-5 / torch.linalg.matrix_norm(_matrix(6, 8), ord=2))  # s_1 = 1e-5
    normal = _matrix(6, 8, seed=3)
    skipped, projected = project_matrices([tiny, normal], [2, 2])
    assert skipped is None and projected is not None
    (truncated,) = project_matrices([tiny], [2], degenerate="truncate")
    u, s, vh = torch.linalg.svd(tiny, full_matrices=False)
    assert torch.allclose(truncated, (u[:, :2] * s[:2]) @ vh[:2], atol=1e-18)


def test_degenerate_layer_left_untouched_by_the_method() -> None:
    trainer = prepare(_spec("lenet5_wide", epochs=1))
    method = trainer.method
    method.on_train_start(trainer)
    layer = trainer.model.features[4]
    with torch.no_grad():
        layer.weight.mul_(1e-7)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    method._project_in_place(trainer, final=False)
    assert torch.equal(layer.weight, before["features.4.weight"])
    assert not torch.equal(trainer.model.features[7].weight, before["features.7.weight"])
    assert not method.last_projection_exact


# ---- conv -> BatchNorm mapping ----
def test_following_batchnorms_lenet5_wide() -> None:
    model = create_model("lenet5_wide", in_channels=1, num_classes=10, image_size=8)
    names = list(candidate_layers(model))
    found = following_batchnorms(model, torch.zeros(2, 1, 8, 8), names)
    expected = {}
    for name in names:  # Sequential(..., layer, BatchNorm, ...): the next sibling, if a BatchNorm
        parent, _, index = name.rpartition(".")
        siblings = dict(model.get_submodule(parent).named_children())
        nxt = siblings.get(str(int(index) + 1))
        expected[name] = f"{parent}.{int(index) + 1}" if isinstance(nxt, nn.BatchNorm2d) else None
    assert found == expected
    assert sum(v is not None for v in found.values()) == 3  # three conv-BN pairs
    assert all(found[n] is None for n, m in model.named_modules() if isinstance(m, nn.Linear))
    assert model.training


def test_following_batchnorms_resnet20() -> None:
    model = create_model("resnet20", in_channels=3, num_classes=10, image_size=8)
    named = dict(model.named_modules())
    convs = [n for n, m in named.items() if isinstance(m, nn.Conv2d)]
    found = following_batchnorms(model, torch.zeros(2, 3, 8, 8), convs + ["fc"])
    for conv in convs:  # conv1 -> bn1, layerX.Y.convZ -> layerX.Y.bnZ
        expected = conv[: -len("convZ")] + "bn" + conv[-1]
        assert isinstance(named[expected], nn.BatchNorm2d)
        assert found[conv] == expected
    assert found["fc"] is None and len(convs) == 19


def test_following_batchnorms_rejects_inplace_op_between() -> None:
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(inplace=True), nn.BatchNorm2d(4),
                          nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4))
    found = following_batchnorms(model, torch.zeros(2, 1, 5, 5), ["0", "3"])
    assert found == {"0": None, "3": "4"}


# ---- the method on synthetic data ----
def _spec(model: str = "lenet5", *, epochs: int = 2, ranks="ratio:0.5", **knobs) -> RunSpec:
    settings = {"train.device": "cpu", "train.batch_size": 128, **{f"lrpet.{k}": v for k, v in knobs.items()}}
    return RunSpec(model=model, dataset="synthetic", method="lrpet", ranks=ranks, epochs=epochs, settings=settings)


def _record_projections(monkeypatch) -> list[tuple[int, bool]]:
    calls: list[tuple[int, bool]] = []
    original = LRPET._project_in_place

    def spy(self, trainer, *, final):
        calls.append((trainer.global_step, final))
        return original(self, trainer, final=final)

    monkeypatch.setattr(LRPET, "_project_in_place", spy)
    return calls


@pytest.mark.parametrize(
    "epochs, knobs, expected",
    [  # 4 iterations per epoch (512 samples, batch 128)
        (5, {"interval": 2}, [(8, False), (16, False), (20, True)]),
        (3, {"interval": 1}, [(4, False), (8, False), (12, True)]),
        (2, {"interval": 3, "interval_unit": "iter"}, [(3, False), (6, False), (8, True)]),
        (2, {"interval": 4, "interval_unit": "iter"}, [(4, False), (8, True)]),
    ],
)
def test_projection_schedule(monkeypatch, epochs, knobs, expected) -> None:
    calls = _record_projections(monkeypatch)
    train(_spec(epochs=epochs, **knobs))
    assert calls == expected


def test_end_to_end_compact_equals_projected_dense() -> None:
    result = train(_spec("lenet5_wide", epochs=2, beta=0.3))
    trainer, metrics = result.trainer, result.metrics
    assert metrics["macs_compression"] > 1
    plan = trainer.method.plan
    layers = candidate_layers(trainer.model)
    for name, lp in plan.items():
        matrix = layers[name].weight.detach().reshape(layers[name].weight.shape[0], -1)
        assert torch.linalg.matrix_rank(matrix).item() <= lp.rank
    dense, compact = trainer.model.eval(), trainer.compact_model().eval()
    x = torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(compact(x), dense(x), atol=1e-4)


def test_compact_model_mid_training_changes_nothing() -> None:
    trainer = prepare(_spec("lenet5_wide", epochs=3, beta=0.5))
    trainer.method.on_train_start(trainer)
    trainer.train_epoch()  # a beta > 0 projection: compact_model must project a copy
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    rng = torch.get_rng_state()
    state = trainer.method.state_dict()
    compact = trainer.compact_model()
    assert all(torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())
    assert torch.equal(rng, torch.get_rng_state()) and trainer.method.state_dict() == state
    assert compact is not trainer.model


@pytest.mark.parametrize("knobs", [{}, {"interval": 3, "interval_unit": "iter", "beta": 0.5}])
def test_exact_resume_with_batchnorms_and_soft_projections(knobs) -> None:
    spec = _spec("lenet5_wide", **knobs)  # BatchNorms: the rectification's map is restored
    straight = straight_run(spec)
    resumed = resumed_run(spec, after=1)
    resumed.fit()
    assert_same_run(straight, resumed)


# ---- knobs and schemes ----
@pytest.mark.parametrize(
    "knobs, match",
    [
        ({"interval": 0}, r"lrpet\.interval must be an integer >= 1, got 0"),
        ({"interval": 1.5}, r"lrpet\.interval must be an integer"),
        ({"interval_unit": "step"}, r"lrpet\.interval_unit must be one of epoch, iter, got 'step'"),
        ({"beta": 1.5}, r"lrpet\.beta must be a number in \[0, 1\], got 1\.5"),
        ({"beta": -0.1}, r"lrpet\.beta must be a number in \[0, 1\]"),
        ({"energy_transfer": "yes"}, r"lrpet\.energy_transfer must be true or false"),
        ({"bn_rectification": 1}, r"lrpet\.bn_rectification must be true or false"),
        ({"gamma": 1}, r"unknown setting 'lrpet\.gamma'"),
    ],
)
def test_knob_validation(knobs, match) -> None:
    with pytest.raises(RankSearchError, match=match):
        create_method("lrpet", knobs)


def test_defaults() -> None:
    k = create_method("lrpet").knobs
    assert (k.interval, k.interval_unit, k.energy_transfer, k.beta, k.bn_rectification) == (1, "epoch", True, 0.0, True)
    assert k.svd == "exact"


def test_rejects_other_schemes() -> None:
    with pytest.raises(RankSearchError, match="lrpet supports scheme channel; got scheme 'spatial'$"):
        create_method("lrpet", scheme="spatial")
    model = create_model("lenet5_wide", in_channels=1, num_classes=10, image_size=8)
    method = create_method("lrpet", ranks={"layers": {"features.4": {"scheme": "tucker2", "rank": [4, 4]}}})
    with pytest.raises(RankSearchError,
                       match=r"lrpet supports scheme channel; layer 'features\.4' has scheme 'tucker2'$"):
        method.resolve_plan(model)


# ---- the SVD: exact by default, randomized on request ----
def _big_layer_model() -> nn.Module:
    """A 64 -> 64 3x3 conv (64 x 576 matrix) between a stem and a classifier: at k = 6 the
    default truncated_svd would take the randomized path."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.Conv2d(64, 64, 3, padding=1),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))


def _project_big_layer(monkeypatch, knobs) -> tuple[torch.Tensor, torch.Tensor, list]:
    calls = []
    real = torch.svd_lowrank
    monkeypatch.setattr(torch, "svd_lowrank", lambda *a, **kw: calls.append(a[0].shape) or real(*a, **kw))
    model = _big_layer_model()
    before = model[1].weight.detach().clone()
    method = create_method("lrpet", {"bn_rectification": False, "energy_transfer": False, **knobs}, ranks=6)
    method.resolve_plan(model)
    rng = torch.get_rng_state()
    method._project_weights(model, types.SimpleNamespace(model=model), final=True)
    assert torch.equal(torch.get_rng_state(), rng)  # the global RNG is untouched either way
    return before, model[1].weight.detach(), calls


def test_projection_is_the_exact_svd_truncation_by_default(monkeypatch) -> None:
    before, after, calls = _project_big_layer(monkeypatch, {})
    assert create_method("lrpet").knobs.svd == "exact" and calls == []
    u, s, vh = torch.linalg.svd(before.reshape(64, -1), full_matrices=False)
    torch.testing.assert_close(after.reshape(64, -1), (u[:, :6] * s[:6]) @ vh[:6], atol=1e-5, rtol=1e-5)


def test_randomized_svd_is_a_knob(monkeypatch) -> None:
    before, after, calls = _project_big_layer(monkeypatch, {"svd": "randomized"})
    assert calls == [torch.Size([1, 64, 576])]
    u, s, vh = torch.linalg.svd(before.reshape(64, -1), full_matrices=False)
    exact = (u[:, :6] * s[:6]) @ vh[:6]
    assert float((after.reshape(64, -1) - exact).norm() / exact.norm()) > 1e-3  # approximate on a flat spectrum
    assert torch.linalg.matrix_rank(after.reshape(64, -1)).item() == 6
    with pytest.raises(RankSearchError, match=r"lrpet\.svd must be one of exact, randomized, got 'fast'"):
        create_method("lrpet", {"svd": "fast"})

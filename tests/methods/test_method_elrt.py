"""ELRT: the four orthogonality regularizers against independent computations, the method's
contract (factorized from the start, rho = 0 is `factorized` bit for bit, exact resume) and
its knob validation."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from rank_search.errors import RankSearchError
from rank_search.layers import FactorizedLayer
from rank_search.methods import METHODS, create_method
from rank_search.methods._orthogonality import (
    REGULARIZERS,
    double_soft_orthogonality,
    get_regularizer,
    mutual_coherence,
    orthogonality_penalty,
    soft_orthogonality,
    spectral_restricted_isometry,
)
from rank_search.methods.elrt import ELRT
from rank_search.methods.factorized import Factorized
from rank_search.models import create_model
from rank_search.run import RunSpec, prepare, train

from _resume import assert_same_run, resumed_run, straight_run

REG_NAMES = ("so", "dso", "srip", "mc")


# ---- independent reference computations (explicit matrices, no batching tricks) ----
def _ref(name: str, u: torch.Tensor) -> float:
    m, r = u.shape
    a = u.T @ u - torch.eye(r, dtype=u.dtype)
    if name == "so":
        return torch.linalg.matrix_norm(a, "fro").item() ** 2
    if name == "dso":
        b = u @ u.T - torch.eye(m, dtype=u.dtype)
        return torch.linalg.matrix_norm(a, "fro").item() ** 2 + torch.linalg.matrix_norm(b, "fro").item() ** 2
    if name == "srip":
        return torch.linalg.matrix_norm(a, 2).item()
    return a.abs().max().item()


def _orthonormal(m: int, r: int, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(m, r, generator=gen, dtype=torch.float64))
    return q.to(dtype)


def _with_spectrum(m: int, deviations: list[float], seed: int = 0) -> torch.Tensor:
    """An m x r matrix whose ``U^T U - I`` has eigenvalues ``deviations`` (random eigenvectors)."""
    r = len(deviations)
    v = _orthonormal(r, r, seed + 1, torch.float64)
    return _orthonormal(m, r, seed, torch.float64) @ torch.diag(torch.tensor(deviations, dtype=torch.float64) + 1).sqrt() @ v.T


def _reg(name: str, u: torch.Tensor, **kw) -> float:
    return REGULARIZERS.get(name)(u, **kw).item()


# ---- regularizers ----
def test_registry_holds_the_four_regularizers() -> None:
    assert set(REGULARIZERS.names()) == set(REG_NAMES)
    with pytest.raises(RankSearchError, match="unknown orthogonality regularizer 'l1'.*valid choices: dso, mc, so, srip"):
        get_regularizer("l1")


@pytest.mark.parametrize("name", ["so", "srip", "mc"])
@pytest.mark.parametrize("shape", [(12, 5), (6, 6)])
def test_zero_for_orthonormal_columns(name: str, shape: tuple[int, int]) -> None:
    assert _reg(name, _orthonormal(*shape)) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("m, r", [(12, 5), (6, 6), (30, 1)])
def test_dso_of_orthonormal_columns_is_m_minus_r(m: int, r: int) -> None:
    # U U^T is then the projector on r dimensions: ||U U^T - I_m||_F^2 = m - r, zero only if square.
    u = _orthonormal(m, r)
    assert _reg("dso", u) == pytest.approx(m - r, abs=1e-5)
    assert _ref("dso", u) == pytest.approx(m - r, abs=1e-5)


def test_closed_forms_on_a_hand_made_matrix() -> None:
    u = torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.0, 0.0]])  # U^T U - I = diag(3, 0), U U^T - I = diag(3, 0, -1)
    assert _reg("so", u) == pytest.approx(9.0)
    assert _reg("dso", u) == pytest.approx(9.0 + 10.0)
    assert _reg("srip", u) == pytest.approx(3.0)
    assert _reg("mc", u) == pytest.approx(3.0)


@pytest.mark.parametrize("s", [0.5, 1.5])
def test_closed_forms_on_scaled_orthonormal_columns(s: float) -> None:
    m, r = 9, 4
    u = s * _orthonormal(m, r, dtype=torch.float64)  # U^T U - I = (s^2 - 1) I
    d = s * s - 1
    assert _reg("so", u) == pytest.approx(r * d * d)
    assert _reg("dso", u) == pytest.approx(2 * r * d * d + (m - r))
    assert _reg("srip", u) == pytest.approx(abs(d))
    assert _reg("mc", u) == pytest.approx(abs(d))


def test_mutual_coherence_is_the_largest_off_diagonal_inner_product() -> None:
    a = 0.3
    u = torch.tensor([[1.0, a], [0.0, math.sqrt(1 - a * a)]])  # unit columns at inner product a
    assert _reg("mc", u) == pytest.approx(a)
    assert _reg("so", u) == pytest.approx(2 * a * a)
    assert _reg("srip", u) == pytest.approx(a)  # eigenvalues +-a


@pytest.mark.parametrize("name", REG_NAMES)
@pytest.mark.parametrize("shape", [(10, 4), (4, 4), (3, 7)])
def test_matches_the_explicit_definition_on_random_matrices(name: str, shape: tuple[int, int]) -> None:
    u = torch.randn(*shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64) / 2
    kw = {"iters": 200} if name == "srip" else {}
    assert _reg(name, u, **kw) == pytest.approx(_ref(name, u), rel=1e-6)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("deviations", [[3.0, 0.5, 0.2, -0.1, 0.0], [-0.9, 0.15, 0.1, 0.05]])
def test_srip_power_iteration_converges_from_below(deviations: list[float], seed: int) -> None:
    u = _with_spectrum(8, deviations, seed)
    exact = torch.linalg.matrix_norm(u.T @ u - torch.eye(u.shape[1], dtype=u.dtype), 2).item()
    assert exact == pytest.approx(max(abs(d) for d in deviations))
    estimates = [_reg("srip", u, iters=k) for k in (1, 2, 3, 5, 100)]
    assert all(e <= exact + 1e-12 for e in estimates)
    assert estimates == sorted(estimates)  # ||A^(k+1) v|| / ||A^k v|| never decreases
    assert estimates[-1] == pytest.approx(exact, rel=1e-9)
    # Well-separated spectrum (|lambda_2 / lambda_1| <= 1/6): 2 steps are within 2 %.
    assert estimates[1] == pytest.approx(exact, rel=2e-2)


def test_srip_is_deterministic_and_leaves_the_global_rng_alone() -> None:
    u = torch.randn(6, 3, generator=torch.Generator().manual_seed(1))
    state = torch.get_rng_state()
    first = spectral_restricted_isometry(u)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(spectral_restricted_isometry(u), first)


@pytest.mark.parametrize("name", REG_NAMES)
def test_batched_call_equals_one_matrix_at_a_time(name: str) -> None:
    gen = torch.Generator().manual_seed(4)
    factors = [torch.randn(*s, generator=gen) / 3 for s in [(8, 3), (8, 3), (5, 2), (8, 3), (6, 6)]]
    fn = get_regularizer(name, srip_iters=2)
    expected = sum(fn(f.unsqueeze(0)).item() for f in factors)
    assert orthogonality_penalty(factors, fn).item() == pytest.approx(expected, rel=1e-5)


def test_gradients_match_closed_forms() -> None:
    u = _with_spectrum(7, [0.8, -0.3, 0.1]).requires_grad_()  # |lambda_1| well separated for SRIP
    a = u.detach().T @ u.detach() - torch.eye(3, dtype=u.dtype)
    soft_orthogonality(u).backward()
    torch.testing.assert_close(u.grad, 4 * u.detach() @ a)  # d||U^T U - I||^2 = 4 U (U^T U - I)
    u.grad = None
    double_soft_orthogonality(u).backward()
    torch.testing.assert_close(u.grad, 8 * u.detach() @ a)  # the U U^T term adds the same again
    # SRIP: with converged vectors, the gradient of the exact spectral norm.
    v = u.detach().clone().requires_grad_()
    torch.linalg.matrix_norm(v.T @ v - torch.eye(3, dtype=v.dtype), 2).backward()
    u.grad = None
    spectral_restricted_isometry(u, iters=200).backward()
    torch.testing.assert_close(u.grad, v.grad)
    u.grad = None
    mutual_coherence(u).backward()
    assert torch.isfinite(u.grad).all() and u.grad.abs().sum() > 0


@pytest.mark.parametrize("name", REG_NAMES)
def test_gradients_are_finite_at_exact_orthonormality(name: str) -> None:
    u = torch.eye(4)[:, :2].clone().requires_grad_()
    REGULARIZERS.get(name)(u).backward()
    assert torch.isfinite(u.grad).all()


# ---- the method ----
def _spec(**overrides) -> RunSpec:
    settings = {"train.threads": 1, **overrides.pop("settings", {})}
    base = dict(model="lenet5_wide", dataset="synthetic", method="elrt", ranks="ratio:0.5", epochs=2, seed=3)
    return RunSpec(**{**base, **overrides, "settings": settings})


def _deviation(model: nn.Module, name: str) -> float:
    """Sum over the factor matrices of R(U) by the explicit definition (dso less its floor m - r)."""
    total = 0.0
    for layer in model.modules():
        if isinstance(layer, FactorizedLayer):
            for u in layer.factor_matrices():
                u = u.detach().double()
                total += _ref(name, u) - (abs(u.shape[0] - u.shape[1]) if name == "dso" else 0)
    return total


@pytest.fixture(scope="module")
def baseline_runs():
    """Two epochs of `factorized` and of `elrt` with rho = 0 (same seed)."""
    return {m: train(_spec(method=m, settings={"elrt.rho": 0.0} if m == "elrt" else {})) for m in ("factorized", "elrt")}


def test_registered_as_a_subclass_of_factorized() -> None:
    assert METHODS.get("elrt") is ELRT and issubclass(ELRT, Factorized)
    method = create_method("elrt")
    assert method.scheme == "tucker2"
    assert (method.knobs.regularizer, method.knobs.rho, method.knobs.srip_iters) == ("dso", 1e-3, 2)
    assert create_method("elrt", scheme="channel").scheme == "channel"


def test_rho_zero_is_the_factorized_baseline_bit_for_bit(baseline_runs) -> None:
    fz, el = baseline_runs["factorized"], baseline_runs["elrt"]
    assert el.trainer.method.regularization_loss(el.trainer) is None
    a, b = fz.trainer.model.state_dict(), el.trainer.model.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert el.metrics["val_accuracy"] == fz.metrics["val_accuracy"]


@pytest.mark.parametrize("name", REG_NAMES)
def test_trains_factorized_and_stays_closer_to_orthonormal(name: str, baseline_runs) -> None:
    result = train(_spec(settings={"elrt.regularizer": name, "elrt.rho": 0.1}))
    trainer, metrics = result.trainer, result.metrics
    assert metrics["macs_compression"] > 1 and metrics["params_compression"] > 1
    assert metrics["val_accuracy"] > 0.5  # 10 classes: it learns
    # No full-size weight: every planned layer is factorized, its convs/linears are rank-sized,
    # and the optimiser holds exactly the compact model's parameters.
    dense_layers = dict(trainer.dense.named_modules())
    for lname, lp in trainer.method.plan.items():
        layer = trainer.model.get_submodule(lname)
        assert isinstance(layer, FactorizedLayer)
        ranks = set(lp.rank) if isinstance(lp.rank, tuple) else {lp.rank}
        for sub in layer.modules():
            if isinstance(sub, (nn.Conv2d, nn.Linear)):
                assert ranks & set(sub.weight.shape[:2]), (lname, sub)
                assert sub.weight.shape != dense_layers[lname].weight.shape
    trained = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    assert trained == {id(p) for p in trainer.model.parameters()}
    assert sum(p.numel() for p in trainer.model.parameters()) == metrics["compact_params"]
    # Closer to orthonormal than the same run without the regularizer: by the regularizer's own
    # measure, and by the largest entry of |U^T U - I| (what all four shrink).
    unregularized = baseline_runs["elrt"].trainer.model
    assert _deviation(trainer.model, name) < 0.8 * _deviation(unregularized, name)
    assert _deviation(trainer.model, "mc") < 0.8 * _deviation(unregularized, "mc")


def test_regularization_loss_is_rho_times_the_penalty_and_reaches_every_factor() -> None:
    method = create_method("elrt", {"regularizer": "so", "rho": 0.5}, ranks="ratio:0.5")
    dense = create_model("lenet5_wide", in_channels=1, num_classes=10, image_size=8)
    model = method.build_model(dense, None)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.1)  # move the factors off orthonormality
    loss = method.regularization_loss(SimpleNamespace(model=model))
    factors = [u for n in method.plan for u in model.get_submodule(n).factor_matrices()]
    assert len(factors) == 2 * 2 + 2  # two Tucker-2 convs, two channel linears
    assert loss.item() == pytest.approx(0.5 * sum(_ref("so", u.detach()) for u in factors), rel=1e-5)
    loss.backward()
    for name in method.plan:
        layer = model.get_submodule(name)
        for sub in (layer.reduce, getattr(layer, "expand", None)) if hasattr(layer, "core") else (layer.reduce,):
            assert sub.weight.grad is not None and sub.weight.grad.abs().sum() > 0, name
        if hasattr(layer, "core"):
            assert layer.core.weight.grad is None  # the core is not a factor matrix


@pytest.mark.parametrize("name", ["dso", "srip"])
def test_exact_resume_with_each_stateless_regularizer(name: str) -> None:
    spec = _spec(model="lenet5", settings={"elrt.regularizer": name, "elrt.rho": 0.05})  # small: 4 epochs run
    straight = straight_run(spec)
    resumed = resumed_run(spec, after=1)
    resumed.fit()
    assert_same_run(straight, resumed)


# ---- validation ----
@pytest.mark.parametrize(
    "knobs, match",
    [
        ({"regularizer": "ortho"}, r"elrt.regularizer must be one of dso, mc, so, srip, got 'ortho'"),
        ({"rho": -1e-3}, r"elrt.rho must be a finite number >= 0, got -0.001"),
        ({"rho": float("nan")}, r"elrt.rho must be a finite number >= 0, got nan"),
        ({"rho": "big"}, r"elrt.rho must be a number, got 'big'"),
        ({"srip_iters": 0}, r"elrt.srip_iters must be >= 1, got 0"),
        ({"lambda": 1}, r"unknown setting 'elrt.lambda'; valid settings: elrt.regularizer, elrt.rho, elrt.srip_iters"),
    ],
)
def test_knob_validation(knobs: dict, match: str) -> None:
    with pytest.raises(RankSearchError, match=match):
        create_method("elrt", knobs)


@pytest.mark.parametrize("scheme", ["spatial", "tiled"])
def test_rejects_schemes_other_than_tucker2_and_channel(scheme: str) -> None:
    with pytest.raises(RankSearchError, match=f"elrt supports schemes tucker2, channel; got scheme '{scheme}'$"):
        create_method("elrt", scheme=scheme)
    dense = create_model("lenet5_wide", in_channels=1, num_classes=10, image_size=8)
    method = create_method("elrt", ranks={"features.4": {"scheme": scheme, "rank": 4}})
    rule = "elrt supports schemes tucker2, channel"
    with pytest.raises(RankSearchError, match=rf"{rule}; layer 'features\.4' has scheme '{scheme}'$"):
        method.resolve_plan(dense)

"""TRP (METHODS.md section 2): projections, nuclear sub-gradient, schedule, ranks, knobs, end to end."""
from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from rank_search.checkpoint import load_compact, save_compact
from rank_search.errors import RankSearchError
from rank_search.methods import METHODS, create_method
from rank_search.methods import trp as trp_module
from rank_search.methods.trp import TRP, TRPKnobs
from rank_search.run import RunSpec, prepare, train

from _resume import assert_same_run, resumed_run, straight_run

@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors gain nothing from threads, and OpenMP threads on a busy machine are slow."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---- independent helpers (the METHODS.md table, written out again) ----


def scheme_matrix(weight: torch.Tensor, scheme: str) -> torch.Tensor:
    if weight.dim() == 2 or scheme == "channel":
        return weight.reshape(weight.shape[0], -1)
    n, c, kh, kw = weight.shape
    return weight.permute(1, 2, 0, 3).reshape(c * kh, n * kw)


def scheme_unmatrix(matrix: torch.Tensor, shape: torch.Size, scheme: str) -> torch.Tensor:
    if len(shape) == 2 or scheme == "channel":
        return matrix.reshape(shape)
    n, c, kh, kw = shape
    return matrix.reshape(c, kh, n, kw).permute(2, 0, 1, 3)


def tiny_model() -> nn.Module:
    """Stem conv and classifier (skipped by default plans), a 3x3 conv, a 1x1 conv, two Linears;
    the 80x128 Linear at rank 3 takes the randomized SVD path."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 6, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(6, 8, 1),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 80),
        nn.ReLU(),
        nn.Linear(80, 3),
    )


PLANNED = ("2", "4", "6")
UNPLANNED = ("0", "8")


def layer_scheme(model: nn.Module, name: str, scheme: str) -> str:
    m = model.get_submodule(name)
    return "spatial" if scheme == "spatial" and isinstance(m, nn.Conv2d) and m.kernel_size != (1, 1) else "channel"


def fake_trainer(model: nn.Module, step: int = 0) -> SimpleNamespace:
    return SimpleNamespace(model=model, global_step=step, dense=model)


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# ---- projection ----


@pytest.mark.parametrize("scheme", ["channel", "spatial"])
def test_projection_gives_exactly_the_requested_rank(scheme: str) -> None:
    model = tiny_model()
    before = weights(model)
    method = TRP(ranks=3, scheme=scheme)
    trainer = fake_trainer(model)
    method.on_train_start(trainer)
    method.before_forward(trainer)
    assert list(method.plan) == list(PLANNED)
    for name in PLANNED:
        s = layer_scheme(model, name, scheme)
        assert method.plan[name].scheme == s
        w = model.get_submodule(name).weight.detach()
        assert torch.linalg.matrix_rank(scheme_matrix(w, s)).item() == 3, name
        assert torch.linalg.matrix_rank(scheme_matrix(before[f"{name}.weight"], s)).item() > 3
    # The conv layers take the exact path: the projection is the best rank-3 approximation.
    for name in ("2", "4"):
        s = layer_scheme(model, name, scheme)
        u, sv, vh = torch.linalg.svd(scheme_matrix(before[f"{name}.weight"].double(), s), full_matrices=False)
        best = scheme_unmatrix((u[:, :3] * sv[:3]) @ vh[:3], before[f"{name}.weight"].shape, s)
        torch.testing.assert_close(model.get_submodule(name).weight.detach().double(), best, atol=1e-5, rtol=1e-5)
    for name in UNPLANNED:  # stem, classifier and biases untouched
        assert torch.equal(model.get_submodule(name).weight, before[f"{name}.weight"])
    for name in PLANNED:
        assert torch.equal(model.get_submodule(name).bias, before[f"{name}.bias"])


def test_energy_policy_picks_the_smallest_rank_reaching_the_threshold() -> None:
    # Two layers with known spectra: energies 16, 4, 1, 1, .25, .25 of 22.5 -> cumulative
    # 0.711, 0.889, 0.933: rank 3 at e=0.9. Second layer: 9 of 9.04 in the first value -> 1.
    gen = torch.Generator().manual_seed(1)
    model = nn.Sequential(nn.Linear(6, 6), nn.Linear(6, 6), nn.Linear(6, 2))
    for layer, s in ((model[0], [4, 2, 1, 1, 0.5, 0.5]), (model[1], [3, 0.1, 0.1, 0.1, 0.1, 0.0])):
        q1, _ = torch.linalg.qr(torch.randn(6, 6, generator=gen))
        q2, _ = torch.linalg.qr(torch.randn(6, 6, generator=gen))
        layer.weight.data = q1 @ torch.diag(torch.tensor(s)) @ q2.T
    method = TRP(ranks="energy:0.9")
    trainer = fake_trainer(model)
    method.on_train_start(trainer)
    method.before_forward(trainer)
    assert {n: lp.rank for n, lp in method.plan.items()} == {"0": 3, "1": 1}
    assert torch.linalg.matrix_rank(model[0].weight.detach()).item() == 3
    assert torch.linalg.matrix_rank(model[1].weight.detach()).item() == 1


@pytest.mark.parametrize("scheme", ["channel", "spatial"])
def test_energy_ranks_are_repicked_on_the_current_weights(scheme: str) -> None:
    model = tiny_model()
    method = TRP(ranks="energy:0.9", scheme=scheme)
    trainer = fake_trainer(model)
    method.on_train_start(trainer)
    for step in (0, 5):  # the second projection sees the (perturbed) projected weights
        trainer.global_step = step
        with torch.no_grad():
            for name in PLANNED:
                model.get_submodule(name).weight.add_(0.01 * torch.randn_like(model.get_submodule(name).weight))
        before = weights(model)
        method.before_forward(trainer)
        for name in PLANNED:
            s = layer_scheme(model, name, scheme)
            sv = torch.linalg.svdvals(scheme_matrix(before[f"{name}.weight"], s).double())
            energy = torch.cumsum(sv**2, 0) / (sv**2).sum()
            expected = int((energy < 0.9 - 1e-12).sum()) + 1
            assert method.plan[name].rank == expected, (step, name)
            w = model.get_submodule(name).weight.detach()
            assert torch.linalg.matrix_rank(scheme_matrix(w, s)).item() == expected


# ---- nuclear sub-gradient ----


def _step_grads(model: nn.Module, method: TRP, trainer) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Forward/backward at the current weights; the gradients before and after ``after_backward``."""
    x = torch.randn(5, 2, 4, 4, generator=torch.Generator().manual_seed(trainer.global_step))
    model.zero_grad(set_to_none=True)
    model(x).square().mean().backward()
    plain = {n: model.get_submodule(n).weight.grad.clone() for n in PLANNED}
    method.after_backward(trainer)
    return plain, {n: model.get_submodule(n).weight.grad.clone() for n in PLANNED}


@pytest.mark.parametrize("scheme", ["channel", "spatial"])
def test_nuclear_subgradient_is_lambda_u_vt(scheme: str) -> None:
    """``subgradient: iteration`` (the knob of the former default): after every backward pass."""
    lam, rank = 0.01, 2
    model = tiny_model()
    method = TRP({"nuclear_weight": lam, "interval": 3, "subgradient": "iteration"}, ranks=rank, scheme=scheme)
    trainer = fake_trainer(model)
    method.on_train_start(trainer)
    before = weights(model)
    method.before_forward(trainer)
    plain, added = _step_grads(model, method, trainer)
    expected = {}
    for name in PLANNED:
        s = layer_scheme(model, name, scheme)
        w0 = before[f"{name}.weight"]
        u, _, vh = torch.linalg.svd(scheme_matrix(w0.double(), s), full_matrices=False)
        expected[name] = lam * scheme_unmatrix(u[:, :rank] @ vh[:rank], w0.shape, s)
        torch.testing.assert_close((added[name] - plain[name]).double(), expected[name], atol=2e-6, rtol=1e-4)
    # Next iteration (no projection): the factors of the last SVD are reused (fresh_subgradient=false).
    with torch.no_grad():
        model.get_submodule("2").weight.mul_(1.5).add_(0.1)
    trainer.global_step = 1
    method.before_forward(trainer)
    plain, added = _step_grads(model, method, trainer)
    for name in PLANNED:
        torch.testing.assert_close((added[name] - plain[name]).double(), expected[name], atol=2e-6, rtol=1e-4)


@pytest.mark.parametrize("scheme", ["channel", "spatial"])
def test_subgradient_only_on_projection_iterations_by_default(scheme: str) -> None:
    """The authors' code adds lambda U_r V_r^T only when ``batch_idx % period == 0``."""
    lam, rank = 0.01, 2
    model = tiny_model()
    method = TRP({"nuclear_weight": lam, "interval": 3}, ranks=rank, scheme=scheme)
    assert method.knobs.subgradient == "projection"
    trainer = fake_trainer(model)
    method.on_train_start(trainer)
    for step in range(7):
        trainer.global_step = step
        before = weights(model)
        method.before_forward(trainer)
        plain, added = _step_grads(model, method, trainer)
        for name in PLANNED:
            if step % 3:
                assert torch.equal(added[name], plain[name]), (step, name)
                continue
            s = layer_scheme(model, name, scheme)
            w0 = before[f"{name}.weight"]
            u, _, vh = torch.linalg.svd(scheme_matrix(w0.double(), s), full_matrices=False)
            expected = lam * scheme_unmatrix(u[:, :rank] @ vh[:rank], w0.shape, s)
            torch.testing.assert_close((added[name] - plain[name]).double(), expected, atol=2e-6, rtol=1e-4)
        with torch.no_grad():  # an optimizer step would move the weights between projections
            for name in PLANNED:
                model.get_submodule(name).weight.add_(0.05 * torch.randn_like(model.get_submodule(name).weight))


def test_fresh_subgradient_uses_the_current_weights() -> None:
    lam, rank = 0.01, 2
    model = tiny_model()
    method = TRP({"nuclear_weight": lam, "fresh_subgradient": True, "subgradient": "iteration"}, ranks=rank)
    trainer = fake_trainer(model)
    method.on_train_start(trainer)
    method.before_forward(trainer)
    with torch.no_grad():
        model.get_submodule("2").weight.add_(0.2 * torch.randn_like(model.get_submodule("2").weight))
    trainer.global_step = 1
    current = model.get_submodule("2").weight.detach().clone()
    method.before_forward(trainer)
    assert torch.equal(model.get_submodule("2").weight, current)  # no projection at t=1
    plain, added = _step_grads(model, method, trainer)
    u, _, vh = torch.linalg.svd(current.reshape(6, -1).double(), full_matrices=False)
    expected = lam * (u[:, :rank] @ vh[:rank]).reshape(current.shape)
    torch.testing.assert_close((added["2"] - plain["2"]).double(), expected, atol=2e-6, rtol=1e-4)


@pytest.mark.parametrize("scheme", ["channel", "spatial"])
def test_full_rank_subgradient_equals_autograd_of_nuclear_norm(scheme: str) -> None:
    lam = 0.05
    model = tiny_model()
    # full rank costs more than dense: forced, or the plan keeps the layers dense
    full = {n: {"rank": "ratio:1.0", "scheme": layer_scheme(model, n, scheme)} for n in PLANNED}
    method = TRP({"nuclear_weight": lam}, ranks={"force": True, "layers": full}, scheme=scheme)
    trainer = fake_trainer(model)
    method.on_train_start(trainer)
    method.before_forward(trainer)  # full-rank projection: W is (numerically) unchanged
    plain, added = _step_grads(model, method, trainer)
    for name in PLANNED:
        s = layer_scheme(model, name, scheme)
        w = model.get_submodule(name).weight.detach().double().requires_grad_()
        torch.linalg.matrix_norm(scheme_matrix(w, s), "nuc").backward()
        torch.testing.assert_close((added[name] - plain[name]).double(), lam * w.grad, atol=2e-6, rtol=1e-4)


def test_no_subgradient_when_lambda_is_zero() -> None:
    model = tiny_model()
    method = TRP({"nuclear_weight": 0.0}, ranks=2)
    trainer = fake_trainer(model)
    method.on_train_start(trainer)
    method.before_forward(trainer)
    plain, added = _step_grads(model, method, trainer)
    assert all(torch.equal(plain[n], added[n]) for n in PLANNED)


# ---- schedule, knobs ----

SYNTH = dict(model="lenet5", dataset="synthetic", method="trp", epochs=2)  # 16 iterations per epoch


def test_projection_happens_exactly_every_interval(monkeypatch) -> None:
    calls: list[tuple[object, bool]] = []
    step: dict[str, object] = {}
    real_before, real_finalize, real_project = TRP.before_forward, TRP.finalize, trp_module.project_layers

    def before_forward(self, trainer):
        step["t"] = trainer.global_step
        real_before(self, trainer)

    def finalize(self, trainer):
        step["t"] = "final"
        real_finalize(self, trainer)

    def project_layers(*args, **kwargs):
        calls.append((step["t"], kwargs.get("write", True)))
        return real_project(*args, **kwargs)

    monkeypatch.setattr(TRP, "before_forward", before_forward)
    monkeypatch.setattr(TRP, "finalize", finalize)
    monkeypatch.setattr(trp_module, "project_layers", project_layers)
    result = train(RunSpec(**SYNTH, ranks="ratio:0.5", settings={"trp.interval": 3}))
    assert result.trainer.global_step == 32
    # 0, 3, ..., 30: 11 training projections, then the final one, all writing the weights
    assert calls == [(t, True) for t in range(0, 32, 3)] + [("final", True)]

    calls.clear()  # fresh sub-gradients: an SVD (without writing) on every other iteration
    train(RunSpec(**SYNTH, ranks="ratio:0.5", settings={"trp.interval": 3, "trp.fresh_subgradient": True,
                                                        "trp.subgradient": "iteration"}))
    assert [t for t, write in calls if write] == [*range(0, 32, 3), "final"]
    assert [t for t, write in calls if not write] == [t for t in range(32) if t % 3]


def test_defaults_and_registration() -> None:
    assert METHODS.get("trp") is TRP
    method = create_method("trp")
    # the authors' conversion threshold and sub-gradient schedule
    assert method.knobs == TRPKnobs(interval=5, nuclear_weight=3e-4, final_ranks="value:0.05",
                                    fresh_subgradient=False, subgradient="projection")
    assert (method.ranks, method.scheme, method.final_spec) == ("energy:0.9", "channel", "value:0.05")
    # the former defaults, through their knobs: the training spec at conversion, every-iteration sub-gradient
    method = create_method("trp", {"final_ranks": None, "subgradient": "iteration"})
    assert method.knobs == TRPKnobs(interval=5, nuclear_weight=3e-4, final_ranks=None, fresh_subgradient=False,
                                    subgradient="iteration")
    assert (method.ranks, method.scheme) == ("energy:0.9", "channel")
    assert method.final_spec == "energy:0.9" == create_method("trp", {"final_ranks": ""}).final_spec
    method = create_method("trp", {"interval": 7, "final_ranks": "value:0.05"}, scheme="spatial")
    assert (method.knobs.interval, method.knobs.final_ranks, method.final_spec) == (7, "value:0.05", "value:0.05")


@pytest.mark.parametrize(
    ("knobs", "kwargs", "match"),
    [
        ({"interval": 0}, {}, r"trp\.interval must be an integer >= 1, got 0"),
        ({"interval": 2.5}, {}, r"trp\.interval must be an integer, got 2\.5"),
        ({"nuclear_weight": -1e-3}, {}, r"trp\.nuclear_weight must be a finite number >= 0, got -0\.001"),
        ({"nuclear_weight": float("nan")}, {}, r"trp\.nuclear_weight must be a finite number >= 0, got nan"),
        ({"final_ranks": "energy:1.5"}, {}, r"trp\.final_ranks must be a rank spec .* got 'energy:1\.5'"),
        ({"final_ranks": "bogus:1"}, {}, r"trp\.final_ranks must be a rank spec .* got 'bogus:1'"),
        ({"fresh_subgradient": "yes"}, {}, r"trp\.fresh_subgradient must be true or false, got 'yes'"),
        ({"subgradient": "always"}, {}, r"trp\.subgradient must be one of projection, iteration, got 'always'"),
        ({"fresh_subgradient": True}, {},
         r"trp\.fresh_subgradient=true needs trp\.subgradient=iteration .* got trp\.subgradient='projection'"),
        ({"period": 5}, {}, r"unknown setting 'trp\.period'; valid settings: trp\.interval"),
        ({}, {"scheme": "tucker2"}, r"trp supports schemes channel, spatial; got scheme 'tucker2'$"),
    ],
)
def test_knob_validation(knobs, kwargs, match) -> None:
    with pytest.raises(RankSearchError, match=match):
        create_method("trp", knobs, **kwargs)


def test_plan_with_an_unsupported_scheme_is_rejected() -> None:
    method = TRP(ranks={"layers": {"2": {"scheme": "tucker2", "rank": 2}}})
    with pytest.raises(RankSearchError,
                       match=r"trp supports schemes channel, spatial; layer '2' has scheme 'tucker2'$"):
        method.resolve_plan(tiny_model())
    method = TRP({"final_ranks": "ratio:0.5"}, ranks=2, scheme="spatial")
    method.validate(fake_trainer(tiny_model()))  # a good final spec passes


# ---- end to end ----


@pytest.mark.parametrize(
    ("ranks", "scheme", "settings"),
    [("ratio:0.25", "channel", {}), ("ratio:0.5", "spatial", {"trp.final_ranks": "energy:0.8"}), (None, None, {})],
)
def test_end_to_end_compact_model_is_exact_and_smaller(ranks, scheme, settings, tmp_path) -> None:
    result = train(RunSpec(**SYNTH, ranks=ranks, scheme=scheme, settings=settings))
    m, trainer = result.metrics, result.trainer
    assert m["macs_compression"] > 1 and m["params_compression"] > 1
    assert 0 <= m["test_accuracy"] <= 1  # (2 epochs are too few to learn the synthetic set)
    method = trainer.method
    assert method.finalized and set(method.plan) == {"features.3", "classifier.1", "classifier.3"}
    compact = trainer.compact_model().eval()
    dense = trainer.model.eval()
    x = torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(compact(x), dense(x), atol=1e-4, rtol=1e-4)
    # The exported plan rebuilds the compact model (what `rank-search train` writes).
    save_compact(str(tmp_path / "compact.pt"), compact, plan=method.plan, model="lenet5", dataset="synthetic",
                 method="trp", in_channels=1, num_classes=10, image_size=8)
    with torch.no_grad():
        torch.testing.assert_close(load_compact(str(tmp_path / "compact.pt"))(x), compact(x))
    for name, lp in method.plan.items():  # the trained weights are exactly at the exported ranks
        s = layer_scheme(dense, name, scheme or "channel")
        w = dense.get_submodule(name).weight.detach()
        assert torch.linalg.matrix_rank(scheme_matrix(w, s)).item() == lp.rank


@pytest.mark.parametrize("final_ranks", ["default", "value:0.7", None])
def test_final_conversion_uses_the_authors_value_threshold_by_default(final_ranks) -> None:
    settings = {"trp.interval": 3}
    if final_ranks != "default":
        settings["trp.final_ranks"] = final_ranks
    threshold = 0.05 if final_ranks == "default" else 0.7
    trainer = train(RunSpec(**SYNTH, ranks="ratio:0.5", settings=settings)).trainer
    fixed = trainer.method.plan_for(trainer.dense, "ratio:0.5")
    for name, lp in trainer.method.plan.items():
        w = trainer.model.get_submodule(name).weight.detach().double()
        sv = torch.linalg.svdvals(scheme_matrix(w, lp.scheme))
        if final_ranks is None:  # the training spec (the former default): the ratio's fixed ranks
            assert lp.rank == fixed[name].rank
        else:  # a value threshold on the trained weights: the values kept are those >= it, the rest is gone
            assert lp.rank == max(1, int((sv >= threshold).sum())), name
        assert float(torch.cat([sv[lp.rank:], sv.new_zeros(1)]).max()) < 1e-5
    if final_ranks == "value:0.7":
        assert any(lp.rank < fixed[name].rank for name, lp in trainer.method.plan.items())


def test_compact_model_mid_training_leaves_the_training_state_alone() -> None:
    trainer = prepare(RunSpec(**SYNTH, ranks="energy:0.9"))
    trainer.method.on_train_start(trainer)
    trainer.train_epoch()
    model_before = weights(trainer.model)
    method_before = copy.deepcopy(trainer.method.state_dict())
    rng_before = torch.get_rng_state()
    compact = trainer.compact_model()
    assert sum(p.numel() for p in compact.parameters()) < sum(p.numel() for p in trainer.model.parameters())
    assert all(torch.equal(v, model_before[k]) for k, v in trainer.model.state_dict().items())
    after = trainer.method.state_dict()
    assert after["plan"] == method_before["plan"] and after["finalized"] is False
    for n, f in method_before["factors"].items():
        assert torch.equal(after["factors"][n]["u"], f["u"]) and torch.equal(after["factors"][n]["vh"], f["vh"])
    assert torch.equal(torch.get_rng_state(), rng_before)


def test_exact_resume_on_cached_factors_and_energy_ranks() -> None:
    # interval 5 does not divide 16 iterations/epoch: epoch 2 starts on the cached factors; the
    # default energy:0.9 re-picks the ranks at every projection.
    spec = RunSpec(**SYNTH, settings={"trp.interval": 5, "trp.nuclear_weight": 1e-3})
    straight = straight_run(spec)
    resumed = resumed_run(spec, after=1)
    resumed.fit()
    assert resumed.global_step == straight.global_step == 32
    assert_same_run(straight, resumed)

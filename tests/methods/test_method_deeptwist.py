"""DeepTwist: distortion ranks, schedule, exact compact model, end-to-end, resume, knob errors."""
from __future__ import annotations

import types

import pytest
import torch
from torch import nn

from rank_search.errors import RankSearchError
from rank_search.layers import FactorizedLayer
from rank_search.methods import create_method
from rank_search.methods.deeptwist import DeepTwistKnobs
from rank_search.plan import candidate_layers
from rank_search.run import RunSpec, prepare, train

from _resume import assert_same_run, resumed_run, straight_run


class _Net(nn.Module):
    """Two 3x3 convs (tucker2/tiled) and a Linear (channel under tucker2, tiled under tiled)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.c1 = nn.Conv2d(8, 12, 3, padding=1)
        self.c2 = nn.Conv2d(12, 16, 3, padding=1, bias=False)
        self.fc = nn.Linear(16 * 4 * 4, 24)
        self.head = nn.Linear(24, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.c2(torch.relu(self.c1(torch.relu(self.stem(x))))))
        return self.head(torch.relu(self.fc(x.flatten(1))))


def _rank(m: torch.Tensor) -> int:
    """Numerical rank, singular values below 1e-5 x the largest counting as float32 rounding."""
    return int(torch.linalg.matrix_rank(m.double(), rtol=1e-5))


def _unfold_ranks(w: torch.Tensor) -> tuple[int, int]:
    """Ranks of the mode-0 (out) and mode-1 (in) unfoldings, computed here from scratch."""
    return _rank(w.reshape(w.shape[0], -1)), _rank(w.transpose(0, 1).reshape(w.shape[1], -1))


def _tile_ranks(w: torch.Tensor, grid: tuple[int, int]) -> list[int]:
    """Rank of every tile of the lowered matrix (columns grouped by input channel)."""
    n, c = w.shape[:2]
    k = w[0, 0].numel()
    m = w.reshape(n, c * k)
    rows, cols = n // grid[0], (c // grid[1]) * k
    return [_rank(m[i * rows:(i + 1) * rows, j * cols:(j + 1) * cols]) for i in range(grid[0]) for j in range(grid[1])]


def _distort_once(method, model):
    method.resolve_plan(model)
    fake_trainer = types.SimpleNamespace(model=model, global_step=7)
    method.distort(fake_trainer)
    return {name: layer.weight.detach() for name, layer in candidate_layers(model).items()}


def test_tucker2_distortion_gives_exact_plan_ranks() -> None:
    torch.manual_seed(0)
    model = _Net()
    before = {n: l.weight.detach().clone() for n, l in candidate_layers(model).items()}
    assert _unfold_ranks(before["c2"]) == (16, 12)  # dense weights are full rank
    method = create_method("deeptwist", ranks={"c1": [5, 3], "c2": [7, 4], "fc": {"scheme": "channel", "rank": 6}}, scheme="tucker2")
    after = _distort_once(method, model)
    assert _unfold_ranks(after["c1"]) == (5, 3)
    assert _unfold_ranks(after["c2"]) == (7, 4)
    assert _rank(after["fc"]) == 6  # channel scheme for the Linear
    for name in ("stem", "head"):  # outside the plan: untouched
        assert torch.equal(after[name], before[name])
    assert method.distortions == 1 and method.last_distortion_step == 7


def test_tiled_distortion_gives_exact_rank_per_tile() -> None:
    torch.manual_seed(1)
    model = _Net()
    method = create_method("deeptwist", {"tiles": [2, 3]}, ranks="ratio:0.25", scheme="tiled")
    plan = method.resolve_plan(model)
    assert {n: plan[n].tiles for n in plan} == {"c1": (2, 3), "c2": (2, 3), "fc": (2, 3)}
    after = _distort_once(method, model)
    # c1: 12 x 8 channels -> grid lowered to (2, 2); tiles 6 x 36, max rank 6, ceil(0.25 * 6) = 2.
    assert plan["c1"].rank == 2 and _tile_ranks(after["c1"], (2, 2)) == [2] * 4
    # c2: 16 x 12 -> (2, 3) tiles of 8 x 36, max rank 8 -> 2.
    assert plan["c2"].rank == 2 and _tile_ranks(after["c2"], (2, 3)) == [2] * 6
    # fc: 24 x 256 -> (2, 2) tiles of 12 x 128 (256 = 2^8, so 3 column tiles -> 2), max 12 -> 3.
    assert plan["fc"].rank == 3 and _tile_ranks(after["fc"], (2, 2)) == [3] * 4


def _spec(scheme: str, epochs: int = 2, **knobs) -> RunSpec:
    settings = {f"deeptwist.{k}": v for k, v in knobs.items()}
    return RunSpec(model="lenet5", dataset="synthetic", method="deeptwist", ranks="ratio:0.25",
                   scheme=scheme, epochs=epochs, seed=3, settings={"train.device": "cpu", **settings})


@pytest.mark.parametrize("step", [3, 4, 100])
def test_distortion_every_step_and_at_the_end(step: int) -> None:
    trainer = prepare(_spec("tucker2", distortion_step=step))
    method = trainer.method
    seen: list[int] = []
    real = method.distort

    def spy(tr) -> None:
        seen.append(tr.global_step)
        real(tr)

    method.distort = spy
    low_rank_at: list[int] = []  # forwards whose weights have the plan's rank (checked independently)

    def pre_hook(module, args) -> None:
        if module.training and _rank(module.weight.detach()) == method.plan["classifier.1"].rank:
            low_rank_at.append(trainer.global_step)

    trainer.model.get_submodule("classifier.1").register_forward_pre_hook(pre_hook)
    trainer.fit()
    total = trainer.total_steps
    assert total == 32  # 512 synthetic samples / batch 32, 2 epochs
    scheduled = list(range(step, total, step))
    assert seen == scheduled + [total]
    assert len(seen) == (total - 1) // step + 1 == method.distortions
    assert low_rank_at == scheduled  # the loss of iteration t is computed at the distorted weights
    for name, lp in method.plan.items():
        w = trainer.model.get_submodule(name).weight.detach()
        assert (_unfold_ranks(w) if lp.scheme == "tucker2" else (_rank(w),)) == (
            lp.rank if isinstance(lp.rank, tuple) else (lp.rank,))


@pytest.mark.parametrize("scheme", ["tucker2", "tiled"])
def test_end_to_end_compact_equals_distorted_dense(scheme: str) -> None:
    result = train(_spec(scheme, distortion_step=5))
    trainer = result.trainer
    assert result.metrics["macs_compression"] > 1
    assert trainer.method.distortions == (trainer.total_steps - 1) // 5 + 1
    compact = trainer.compact_model()
    schemes = {type(compact.get_submodule(n)).scheme for n in trainer.method.plan}
    assert all(isinstance(compact.get_submodule(n), FactorizedLayer) for n in trainer.method.plan)
    assert scheme in schemes
    x = torch.randn(16, 1, 8, 8)
    dense, compact = trainer.model.eval(), compact.eval()
    with torch.no_grad():
        torch.testing.assert_close(compact(x), dense(x), atol=1e-4, rtol=0)


def test_compact_model_leaves_training_state_alone() -> None:
    trainer = prepare(_spec("tiled", epochs=1, distortion_step=1000))
    trainer.method.on_train_start(trainer)
    weights = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    rng = torch.get_rng_state()
    counters = (trainer.method.distortions, trainer.method.last_distortion_step)
    compact = trainer.compact_model()
    assert compact is not trainer.model
    assert all(torch.equal(v, weights[k]) for k, v in trainer.model.state_dict().items())
    assert torch.equal(torch.get_rng_state(), rng)
    assert (trainer.method.distortions, trainer.method.last_distortion_step) == counters


def test_exact_resume_restores_the_distortion_count() -> None:
    spec = _spec("tucker2", distortion_step=5)  # distortions straddle the epoch boundary (16 steps)
    straight = straight_run(spec)
    resumed = resumed_run(spec, after=1)
    assert resumed.method.distortions == 3  # steps 5, 10, 15
    resumed.fit()
    assert_same_run(straight, resumed)
    assert resumed.method.distortions == straight.method.distortions == 7


@pytest.mark.parametrize(("knobs", "match"), [
    ({"distortion_step": 0}, r"deeptwist\.distortion_step must be an integer >= 1, got 0"),
    ({"distortion_step": -200}, r"deeptwist\.distortion_step must be an integer >= 1, got -200"),
    ({"distortion_step": 2.5}, r"deeptwist\.distortion_step must be an integer, got 2\.5"),
    ({"tiles": [2]}, r"deeptwist\.tiles must be two integers >= 1 .*got \(2,\)"),
    ({"tiles": [2, 0]}, r"deeptwist\.tiles must be two integers >= 1 .*got \(2, 0\)"),
    ({"tiles": [1, 2, 3]}, r"deeptwist\.tiles must be two integers >= 1"),
    ({"interval": 5}, r"unknown setting 'deeptwist\.interval'; valid settings: deeptwist\.distortion_step"),
])
def test_knob_validation(knobs, match) -> None:
    with pytest.raises(RankSearchError, match=match):
        create_method("deeptwist", knobs)


def test_knob_defaults() -> None:
    knobs = create_method("deeptwist").knobs
    assert knobs == DeepTwistKnobs(distortion_step=100, tiles=(2, 2))
    assert knobs.svd == "exact"
    with pytest.raises(RankSearchError, match=r"distortion_step must be an integer >= 1, got True"):
        DeepTwistKnobs(distortion_step=True)


def test_spatial_scheme_rejected() -> None:
    rule = "deeptwist supports schemes tucker2, tiled, channel"
    with pytest.raises(RankSearchError, match=rf"{rule}; got scheme 'spatial'$"):
        create_method("deeptwist", scheme="spatial")
    method = create_method("deeptwist", ranks={"c1": {"scheme": "spatial", "rank": 2}})
    with pytest.raises(RankSearchError, match=rf"{rule}; layer 'c1' has scheme 'spatial'$"):
        method.resolve_plan(_Net())
    with pytest.raises(RankSearchError, match=rf"{rule}; got scheme 'spatial'$"):
        prepare(RunSpec(model="lenet5", dataset="synthetic", method="deeptwist", scheme="spatial", epochs=1))


# ---- the SVD: exact by default, randomized on request ----
class _Wide(nn.Module):
    """A 128 -> 128 3x3 conv (128 x 1152 channel matrix; 64 x 576 tiles under a 2 x 2 grid), where
    the default truncated_svd would take the randomized path at rank 2."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 128, 3, padding=1)
        self.c1 = nn.Conv2d(128, 128, 3, padding=1)
        self.head = nn.Linear(128, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.c1(self.stem(x)).mean((2, 3)))


def _best(matrix: torch.Tensor, r: int) -> torch.Tensor:
    u, s, vh = torch.linalg.svd(matrix, full_matrices=False)
    return (u[..., :r] * s[..., None, :r]) @ vh[..., :r, :]


@pytest.mark.parametrize("scheme", ["channel", "tiled"])
@pytest.mark.parametrize("svd", ["exact", "randomized"])
def test_distortion_svd_is_exact_unless_a_knob_says_otherwise(scheme, svd, monkeypatch) -> None:
    calls = []
    real = torch.svd_lowrank
    monkeypatch.setattr(torch, "svd_lowrank", lambda *a, **kw: calls.append(a[0].shape) or real(*a, **kw))
    torch.manual_seed(0)
    model = _Wide()
    before = model.c1.weight.detach().clone()
    knobs = {} if svd == "exact" else {"svd": svd}
    method = create_method("deeptwist", knobs, ranks={"c1": {"scheme": scheme, "rank": 2}}, scheme=scheme)
    rng = torch.get_rng_state()
    after = _distort_once(method, model)["c1"]
    assert torch.equal(torch.get_rng_state(), rng)
    if scheme == "channel":
        exact = _best(before.reshape(128, -1), 2).reshape(before.shape)
    else:  # the 2 x 2 tile grid: rows split the outputs, columns the inputs (whole kernels)
        tiles = before.reshape(2, 64, 2, 64 * 9).permute(0, 2, 1, 3)
        exact = _best(tiles, 2).permute(0, 2, 1, 3).reshape(before.shape)
    error = float((after - exact).norm() / exact.norm())
    if svd == "exact":
        assert calls == [] and error < 1e-5
    else:
        assert calls and error > 1e-3

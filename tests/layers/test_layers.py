"""Factorized layers: every scheme against the dense layer it replaces (METHODS.md section 1)."""
from __future__ import annotations

import math
import re

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from rank_search.errors import RankSearchError
from rank_search.layers import SCHEMES, FactorizedLayer, get_scheme, tile_grid

# (id, Conv2d kwargs): stride, padding, dilation, bias and non-square kernels.
CONV_CASES = [
    ("k3_p1_bias", dict(in_channels=4, out_channels=6, kernel_size=3, padding=1)),
    ("k3x5_s21_p12_nobias", dict(in_channels=3, out_channels=6, kernel_size=(3, 5), stride=(2, 1),
                                 padding=(1, 2), bias=False)),
    ("k3_s2_d2_bias", dict(in_channels=4, out_channels=8, kernel_size=3, stride=2, padding=2, dilation=2)),
    ("k5x3_d12_nobias", dict(in_channels=6, out_channels=4, kernel_size=(5, 3), padding=(2, 0),
                             dilation=(1, 2), bias=False)),
    ("k2x3_s12_valid", dict(in_channels=5, out_channels=7, kernel_size=(2, 3), stride=(1, 2),
                            padding="valid")),
]
POINTWISE = ("k1_bias", dict(in_channels=8, out_channels=6, kernel_size=1))
LINEAR_CASES = [("linear_bias", dict(in_features=12, out_features=10)),
                ("linear_nobias", dict(in_features=9, out_features=14, bias=False))]
CONV_ONLY = {"spatial", "tucker2"}  # schemes that refuse Linear and 1x1 convs


def _conv(kwargs: dict, *, dtype=torch.float32) -> nn.Conv2d:
    torch.manual_seed(0)
    conv = nn.Conv2d(**kwargs).to(dtype)
    if conv.bias is not None:
        with torch.no_grad():
            conv.bias.normal_()  # a visible bias, so a dropped bias fails the tests
    return conv


def _linear(kwargs: dict, *, dtype=torch.float32) -> nn.Linear:
    torch.manual_seed(0)
    lin = nn.Linear(**kwargs).to(dtype)
    if lin.bias is not None:
        with torch.no_grad():
            lin.bias.normal_()
    return lin


def _layer_cases():
    """(id, scheme, layer factory) for every supported combination."""
    cases = []
    for scheme in SCHEMES.names():
        for cid, kw in CONV_CASES:
            cases.append(pytest.param(scheme, lambda kw=kw, **o: _conv(kw, **o), id=f"{scheme}-{cid}"))
        if scheme not in CONV_ONLY:
            cid, kw = POINTWISE
            cases.append(pytest.param(scheme, lambda kw=kw, **o: _conv(kw, **o), id=f"{scheme}-{cid}"))
            for cid, kw in LINEAR_CASES:
                cases.append(pytest.param(scheme, lambda kw=kw, **o: _linear(kw, **o), id=f"{scheme}-{cid}"))
    return cases


LAYER_CASES = _layer_cases()


def _input_for(layer: nn.Module) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    if isinstance(layer, nn.Linear):
        return torch.randn(3, layer.in_features, generator=gen, dtype=layer.weight.dtype)
    return torch.randn(2, layer.in_channels, 9, 11, generator=gen, dtype=layer.weight.dtype)


def _dense_forward(layer: nn.Module, weight: torch.Tensor, bias, x: torch.Tensor) -> torch.Tensor:
    """``layer``'s own op with another weight: the 'effective weight' reference."""
    if isinstance(layer, nn.Linear):
        return F.linear(x, weight, bias)
    return F.conv2d(x, weight, bias, layer.stride, layer.padding, layer.dilation)


def _small_rank(cls, layer):
    """A rank below the maximum in every mode (2, or (2, 3) for Tucker-2)."""
    max_rank = cls.max_rank(layer)
    if cls.rank_dims == 2:
        return (min(2, max_rank[0]), min(3, max_rank[1]))
    return min(2, max_rank)


def test_registry_names() -> None:
    assert SCHEMES.names() == ["channel", "spatial", "tiled", "tucker2"]
    for name in SCHEMES.names():
        assert get_scheme(name).scheme == name
    with pytest.raises(ValueError, match=r"unknown scheme 'cp'; valid choices: channel, spatial, tiled, tucker2"):
        get_scheme("cp")


# ---- full-rank equivalence ----

@pytest.mark.parametrize("scheme,make", LAYER_CASES)
def test_full_rank_reproduces_dense_output(scheme: str, make) -> None:
    cls = get_scheme(scheme)
    dense = make()
    fact = cls.from_dense(dense, cls.max_rank(dense))
    assert isinstance(fact, FactorizedLayer) and fact.scheme == scheme
    x = _input_for(dense)
    expected = dense(x)
    got = fact(x)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(fact.to_dense_weight(), dense.weight, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("scheme,make", LAYER_CASES)
def test_from_dense_never_mutates_the_dense_layer(scheme: str, make) -> None:
    cls = get_scheme(scheme)
    dense = make()
    before = {k: v.clone() for k, v in dense.state_dict().items()}
    fact = cls.from_dense(dense, _small_rank(cls, dense))
    for key, value in dense.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert all(p.grad is None for p in dense.parameters())
    # The factors own their storage and are fresh trainable leaves.
    dense_ptrs = {p.data_ptr() for p in dense.parameters()}
    for p in fact.parameters():
        assert p.requires_grad and p.is_leaf and p.grad_fn is None
        assert p.data_ptr() not in dense_ptrs
    with torch.no_grad():
        for p in fact.parameters():
            p.add_(1.0)
    for key, value in dense.state_dict().items():
        assert torch.equal(value, before[key]), key


@pytest.mark.parametrize("scheme,make", LAYER_CASES)
def test_to_dense_weight_is_the_effective_weight(scheme: str, make) -> None:
    cls = get_scheme(scheme)
    dense = make()
    fact = cls.from_dense(dense, _small_rank(cls, dense))
    x = _input_for(dense)
    w = fact.to_dense_weight()
    assert w.shape == dense.weight.shape
    torch.testing.assert_close(fact(x), _dense_forward(dense, w, fact.bias, x), atol=1e-5, rtol=1e-4)
    if dense.bias is None:
        assert fact.bias is None
    else:
        assert torch.equal(fact.bias, dense.bias)
    # The weight a factorized layer computes is the scheme's projection of the dense weight.
    proj = cls.project(dense.weight.detach(), fact.rank)
    torch.testing.assert_close(w, proj, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("scheme,make", LAYER_CASES)
def test_balance_false_keeps_input_factors_orthonormal(scheme: str, make) -> None:
    cls = get_scheme(scheme)
    dense = make()
    rank = _small_rank(cls, dense)
    plain = cls.from_dense(dense, rank, balance=False)
    balanced = cls.from_dense(dense, rank, balance=True)
    factors = plain.factor_matrices()
    assert factors
    for f in factors:
        gram = f.t() @ f
        torch.testing.assert_close(gram, torch.eye(gram.shape[0]), atol=1e-5, rtol=0)
    # Both splits compute the same weight.
    torch.testing.assert_close(plain.to_dense_weight(), balanced.to_dense_weight(), atol=1e-5, rtol=1e-4)


def test_balance_true_splits_singular_values_evenly() -> None:
    dense = _conv(CONV_CASES[1][1])
    fact = get_scheme("channel").from_dense(dense, 3, balance=True)
    s = torch.linalg.svdvals(dense.weight.detach().reshape(6, -1))[:3]
    in_norms = fact.reduce.weight.reshape(3, -1).norm(dim=1)
    out_norms = fact.expand.weight.reshape(6, 3).norm(dim=0)
    torch.testing.assert_close(in_norms, s.sqrt(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out_norms, s.sqrt(), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("scheme,make", LAYER_CASES)
def test_rescale_scales_the_weight_only(scheme: str, make) -> None:
    cls = get_scheme(scheme)
    dense = make()
    fact = cls.from_dense(dense, _small_rank(cls, dense))
    before_w = fact.to_dense_weight().detach().clone()
    before_b = None if fact.bias is None else fact.bias.detach().clone()
    fact.rescale_(2.5)
    torch.testing.assert_close(fact.to_dense_weight().detach(), 2.5 * before_w, atol=1e-6, rtol=1e-6)
    if before_b is not None:
        assert torch.equal(fact.bias, before_b)


# ---- parameter counts: the closed forms of METHODS.md section 1 ----

def _closed_form_params(scheme: str, dense: nn.Module, rank) -> int:
    w = dense.weight
    if w.dim() == 2:
        n, c, kh, kw = w.shape[0], w.shape[1], 1, 1
    else:
        n, c, kh, kw = w.shape
    if scheme == "channel":
        return rank * (c * kh * kw + n)
    if scheme == "spatial":
        return rank * (c * kh + n * kw)
    if scheme == "tucker2":
        r_out, r_in = rank
        return c * r_in + r_in * r_out * kh * kw + r_out * n
    if scheme == "tiled":
        rt, ct = tile_grid(dense)
        return rt * ct * rank * (n // rt + (c // ct) * kh * kw)
    raise AssertionError(f"no closed form for scheme {scheme!r}; add one")


@pytest.mark.parametrize("scheme,make", LAYER_CASES)
def test_params_match_closed_form(scheme: str, make) -> None:
    cls = get_scheme(scheme)
    dense = make()
    rank = _small_rank(cls, dense)
    fact = cls.from_dense(dense, rank)
    bias = 0 if dense.bias is None else dense.bias.numel()
    assert sum(p.numel() for p in fact.parameters()) == _closed_form_params(scheme, dense, rank) + bias


# ---- projections: exact rank and optimality ----

def _spatial_matrix_by_index(w: torch.Tensor) -> torch.Tensor:
    n, c, kh, kw = w.shape
    m = torch.empty(c * kh, n * kw, dtype=w.dtype)
    for o in range(n):
        for i in range(c):
            for a in range(kh):
                for b in range(kw):
                    m[i * kh + a, o * kw + b] = w[o, i, a, b]
    return m


def test_spatial_matrix_layout() -> None:
    w = torch.randn(3, 2, 3, 4)
    assert torch.equal(get_scheme("spatial").matrix(w), _spatial_matrix_by_index(w))
    assert torch.equal(get_scheme("spatial").unmatrix(_spatial_matrix_by_index(w), w.shape), w)


def _scheme_matrix(scheme: str, w: torch.Tensor) -> torch.Tensor:
    if scheme == "channel":
        return w.reshape(w.shape[0], -1)
    return _spatial_matrix_by_index(w)


@pytest.mark.parametrize("scheme", ["channel", "spatial"])
@pytest.mark.parametrize("rank", [1, 3, 5])
def test_project_is_the_best_rank_r_approximation(scheme: str, rank: int) -> None:
    torch.manual_seed(2)
    w = torch.randn(7, 4, 3, 5, dtype=torch.float64)
    p = get_scheme(scheme).project(w, rank)
    assert p.shape == w.shape
    m, mp = _scheme_matrix(scheme, w), _scheme_matrix(scheme, p)
    assert int(torch.linalg.matrix_rank(mp)) == rank
    s = torch.linalg.svdvals(m)
    eckart_young = float(s[rank:].pow(2).sum().sqrt())
    assert float((w - p).norm()) == pytest.approx(eckart_young, rel=1e-9, abs=1e-12)
    # Idempotent: the projection of a rank-r weight is itself.
    torch.testing.assert_close(get_scheme(scheme).project(p, rank), p, atol=1e-10, rtol=1e-10)


def test_channel_project_on_linear_weight() -> None:
    torch.manual_seed(3)
    w = torch.randn(10, 6, dtype=torch.float64)
    p = get_scheme("channel").project(w, 2)
    assert int(torch.linalg.matrix_rank(p)) == 2
    s = torch.linalg.svdvals(w)
    assert float((w - p).norm()) == pytest.approx(float(s[2:].pow(2).sum().sqrt()), rel=1e-9)


@pytest.mark.parametrize("tiles,grid", [((2, 2), (2, 2)), ((3, 1), (3, 1)), ((4, 4), (3, 4))])
def test_tiled_project_truncates_each_tile(tiles, grid) -> None:
    torch.manual_seed(4)
    w = torch.randn(6, 4, 3, 3, dtype=torch.float64)
    cls = get_scheme("tiled")
    assert tile_grid(w, tiles) == grid
    rank = 2
    p = cls.project(w, rank, tiles=tiles)
    rt, ct = grid
    rows, cols = 6 // rt, 4 // ct
    tail = 0.0
    for i in range(rt):
        for j in range(ct):
            # tile (i, j): output channels of row tile i, whole kernels of input channels of column tile j
            block = w[i * rows:(i + 1) * rows, j * cols:(j + 1) * cols].reshape(rows, -1)
            pblock = p[i * rows:(i + 1) * rows, j * cols:(j + 1) * cols].reshape(rows, -1)
            assert int(torch.linalg.matrix_rank(pblock)) == min(rank, rows)
            tail += float(torch.linalg.svdvals(block)[rank:].pow(2).sum())
    assert float((w - p).norm()) == pytest.approx(math.sqrt(tail), rel=1e-9, abs=1e-12)


def _hosvd(w: torch.Tensor, r_out: int, r_in: int) -> torch.Tensor:
    n, c = w.shape[:2]
    u_out = torch.linalg.svd(w.reshape(n, -1), full_matrices=False)[0][:, :r_out]
    u_in = torch.linalg.svd(w.transpose(0, 1).reshape(c, -1), full_matrices=False)[0][:, :r_in]
    core = torch.einsum("nchw,na,cb->abhw", w, u_out, u_in)
    return torch.einsum("abhw,na,cb->nchw", core, u_out, u_in)


@pytest.mark.parametrize("rank", [(2, 3), (5, 1), (1, 4)])
def test_tucker2_project_has_the_mode_ranks(rank) -> None:
    torch.manual_seed(5)
    w = torch.randn(6, 4, 3, 3, dtype=torch.float64)
    p = get_scheme("tucker2").project(w, rank)
    r_out, r_in = rank
    assert int(torch.linalg.matrix_rank(p.reshape(6, -1))) == r_out
    assert int(torch.linalg.matrix_rank(p.transpose(0, 1).reshape(4, -1))) == r_in
    err = float((w - p).norm())
    # Never worse than truncated HOSVD (its initialisation); never better than the best
    # matrix approximation of either unfolding.
    assert err <= float((w - _hosvd(w, r_out, r_in)).norm()) + 1e-9
    lower = max(float(torch.linalg.svdvals(w.reshape(6, -1))[r_out:].pow(2).sum().sqrt()),
                float(torch.linalg.svdvals(w.transpose(0, 1).reshape(4, -1))[r_in:].pow(2).sum().sqrt()))
    assert err >= lower - 1e-9


# ---- Tucker-2 ranks per mode ----

def test_tucker2_ranks_per_mode() -> None:
    dense = _conv(CONV_CASES[0][1])  # 4 -> 6, 3x3
    cls = get_scheme("tucker2")
    assert cls.max_rank(dense) == (6, 4)
    fact = cls.from_dense(dense, (5, 2))
    assert fact.rank == (5, 2)
    assert (fact.reduce.in_channels, fact.reduce.out_channels) == (4, 2)
    assert (fact.core.in_channels, fact.core.out_channels) == (2, 5)
    assert (fact.expand.in_channels, fact.expand.out_channels) == (5, 6)
    assert cls.from_dense(dense, 3).rank == (3, 3)
    assert cls.from_dense(dense, [2, 4]).rank == (2, 4)
    with pytest.raises(RankSearchError, match=r"tucker2 rank must be an int or \[r_out, r_in\]"):
        cls.from_dense(dense, (1, 2, 3))


# ---- tiled grid ----

def test_tile_grid_falls_back_to_divisors() -> None:
    assert tile_grid(torch.empty(8, 8, 3, 3)) == (2, 2)  # the default grid
    assert tile_grid(torch.empty(6, 4, 3, 3), (4, 3)) == (3, 2)
    assert tile_grid(torch.empty(7, 5, 3, 3), (2, 2)) == (1, 1)
    assert tile_grid(nn.Linear(9, 10), (4, 3)) == (2, 3)
    for bad in [(0, 2), (2,), (2, 2, 2), 4, (2.0, 2), (True, 2), ("2", 2)]:
        with pytest.raises(RankSearchError, match=r"tiles must be two integers >= 1, got " + re.escape(repr(bad))):
            tile_grid(torch.empty(8, 8, 3, 3), bad)


def test_tiled_from_dense_with_fallback_grid() -> None:
    dense = _conv(dict(in_channels=4, out_channels=6, kernel_size=3, padding=1))
    cls = get_scheme("tiled")
    assert cls.max_rank(dense, tiles=(4, 3)) == min(6 // 3, (4 // 2) * 9)
    fact = cls.from_dense(dense, 2, tiles=(4, 3))
    assert fact.grid == (3, 2)
    x = _input_for(dense)
    torch.testing.assert_close(fact(x), dense(x), atol=1e-4, rtol=1e-4)  # rank 2 = full rank of 2-row tiles
    assert sum(p.numel() for p in fact.parameters()) == 6 * 2 * (2 + 2 * 9) + 6
    with pytest.raises(RankSearchError, match=r"must be in \[1, 2\], got 3"):
        cls.from_dense(dense, 3, tiles=(4, 3))


# ---- errors ----

@pytest.mark.parametrize("scheme", sorted(CONV_ONLY))
@pytest.mark.parametrize("layer,reason", [
    (nn.Linear(8, 4), "applies to convolutions only"),
    (nn.Conv2d(8, 4, 1), "1x1 convolutions are eligible for the channel scheme only"),
])
def test_conv_only_schemes_refuse_linear_and_pointwise(scheme: str, layer, reason: str) -> None:
    cls = get_scheme(scheme)
    assert reason in cls.unsupported_reason(layer)
    with pytest.raises(RankSearchError, match=rf"layer 'fc' cannot use scheme '{scheme}': .*{reason}"):
        cls.from_dense(layer, 1, name="fc")


@pytest.mark.parametrize("scheme", SCHEMES.names())
@pytest.mark.parametrize("layer,reason", [
    (nn.Conv2d(4, 4, 3, groups=2), "grouped convolutions are not eligible"),
    (nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect"), "padding_mode 'reflect' is not supported"),
    (nn.Conv2d(4, 4, 3, padding="same"), "padding='same' is not supported"),
    (nn.BatchNorm2d(4), "BatchNorm2d is not a Conv2d or Linear"),
])
def test_unsupported_layers_have_a_reason(scheme: str, layer, reason: str) -> None:
    cls = get_scheme(scheme)
    assert cls.unsupported_reason(layer) == reason
    with pytest.raises(RankSearchError, match=f"cannot use scheme '{scheme}'"):
        cls.from_dense(layer, 1, name="x")


@pytest.mark.parametrize("scheme", SCHEMES.names())
def test_supported_layers_have_no_reason(scheme: str) -> None:
    cls = get_scheme(scheme)
    assert cls.unsupported_reason(nn.Conv2d(4, 4, 3)) is None
    assert (cls.unsupported_reason(nn.Linear(4, 4)) is None) == (scheme not in CONV_ONLY)


@pytest.mark.parametrize("scheme,make", LAYER_CASES)
def test_rank_out_of_range_raises(scheme: str, make) -> None:
    cls = get_scheme(scheme)
    dense = make()
    max_rank = cls.max_rank(dense)
    if cls.rank_dims == 2:
        n, c = max_rank
        bound = rf"must be in \[1, {n}\] x \[1, {c}\] \(out, in\)"
        bad = [(0, 1), (1, 0), (n + 1, 1), (1, c + 1)]
    else:
        bound = rf"must be in \[1, {max_rank}\]"
        bad = [0, -1, max_rank + 1]
    for rank in bad:
        with pytest.raises(RankSearchError, match=rf"rank for layer 'conv' {bound}, got"):
            cls.from_dense(dense, rank, name="conv")
    if cls.rank_dims == 1:
        with pytest.raises(RankSearchError, match="must be in"):
            cls.from_dense(dense, True, name="conv")


def test_max_ranks_by_scheme() -> None:
    conv = nn.Conv2d(4, 6, (3, 5))
    assert get_scheme("channel").max_rank(conv) == min(6, 4 * 15)
    assert get_scheme("spatial").max_rank(conv) == min(4 * 3, 6 * 5)
    assert get_scheme("tucker2").max_rank(conv) == (6, 4)
    assert get_scheme("tiled").max_rank(conv) == min(3, 2 * 15)
    assert get_scheme("channel").max_rank(nn.Linear(12, 10)) == 10
    assert get_scheme("tiled").max_rank(nn.Linear(12, 10)) == min(5, 6)


@pytest.mark.parametrize("scheme", SCHEMES.names())
@pytest.mark.parametrize("layer_factory", [
    lambda: nn.Conv2d(6, 8, (3, 5), stride=(2, 1), padding=(1, 2), bias=True),
    lambda: nn.Linear(12, 10),
])
def test_build_gives_the_structure_from_dense_gives(scheme: str, layer_factory) -> None:
    """`build` (used to load saved compact weights) matches `from_dense` parameter for parameter."""
    cls = SCHEMES.get(scheme)
    layer = layer_factory()
    if cls.unsupported_reason(layer):
        pytest.skip(f"{scheme} does not apply to {type(layer).__name__}")
    rank = cls.max_rank(layer)
    rank = tuple(max(1, r // 2) for r in rank) if isinstance(rank, tuple) else max(1, rank // 2)
    built = cls.build(layer, rank)
    decomposed = cls.from_dense(layer, rank)
    assert {k: v.shape for k, v in built.state_dict().items()} == \
        {k: v.shape for k, v in decomposed.state_dict().items()}
    built.load_state_dict(decomposed.state_dict())
    x = torch.randn(2, 12) if isinstance(layer, nn.Linear) else torch.randn(2, 6, 9, 11)
    torch.testing.assert_close(built(x), decomposed(x))


# ---- dtype and device: the dense layer's ----

@pytest.mark.parametrize("scheme,make", LAYER_CASES)
def test_float64_layers_stay_float64_and_exact(scheme: str, make) -> None:
    cls = get_scheme(scheme)
    dense = make(dtype=torch.float64)
    fact = cls.from_dense(dense, cls.max_rank(dense))
    assert {p.dtype for p in fact.parameters()} == {torch.float64}
    x = _input_for(dense)
    torch.testing.assert_close(fact(x), dense(x), atol=1e-10, rtol=1e-10)  # decomposed in float64
    small = cls.from_dense(dense, _small_rank(cls, dense))
    assert small(x).dtype == torch.float64


@pytest.mark.parametrize("scheme,make", LAYER_CASES)
def test_build_keeps_the_dense_layers_device_and_dtype(scheme: str, make) -> None:
    cls = get_scheme(scheme)
    dense = make(dtype=torch.float16).to("meta")  # a device and a dtype other than the defaults
    built = cls.build(dense, _small_rank(cls, dense))
    assert {(p.device.type, p.dtype) for p in built.parameters()} == {("meta", torch.float16)}


@pytest.mark.parametrize("scheme", SCHEMES.names())
def test_a_float64_model_compresses_and_runs(scheme: str) -> None:
    from rank_search.cost import count_macs
    from rank_search.models import create_model
    from rank_search.plan import uniform_plan
    from rank_search.surgery import compress

    torch.manual_seed(0)
    model = create_model("lenet5_wide", in_channels=1, num_classes=10, image_size=8).double().eval()
    x = torch.randn(4, 1, 8, 8, dtype=torch.float64)
    compact = compress(model, uniform_plan(model, "ratio:0.5", scheme=scheme)).eval()
    assert {p.dtype for p in compact.parameters()} == {torch.float64}
    with torch.no_grad():
        assert compact(x).dtype == torch.float64
        full = compress(model, uniform_plan(model, "ratio:1.0", scheme=scheme)).eval()
        torch.testing.assert_close(full(x), model(x), atol=1e-9, rtol=1e-9)
    assert count_macs(compact, (1, 8, 8))[0] < count_macs(model, (1, 8, 8))[0]

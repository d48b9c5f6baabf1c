"""Data-aware (output-error) decompositions against the weight decompositions (issue 30).

With the calibration batch equal to the evaluation batch the data-aware factors must give an
output error no larger than the weight SVD's / Tucker-2's at every rank, and equal (zero) at full
rank; the moments collected through a model must be those of each layer's own inputs.
"""
from __future__ import annotations

from typing import Callable

import pytest
import torch
from torch import nn

from rank_search.decomp import (collect_input_moments, collect_paired_moments, input_moment, output_aware_low_rank,
                                output_error)
from rank_search.decomp.calibrated import SEQUENTIAL_RIDGE
from rank_search.errors import RankSearchError
from rank_search.layers import ChannelFactorized, Tucker2Factorized
from rank_search.plan import build_plan
from rank_search.surgery import compress, compress_sequential


def _inputs(shape: tuple[int, ...]) -> torch.Tensor:
    """Correlated inputs (two channels nearly copy two others), where data-awareness matters."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, generator=g)
    x[:, :2] = x[:, 2:4] + 0.01 * x[:, :2]
    return torch.relu(x)


def _error(layer: nn.Module, dense: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        return float(((layer(x) - dense(x)) ** 2).sum())


def _energy(dense: nn.Module, x: torch.Tensor) -> float:
    """The squared norm of the dense outputs: the scale of the tolerances."""
    with torch.no_grad():
        return float((dense(x) ** 2).sum())


CONV = dict(in_channels=6, out_channels=8, kernel_size=3, padding=1, stride=1)


@pytest.mark.parametrize("geometry", [CONV, {**CONV, "stride": 2, "padding": 0}, {**CONV, "dilation": 2}])
def test_channel_scheme_output_error_at_every_rank(geometry: dict) -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(**geometry)
    x = _inputs((12, 6, 9, 9))
    moment = input_moment(conv, x)
    top = ChannelFactorized.max_rank(conv)
    scale = _energy(conv, x)
    for r in range(1, top + 1):
        weight = _error(ChannelFactorized.from_dense(conv, r), conv, x)
        data = _error(ChannelFactorized.from_dense(conv, r, input_moment=moment), conv, x)
        assert data <= weight * (1 + 1e-5) + 1e-6 * scale, (r, data, weight)
    assert data == pytest.approx(0.0, abs=1e-7 * scale) and weight == pytest.approx(0.0, abs=1e-7 * scale)
    assert _error(ChannelFactorized.from_dense(conv, top // 2, input_moment=moment), conv, x) < \
        _error(ChannelFactorized.from_dense(conv, top // 2), conv, x)


def test_channel_scheme_on_a_linear_layer() -> None:
    torch.manual_seed(1)
    lin = nn.Linear(10, 7)
    x = _inputs((40, 10))
    moment = input_moment(lin, x)
    for r in range(1, 8):
        weight = _error(ChannelFactorized.from_dense(lin, r), lin, x)
        data = _error(ChannelFactorized.from_dense(lin, r, input_moment=moment), lin, x)
        assert data <= weight * (1 + 1e-5) + 1e-6, (r, data, weight)
    assert data == pytest.approx(0.0, abs=1e-6)


def test_tucker2_output_error_at_every_rank_pair() -> None:
    torch.manual_seed(2)
    conv = nn.Conv2d(**CONV)
    x = _inputs((12, 6, 9, 9))
    moment = input_moment(conv, x)
    scale = _energy(conv, x)
    for r_out in range(1, 9):
        for r_in in range(1, 7):
            weight = _error(Tucker2Factorized.from_dense(conv, (r_out, r_in)), conv, x)
            data = _error(Tucker2Factorized.from_dense(conv, (r_out, r_in), input_moment=moment), conv, x)
            assert data <= weight * (1 + 1e-5) + 1e-7 * scale, ((r_out, r_in), data, weight)
    assert data == pytest.approx(0.0, abs=1e-7 * scale) and weight == pytest.approx(0.0, abs=1e-7 * scale)


def test_output_error_is_the_per_column_mean_of_the_squared_output_error() -> None:
    torch.manual_seed(3)
    conv = nn.Conv2d(**CONV, bias=False)
    x = _inputs((4, 6, 5, 5))
    low = ChannelFactorized.from_dense(conv, 3)
    direct = _error(low, conv, x) / (4 * 5 * 5)
    via_moment = output_error(conv.weight.reshape(8, -1), low.to_dense_weight().reshape(8, -1), input_moment(conv, x))
    assert via_moment == pytest.approx(direct, rel=1e-4)


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 6, 3, padding=1)
        self.body = nn.Conv2d(6, 8, 3, padding=1)
        self.head = nn.Linear(8 * 6 * 6, 4)

    def forward(self, x):
        h = torch.relu(self.body(torch.relu(self.stem(x))))
        return self.head(h.flatten(1))


def _loader(n: int = 20, batch: int = 8):
    g = torch.Generator().manual_seed(4)
    images = torch.randn(n, 1, 6, 6, generator=g)
    return [(images[i:i + batch], torch.zeros(len(images[i:i + batch]), dtype=torch.long)) for i in range(0, n, batch)]


def test_collected_moments_are_each_layers_own_inputs() -> None:
    torch.manual_seed(5)
    net = _Net().train()
    loader = _loader()
    before = torch.get_rng_state()
    moments = collect_input_moments(net, ["body", "head"], loader, images=12)
    assert torch.equal(torch.get_rng_state(), before) and net.training
    x = torch.cat([b for b, _ in loader])[:12]
    inner = torch.relu(net.stem(x))
    assert torch.allclose(moments["body"], input_moment(net.body, inner))
    flat = torch.relu(net.body(inner)).flatten(1)
    assert torch.allclose(moments["head"], input_moment(net.head, flat))
    with pytest.raises(ValueError, match="calibration images must be >= 1, got 0"):
        collect_input_moments(net, ["body"], loader, images=0)


def test_compress_data_aware_refuses_a_scheme_without_it() -> None:
    net = _Net()
    moments = collect_input_moments(net, ["body"], _loader(), images=8)
    plan = build_plan(net, "ratio:0.5", scheme="spatial")
    with pytest.raises(RankSearchError, match="init_decomposition=data needs schemes channel, tucker2; layer 'body' "
                                              "has scheme 'spatial'"):
        compress(net, plan, input_moments=moments)
    compact = compress(net, build_plan(net, "ratio:0.5", scheme="channel"), input_moments=moments)
    assert isinstance(compact.body, ChannelFactorized)


def test_sequential_fits_reduce_to_the_plain_ones_when_the_inputs_are_unchanged() -> None:
    torch.manual_seed(6)
    conv = nn.Conv2d(**CONV)
    moment = input_moment(conv, _inputs((6, 6, 7, 7)))
    for cls, rank in ((ChannelFactorized, 3), (Tucker2Factorized, (4, 3))):
        plain = cls.from_dense(conv, rank, input_moment=moment).to_dense_weight()
        paired = cls.from_dense(conv, rank, input_moment=moment, input_cross=moment).to_dense_weight()
        torch.testing.assert_close(paired, plain, atol=1e-4, rtol=1e-4)


def test_a_sequential_fit_is_the_best_from_the_compressed_inputs() -> None:
    """||M X - M' X~|| of the sequential fit is at most that of the plain data-aware and weight
    fits, with X the dense inputs and X~ those of a model whose earlier layer is compressed."""
    torch.manual_seed(7)
    net = _Net().eval()
    loader = _loader()
    earlier = compress(net, build_plan(net, {"stem": 2}))
    moment, cross = collect_paired_moments(net, earlier, "body", loader, images=20, device=torch.device("cpu"))
    x = torch.cat([b for b, _ in loader])
    dense_in, compressed_in = torch.relu(net.stem(x)), torch.relu(earlier.stem(x))
    torch.testing.assert_close(moment, input_moment(net.body, compressed_in), atol=1e-5, rtol=1e-4)
    target = net.body(dense_in)
    for r in range(1, 9):
        fits = [ChannelFactorized.from_dense(net.body, r, input_moment=moment, input_cross=cross),
                ChannelFactorized.from_dense(net.body, r, input_moment=input_moment(net.body, dense_in)),
                ChannelFactorized.from_dense(net.body, r)]
        with torch.no_grad():
            errors = [float(((f(compressed_in) - target) ** 2).sum()) for f in fits]
        assert errors[0] <= min(errors[1:]) * (1 + 1e-4) + 1e-6, (r, errors)


def _underdetermined_fit() -> tuple[nn.Linear, torch.Tensor, torch.Tensor, Callable]:
    """A 64-input Linear, the moments of 16 calibration samples (rank 16 < 64) and a draw of
    ``(dense inputs X, compressed inputs X~)`` pairs from the same distribution."""
    torch.manual_seed(11)
    g = torch.Generator().manual_seed(11)
    dense = nn.Linear(64, 32)
    mix = torch.randn(64, 64, generator=g) / 8

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randn(n, 64, generator=g) @ mix
        return x, x + 0.3 * torch.randn(n, 64, generator=g) @ mix

    x, xc = draw(16)
    return dense, xc.t() @ xc / 16, x.t() @ xc / 16, draw


def test_the_sequential_ridge_keeps_an_underdetermined_fit_bounded_and_better_on_fresh_inputs() -> None:
    """Fewer calibration samples than inputs: the exact least-squares map (ridge 0) inflates the
    weights along directions the samples barely span; the ridge keeps them and generalises, and
    ``ChannelFactorized.from_dense`` fits with it."""
    dense, moment, cross, draw = _underdetermined_fit()
    m = dense.weight.detach()
    exact, ridged = (torch.matmul(*output_aware_low_rank(m, moment, 8, cross=cross, ridge=r))
                     for r in (0.0, SEQUENTIAL_RIDGE))
    x, xc = draw(4000)
    errors = [float(((x @ m.t() - xc @ fit.t()) ** 2).sum()) for fit in (exact, ridged)]
    assert errors[1] < 0.5 * errors[0], errors
    assert float(ridged.norm()) < 1.5 * float(m.norm()), (float(ridged.norm()), float(m.norm()))
    layer = ChannelFactorized.from_dense(dense, 8, input_moment=moment, input_cross=cross)
    with torch.no_grad():
        torch.testing.assert_close(layer.to_dense_weight().reshape(m.shape), ridged, atol=1e-5, rtol=1e-4)
        assert max(float(layer.reduce.weight.norm()), float(layer.expand.weight.norm())) < 1.5 * float(m.norm())


def test_the_ridge_vanishes_on_a_full_rank_moment_and_rejects_bad_values() -> None:
    g = torch.Generator().manual_seed(12)
    m, x = torch.randn(6, 10, generator=g), torch.randn(500, 10, generator=g)
    xc = x + 0.1 * torch.randn(500, 10, generator=g)
    moment, cross = xc.t() @ xc / 500, x.t() @ xc / 500
    exact = torch.matmul(*output_aware_low_rank(m, moment, 4, cross=cross))
    torch.testing.assert_close(torch.matmul(*output_aware_low_rank(m, moment, 4, cross=cross, ridge=1e-9)), exact,
                               atol=1e-6, rtol=1e-6)
    with pytest.raises(ValueError, match="ridge must be a finite number >= 0"):
        output_aware_low_rank(m, moment, 4, cross=cross, ridge=-1.0)


def test_compress_sequential_fits_every_layer_in_plan_order() -> None:
    torch.manual_seed(8)
    net = _Net().train()
    plan = build_plan(net, "ratio:0.5", scheme="channel")
    compact = compress_sequential(net, plan, _loader(), images=16, device=torch.device("cpu"))
    assert net.training and compact.training and isinstance(net.body, nn.Conv2d)
    assert all(isinstance(compact.get_submodule(n), ChannelFactorized) for n in plan)
    with pytest.raises(RankSearchError, match="init_decomposition=data needs schemes channel, tucker2"):
        compress_sequential(net, build_plan(net, "ratio:0.5", scheme="spatial"), _loader(), images=8,
                            device=torch.device("cpu"))

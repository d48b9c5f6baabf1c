"""BatchNorm folding: exact where it is folded (float64 to the last bits, float32 within rounding),
and left alone where the graph says it is not exact."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from rank_search.deploy import fold_batchnorm, foldable_pairs
from rank_search.layers import SCHEMES
from rank_search.models import create_model
from rank_search.plan import build_plan
from rank_search.surgery import compress

OWN = str(Path(__file__).resolve().parents[1] / "models")


def randomize_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Running statistics and affine terms far from the identity, so a wrong fold shows."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d) and m.track_running_stats:
                c = m.num_features
                m.running_mean.copy_(torch.rand(c, generator=gen) * 2 - 1)
                m.running_var.copy_(torch.rand(c, generator=gen) * 1.5 + 0.25)
                m.weight.copy_(torch.rand(c, generator=gen) + 0.5)
                m.bias.copy_(torch.rand(c, generator=gen) - 0.5)
    return model.eval()


def _batchnorms(model: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


@pytest.mark.parametrize("scheme", SCHEMES.names())
def test_folding_is_exact_for_every_scheme(scheme: str) -> None:
    torch.manual_seed(0)
    dense = randomize_batchnorm(create_model("lenet5_wide", in_channels=1, num_classes=10, image_size=8))
    compact = compress(dense, build_plan(dense, "ratio:0.4", scheme=scheme)).eval().double()
    x = torch.randn(4, 1, 8, 8, dtype=torch.float64)
    folded, pairs = fold_batchnorm(compact, x)
    # the two searched convs end in their factorized layer's output conv; the stem's BN folds too
    output = {"channel": "expand", "spatial": "horizontal", "tucker2": "expand", "tiled": "expand"}[scheme]
    assert pairs == [("features.0", "features.1"), (f"features.4.{output}", "features.5"),
                     (f"features.7.{output}", "features.8")]
    assert _batchnorms(folded) == 0 and _batchnorms(compact) == 3  # the source is not touched
    with torch.no_grad():
        assert (folded(x) - compact(x)).abs().max() < 1e-12


def test_resnet_folds_every_batchnorm_within_float32_rounding() -> None:
    torch.manual_seed(0)
    dense = randomize_batchnorm(create_model("resnet20", in_channels=3, num_classes=10, image_size=8))
    compact = compress(dense, build_plan(dense, "ratio:0.5", scheme="tucker2")).eval()
    x = torch.randn(4, 3, 8, 8)
    folded, pairs = fold_batchnorm(compact, x)
    assert len(pairs) == 19 and _batchnorms(folded) == 0
    with torch.no_grad():
        assert (folded(x) - compact(x)).abs().max() < 1e-4


def test_a_batchnorm_whose_conv_output_is_used_elsewhere_stays(monkeypatch) -> None:
    from rank_search.models import create_model as build

    monkeypatch.syspath_prepend(OWN)
    torch.manual_seed(0)
    model = randomize_batchnorm(build("own_net:tiny_convnet", in_channels=1, num_classes=10, image_size=8))
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    folded, pairs = fold_batchnorm(model.double(), x)
    assert pairs == [("stem", "stem_bn"), ("body", "body_bn")]  # mix's output also skips mix_bn
    assert isinstance(folded.mix_bn, nn.BatchNorm2d) and isinstance(folded.body_bn, nn.Identity)
    assert folded.body.bias is not None  # the fold gave the bias-free conv one
    with torch.no_grad():
        assert (folded(x) - model(x)).abs().max() < 1e-12


class _Unfoldable(nn.Module):
    """BatchNorm before a conv, a conv called twice, and a BatchNorm without running statistics."""

    def __init__(self) -> None:
        super().__init__()
        self.pre_bn = nn.BatchNorm2d(2)
        self.conv = nn.Conv2d(2, 2, 3, padding=1)
        self.twice_bn = nn.BatchNorm2d(2)
        self.other = nn.Conv2d(2, 2, 1)
        self.batch_stats_bn = nn.BatchNorm2d(2, track_running_stats=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(self.pre_bn(x))
        x = self.twice_bn(self.conv(x))
        return self.batch_stats_bn(self.other(x))


def test_nothing_inexact_is_folded() -> None:
    model = randomize_batchnorm(_Unfoldable())
    assert foldable_pairs(model, torch.randn(2, 2, 5, 5)) == []

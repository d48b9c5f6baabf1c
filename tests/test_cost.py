"""Exact parameter and MAC counts, cross-checked with ``torch.utils.flop_counter`` (FLOPs = 2 MACs)."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from rank_search import schema
from rank_search.cost import Cost, compression_metrics, count_macs, count_params, model_cost, trp_layers
from rank_search.errors import RankSearchError
from rank_search.layers import SCHEMES, get_scheme
from rank_search.models import create_model
from rank_search.plan import build_plan, uniform_plan
from rank_search.surgery import compress

# (model, in_channels, image size, stub the decompositions). VGG-16's 512x4608 SVDs and
# Tucker-2s take minutes on two cores; counts depend only on shapes, so the big models get
# stub factors (the small ones keep the real decompositions).
MODELS = [("lenet5", 1, 8, False), ("lenet5_wide", 1, 8, False), ("resnet20", 3, 8, True),
          ("vgg16_cifar", 3, 8, True)]
COUNTED_OPS = {"aten.convolution", "aten.mm", "aten.addmm"}


def _stub_decompositions(monkeypatch) -> None:
    """Zero factors of the right shapes instead of real SVD / Tucker-2 results."""
    import rank_search.layers.channel as channel
    import rank_search.layers.spatial as spatial
    import rank_search.layers.tiled as tiled
    import rank_search.layers.tucker2 as tucker2

    def fake_svd(matrix, rank, *, randomized=None):
        *batch, m, n = matrix.shape
        return torch.zeros(*batch, m, rank), torch.ones(*batch, rank), torch.zeros(*batch, rank, n)

    def fake_tucker2(weight, ranks, **kw):
        n, c, kh, kw_ = weight.shape
        r_out, r_in = ranks
        return torch.zeros(r_out, r_in, kh, kw_), torch.zeros(n, r_out), torch.zeros(c, r_in)

    for module in (channel, spatial, tiled):
        monkeypatch.setattr(module, "truncated_svd", fake_svd)
    monkeypatch.setattr(tucker2, "tucker2", fake_tucker2)


def _flop_counts(model: nn.Module, input_shape) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    counter = FlopCounterMode(display=False)
    was_training = model.training
    model.eval()
    with counter, torch.no_grad():
        model(torch.zeros((1, *input_shape)))
    model.train(was_training)
    counts = {mod: {str(op): int(v) for op, v in ops.items()} for mod, ops in counter.get_flop_counts().items()}
    return counts["Global"], counts


@pytest.mark.parametrize("scheme", [None, *SCHEMES.names()], ids=lambda s: s or "dense")
@pytest.mark.parametrize("name,channels,size,stub", MODELS, ids=[m[0] for m in MODELS])
def test_counts_match_numel_and_flop_counter(name, channels, size, stub, scheme, monkeypatch) -> None:
    if stub:
        _stub_decompositions(monkeypatch)
    torch.manual_seed(0)
    model = create_model(name, in_channels=channels, num_classes=10, image_size=size)
    if scheme is not None:
        plan = uniform_plan(model, "ratio:0.5", scheme=scheme)
        model = compress(model, plan)
        assert {type(model.get_submodule(n)) for n in plan} <= set(get_scheme(s) for s in SCHEMES.names())
    shape = (channels, size, size)
    assert count_params(model) == sum(p.numel() for p in model.parameters())
    total, per_module = count_macs(model, shape)
    assert total == sum(per_module.values())
    global_flops, by_module = _flop_counts(model, shape)
    assert set(global_flops) <= COUNTED_OPS, f"ops the MAC count does not model: {set(global_flops) - COUNTED_OPS}"
    assert 2 * total == sum(global_flops.values())
    # Layer by layer too: every counted module is a Conv2d or Linear leaf.
    root = type(model).__name__
    for mod_name, macs in per_module.items():
        assert 2 * macs == sum(by_module[f"{root}.{mod_name}"].values()), mod_name
    assert model_cost(model, shape) == Cost(count_params(model), total)


def test_count_macs_keeps_mode_and_counts_linear_positions() -> None:
    class Seq(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(12, 7)
            self.drop = nn.Dropout(0.5)

        def forward(self, x):
            return self.drop(self.fc(x))

    model = Seq().train()
    total, per_module = count_macs(model, (5, 12))  # a Linear applied at 5 positions
    assert per_module == {"fc": 12 * 7 * 5} and total == 420
    assert model.training
    model.eval()
    count_macs(model, (5, 12))
    assert not model.training


def test_a_module_called_twice_counts_twice() -> None:
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding=1, bias=False)

        def forward(self, x):
            return self.conv(self.conv(x))

    model = Twice()
    total, per_module = count_macs(model, (3, 5, 6))
    assert per_module == {"conv": 2 * 3 * 3 * 9 * 5 * 6}
    global_flops, _ = _flop_counts(model, (3, 5, 6))
    assert 2 * total == sum(global_flops.values())


def _single(layer: nn.Module) -> nn.Module:
    return nn.Sequential(layer)


def test_factorized_conv_macs_closed_form() -> None:
    """r*(c*kh*kw)*H*W + r*n*H*W for the channel scheme; the sub-convs' own sizes otherwise."""
    torch.manual_seed(0)
    c, n, kh, kw, r = 3, 8, 3, 5, 2
    conv = nn.Conv2d(c, n, (kh, kw), stride=2, padding=(1, 2))
    shape = (c, 9, 11)
    h_out, w_out = (9 + 2 - 3) // 2 + 1, (11 + 4 - 5) // 2 + 1  # 5 x 6
    assert count_macs(_single(conv), shape)[0] == n * c * kh * kw * h_out * w_out

    channel = get_scheme("channel").from_dense(conv, r)
    total, per = count_macs(_single(channel), shape)
    assert per == {"0.reduce": r * (c * kh * kw) * h_out * w_out, "0.expand": r * n * h_out * w_out}
    assert total == r * (c * kh * kw) * h_out * w_out + r * n * h_out * w_out

    spatial = get_scheme("spatial").from_dense(conv, r)
    _, per = count_macs(_single(spatial), shape)
    # vertical: kh x 1, stride (2, 1), pad (1, 0) -> 5 x 11; horizontal: 1 x kw, stride (1, 2), pad (0, 2) -> 5 x 6
    assert per == {"0.vertical": r * c * kh * h_out * 11, "0.horizontal": r * n * kw * h_out * w_out}

    tucker = get_scheme("tucker2").from_dense(conv, (4, 2))
    _, per = count_macs(_single(tucker), shape)
    assert per == {"0.reduce": c * 2 * 9 * 11, "0.core": 2 * 4 * kh * kw * h_out * w_out,
                   "0.expand": 4 * n * h_out * w_out}


def test_lenet5_factorized_layer_macs(lenet5) -> None:
    """LeNet-5 on 8x8: features.3 is Conv(6 -> 16, 5x5, pad 2) on a 4x4 map."""
    plan = uniform_plan(lenet5, "3")
    compact = compress(lenet5, plan)
    _, dense_macs = count_macs(lenet5, (1, 8, 8))
    _, macs = count_macs(compact, (1, 8, 8))
    assert dense_macs["features.3"] == 16 * 6 * 25 * 16
    assert macs["features.3.reduce"] + macs["features.3.expand"] == 3 * (6 * 25) * 16 + 3 * 16 * 16
    assert macs["features.0"] == dense_macs["features.0"] == 6 * 1 * 25 * 64  # the stem stays dense
    assert macs["classifier.1.reduce"] == 64 * 3 and macs["classifier.1.expand"] == 3 * 120


def test_compression_metrics() -> None:
    m = compression_metrics(Cost(params=1000, macs=9000), Cost(params=250, macs=2000))
    assert m == {
        schema.DENSE_PARAMS: 1000, schema.COMPACT_PARAMS: 250, schema.DENSE_MACS: 9000,
        schema.COMPACT_MACS: 2000, schema.PARAMS_COMPRESSION: 4.0, schema.MACS_COMPRESSION: 4.5,
    }


# ---- the TRP authors' counting (their README's reductions) ----


def test_trp_layers_are_the_stride_1_3x3_convs_after_the_stem() -> None:
    resnet = create_model("resnet20", in_channels=3, num_classes=10, image_size=8)
    names = trp_layers(resnet)
    convs = [n for n, m in resnet.named_modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 19 and len(names) == 16
    assert set(convs) - set(names) == {"conv1", "layer2.0.conv1", "layer3.0.conv1"}  # stem, the stride-2 convs
    assert names == [n for n in convs if n in names]  # module order
    lenet = create_model("lenet5", in_channels=1, num_classes=10, image_size=8)
    assert trp_layers(lenet) == ["features.3"]  # a 5x5 stride-1 conv; the stem and the Linears are out
    with_1x1 = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 1), nn.Conv2d(4, 4, 3, stride=2), nn.Conv2d(4, 4, 3))
    assert trp_layers(with_1x1) == ["3"]


def test_trp_counting_leaves_out_the_classifier_and_counts_factorized_convs() -> None:
    torch.manual_seed(0)
    resnet = create_model("resnet20", in_channels=3, num_classes=10, image_size=8)
    shape = (3, 8, 8)
    total, per = count_macs(resnet, shape)
    trp_total, trp_per = count_macs(resnet, shape, counting="trp")
    assert per["fc"] == 64 * 10 and trp_per == {k: v for k, v in per.items() if k != "fc"}
    assert trp_total == total - 64 * 10
    # the authors' reduction: their decomposed layers at rank r, convolutions only
    rank = 8
    plan = build_plan(resnet, {"layers": {n: rank for n in trp_layers(resnet)}}, scheme="channel")
    compact = compress(resnet, plan)
    saved = 0
    for name in trp_layers(resnet):
        n, c, kh, kw = resnet.get_submodule(name).weight.shape
        positions = per[name] // (n * c * kh * kw)
        saved += (n * c * kh * kw - rank * (c * kh * kw + n)) * positions
    assert model_cost(compact, shape, counting="trp").macs == trp_total - saved
    assert model_cost(compact, shape).macs == total - saved  # the default counting keeps the classifier


def test_trp_counting_skips_linear_layers_in_any_form() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 16, 8), nn.Linear(8, 3))
    plan = build_plan(model, {"layers": {"2": {"scheme": "tiled", "rank": 2, "tiles": [2, 2]}, "3": 2}})
    compact = compress(model, plan)
    shape = (1, 4, 4)
    assert count_macs(compact, shape, counting="trp") == (4 * 9 * 16, {"0": 4 * 9 * 16})
    assert count_macs(compact, shape)[0] > 4 * 9 * 16
    with pytest.raises(RankSearchError, match=r"counting must be one of all, trp, got 'authors'"):
        count_macs(model, shape, counting="authors")

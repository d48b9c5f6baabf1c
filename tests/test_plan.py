"""Rank plans (uniform, YAML, errors, round trip) and the surgery report."""
from __future__ import annotations

import math

import pytest
import torch
import yaml
from torch import nn

from rank_search.cost import count_macs, count_params
from rank_search.errors import RankSearchError
from rank_search.layers import SCHEMES, FactorizedLayer, get_scheme
from rank_search.models import create_model, list_models
from rank_search.plan import (
    LayerPlan,
    RankPlan,
    build_plan,
    candidate_layers,
    eligible_layers,
    load_plan_yaml,
    plan_from_mapping,
    uniform_plan,
)
from rank_search.surgery import compress, format_report, layer_report

LENET_LAYERS = ["features.0", "features.3", "classifier.1", "classifier.3", "classifier.5"]
CONV_ONLY = {"spatial", "tucker2"}


def _model(name: str, channels: int = 3, size: int = 32) -> nn.Module:
    torch.manual_seed(0)
    return create_model(name, in_channels=channels, num_classes=10, image_size=size)


def _write(tmp_path, data, name: str = "plan.yaml") -> str:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return str(path)


# ---- eligible layers ----

@pytest.mark.parametrize("name", list_models())
def test_eligible_layers_skip_stem_and_classifier(name: str) -> None:
    model = _model(name)
    candidates = candidate_layers(model)
    modules = list(model.named_modules())
    first_conv = next(n for n, m in modules if isinstance(m, nn.Conv2d))
    last_linear = [n for n, m in modules if isinstance(m, nn.Linear)][-1]
    assert list(candidates) == [n for n, m in modules if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert list(eligible_layers(model)) == [n for n in candidates if n not in (first_conv, last_linear)]
    # The classifier is the module producing the logits.
    assert candidates[last_linear].out_features == 10


def test_eligible_layers_of_known_models(lenet5) -> None:
    assert list(candidate_layers(lenet5)) == LENET_LAYERS
    assert list(eligible_layers(lenet5)) == ["features.3", "classifier.1", "classifier.3"]
    resnet = _model("resnet20")
    skipped = set(candidate_layers(resnet)) - set(eligible_layers(resnet))
    assert skipped == {"conv1", "fc"}


# ---- uniform plans ----

def _expected_ratio_rank(scheme: str, layer: nn.Module, ratio: float):
    max_rank = get_scheme(scheme).max_rank(layer)
    if isinstance(max_rank, tuple):
        return tuple(max(1, math.ceil(ratio * m)) for m in max_rank)
    return max(1, math.ceil(ratio * max_rank))


@pytest.mark.parametrize("scheme", SCHEMES.names())
@pytest.mark.parametrize("model_name", ["lenet5", "resnet18"])
def test_uniform_ratio_plan(model_name: str, scheme: str) -> None:
    model = _model(model_name, 1 if model_name == "lenet5" else 3, 8 if model_name == "lenet5" else 32)
    plan = uniform_plan(model, "ratio:0.5", scheme=scheme)
    eligible = eligible_layers(model)
    assert list(plan) == list(eligible)
    fallbacks = 0
    for name, lp in plan.items():
        layer = eligible[name]
        pointwise_or_linear = isinstance(layer, nn.Linear) or tuple(layer.kernel_size) == (1, 1)
        expected_scheme = "channel" if (scheme in CONV_ONLY and pointwise_or_linear) else scheme
        fallbacks += expected_scheme != scheme
        assert lp.scheme == expected_scheme, name
        assert lp.rank == _expected_ratio_rank(expected_scheme, layer, 0.5), name
        assert lp.tiles is None
    if scheme in CONV_ONLY:
        assert fallbacks > 0  # both models have Linear or 1x1 layers to fall back on


def _tile_spectrum(w: torch.Tensor) -> torch.Tensor:
    """Mean over the default 2 x 2 grid of each tile's singular values (the tiled scheme's rule)."""
    n, c = w.shape[:2]
    rt = 2 if n % 2 == 0 else 1
    ct = 2 if c % 2 == 0 else 1
    spectra = []
    for i in range(rt):
        for j in range(ct):
            block = w[i * n // rt:(i + 1) * n // rt, j * c // ct:(j + 1) * c // ct].reshape(n // rt, -1)
            spectra.append(torch.linalg.svdvals(block))
    return torch.stack(spectra).mean(0)


def _energy_rank(s: torch.Tensor, e: float) -> int:
    frac = (s.double() ** 2).cumsum(0) / (s.double() ** 2).sum()
    return int((frac < e - 1e-12).sum()) + 1


def _spectra(scheme: str, w: torch.Tensor) -> list[torch.Tensor]:
    if w.dim() == 2:
        w4 = w[:, :, None, None]
    else:
        w4 = w
    n, c, kh, kw = w4.shape
    if scheme == "channel":
        return [torch.linalg.svdvals(w4.reshape(n, -1))]
    if scheme == "spatial":
        return [torch.linalg.svdvals(w4.permute(1, 2, 0, 3).reshape(c * kh, n * kw))]
    if scheme == "tucker2":
        return [torch.linalg.svdvals(w4.reshape(n, -1)), torch.linalg.svdvals(w4.transpose(0, 1).reshape(c, -1))]
    return [_tile_spectrum(w4)]


@pytest.mark.parametrize("scheme", SCHEMES.names())
@pytest.mark.parametrize("model_name", ["lenet5", "lenet5_wide"])
def test_uniform_energy_plan(model_name: str, scheme: str) -> None:
    model = _model(model_name, 1, 8)
    plan = uniform_plan(model, "energy:0.9", scheme=scheme)
    eligible = eligible_layers(model)
    assert list(plan) == list(eligible)
    for name, lp in plan.items():
        layer = eligible[name]
        expected = [_energy_rank(s, 0.9) for s in _spectra(lp.scheme, layer.weight.detach())]
        assert lp.rank == (tuple(expected) if lp.scheme == "tucker2" else expected[0]), name


def test_uniform_plan_multiple_and_tiles(lenet5) -> None:
    plan = uniform_plan(lenet5, "ratio:0.1,multiple=8")
    # max ranks 16, 64, 84 -> ceil(0.1 m) = 2, 7, 9 -> rounded up to 8, 8, 16
    assert [lp.rank for _, lp in plan.items()] == [8, 8, 16]
    tiled = uniform_plan(lenet5, "2", scheme="tiled", tiles=(2, 3))
    assert all(lp.tiles == (2, 3) for _, lp in tiled.items())


def test_uniform_plan_errors(lenet5) -> None:
    with pytest.raises(RankSearchError, match=r"unknown scheme 'cp'; valid choices: channel, spatial, tiled, tucker2"):
        uniform_plan(lenet5, "ratio:0.5", scheme="cp")
    with pytest.raises(RankSearchError, match=r"rank for layer 'features.3' must be in \[1, 16\], got 17"):
        uniform_plan(lenet5, "17")
    with pytest.raises(RankSearchError, match=r"bad rank spec 'ratio:abc'"):
        build_plan(lenet5, "ratio:abc")


# ---- YAML plans ----

def test_flat_yaml_plan(tmp_path, lenet5) -> None:
    path = _write(tmp_path, "features.3: 4\nclassifier.1: ratio:0.5\nclassifier.3: energy:1\n")
    plan = build_plan(lenet5, path)
    assert plan.items() == [
        ("features.3", LayerPlan("channel", 4)),
        ("classifier.1", LayerPlan("channel", 32)),  # max rank min(120, 64) = 64
        ("classifier.3", LayerPlan("channel", int(torch.linalg.matrix_rank(lenet5.classifier[3].weight.detach())))),
    ]
    assert "classifier.5" not in plan and "features.3" in plan and len(plan) == 3
    assert plan["features.3"].rank == 4


def test_layers_yaml_plan_with_per_layer_schemes(tmp_path, lenet5) -> None:
    path = _write(tmp_path, {
        "scheme": "tucker2",
        "layers": {
            "features.0": {"scheme": "spatial", "rank": 2},  # a plan may include the stem
            "features.3": [4, 3],
            "classifier.1": {"scheme": "channel", "rank": "fixed:8"},
            "classifier.5": {"scheme": "tiled", "rank": 2, "tiles": [2, 3]},
        },
    })
    plan = build_plan(lenet5, path)
    assert plan.items() == [
        ("features.0", LayerPlan("spatial", 2)),
        ("features.3", LayerPlan("tucker2", (4, 3))),
        ("classifier.1", LayerPlan("channel", 8)),
        ("classifier.5", LayerPlan("tiled", 2, (2, 3))),
    ]
    compact = compress(lenet5, plan)
    assert compact.features[3].rank == (4, 3) and compact.classifier[5].grid == (2, 3)
    assert compact(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


def test_mapping_uses_the_given_default_scheme(lenet5) -> None:
    plan = plan_from_mapping(lenet5, {"features.3": "ratio:0.5"}, scheme="tucker2")
    assert plan["features.3"] == LayerPlan("tucker2", (8, 3))
    plan = build_plan(lenet5, {"layers": {"features.3": 2}, "scheme": "tiled", "tiles": [4, 2]})
    assert plan["features.3"] == LayerPlan("tiled", 2, (4, 2))


@pytest.mark.parametrize("data,match", [
    ({"features.9": 2}, r"unknown layer 'features.9' in rank plan; valid layers: " + ", ".join(LENET_LAYERS)),
    ({"features.3": 0}, r"rank for layer 'features.3' must be in \[1, 16\], got 0"),
    ({"features.3": 17}, r"rank for layer 'features.3' must be in \[1, 16\], got 17"),
    ({"features.3": "fixed:17"}, r"rank for layer 'features.3' must be in \[1, 16\], got 17"),
    ({"features.3": -2}, r"rank for layer 'features.3' must be in \[1, 16\], got -2"),
    ({"scheme": "tucker2", "layers": {"features.3": [17, 2]}},
     r"rank for layer 'features.3' must be in \[1, 16\] x \[1, 6\] \(out, in\), got \[17, 2\]"),
    ({"scheme": "tucker2", "layers": {"features.3": [1, 2, 3]}},
     r"rank for layer 'features.3' must be an int or \[r_out, r_in\], got \[1, 2, 3\]"),
    ({"features.3": True}, r"rank for layer 'features.3' must be an integer or a policy, got True"),
    ({"features.3": [2, 3]}, r"rank for layer 'features.3' must be an integer or a policy, got \[2, 3\]"),
    ({"features.3": "ratio:abc"}, r"bad rank spec 'ratio:abc': 'abc' is not a number"),
    ({"classifier.1": {"scheme": "spatial", "rank": 2}},
     r"layer 'classifier.1' cannot use scheme 'spatial': the spatial scheme applies to convolutions only"),
    ({"classifier.1": {"scheme": "tucker2", "rank": 2}},
     r"layer 'classifier.1' cannot use scheme 'tucker2': the tucker2 scheme applies to convolutions only"),
    ({"features.3": {"scheme": "cp", "rank": 2}},
     r"unknown scheme 'cp' for layer 'features.3'; valid choices: channel, spatial, tiled, tucker2"),
    ({"scheme": "cp", "layers": {"features.3": 2}}, r"unknown scheme 'cp'; valid choices: channel, spatial"),
    ({"features.3": {"rnk": 2}}, r"plan entry for layer 'features.3' must have 'rank'.*got keys \['rnk'\]"),
    ({"layers": [1, 2]}, r"'layers' in a rank plan must be a mapping of layer name -> rank"),
    ({"scheme": "tiled", "tiles": 3, "layers": {"features.3": 2}},
     r"tiles for layer 'features.3' must be \[row_tiles, col_tiles\], got 3"),
    ({"features.3": {"scheme": "tiled", "rank": 2, "tiles": ["a", 2]}}, r"tiles must be two integers >= 1, got \('a', 2\)"),
    ({"features.3": {"scheme": "tiled", "rank": 2, "tiles": [1, 2, 3]}}, r"tiles must be two integers >= 1"),
    ({"features.3": {"scheme": "tiled", "rank": 9, "tiles": [2, 2]}}, r"rank for layer 'features.3' must be in \[1, 8\], got 9"),
])
def test_plan_errors(tmp_path, lenet5, data, match: str) -> None:
    with pytest.raises(RankSearchError, match=match):
        build_plan(lenet5, data)
    with pytest.raises(RankSearchError, match=match):  # the same from a file
        build_plan(lenet5, _write(tmp_path, data))


def test_plan_file_errors(tmp_path, lenet5) -> None:
    missing = str(tmp_path / "nope.yaml")
    with pytest.raises(RankSearchError, match=r"rank plan file '.*nope.yaml' does not exist"):
        build_plan(lenet5, missing)
    bad = _write(tmp_path, "features.3: [1, 2\nclassifier.1: 3\n", "bad.yaml")
    with pytest.raises(RankSearchError, match=r"rank plan '.*bad.yaml' is not valid YAML at line \d+"):
        build_plan(lenet5, bad)
    with pytest.raises(RankSearchError, match=r"a rank plan must be a mapping of layer name -> rank, got list"):
        build_plan(lenet5, _write(tmp_path, "- 1\n- 2\n", "list.yaml"))
    with pytest.raises(RankSearchError, match=r"a rank plan must be a mapping of layer name -> rank, got NoneType"):
        build_plan(lenet5, _write(tmp_path, "", "empty.yml"))
    assert load_plan_yaml(_write(tmp_path, "a: 1\n", "ok.yaml")) == {"a": 1}


# ---- round trip ----

def test_rank_plan_round_trip(lenet5) -> None:
    plan = RankPlan((
        ("features.3", LayerPlan("tucker2", (4, 3))),
        ("classifier.1", LayerPlan("tiled", 2, (2, 3))),
        ("classifier.3", LayerPlan("channel", 5)),
    ))
    data = plan.to_dict()
    assert data == {"layers": {
        "features.3": {"scheme": "tucker2", "rank": [4, 3]},
        "classifier.1": {"scheme": "tiled", "rank": 2, "tiles": [2, 3]},
        "classifier.3": {"scheme": "channel", "rank": 5},
    }}
    assert RankPlan.from_dict(data) == plan
    text = plan.to_yaml(model="lenet5", method="posthoc")
    loaded = yaml.safe_load(text)
    assert loaded["model"] == "lenet5" and loaded["method"] == "posthoc"
    assert RankPlan.from_dict(loaded) == plan
    # A resolved plan (or its YAML) builds to itself against the model.
    assert build_plan(lenet5, plan) == plan
    assert build_plan(lenet5, loaded) == plan


# ---- surgery ----

def test_compress_replaces_only_planned_layers(lenet5) -> None:
    plan = build_plan(lenet5, {"features.3": 3, "classifier.3": {"scheme": "tiled", "rank": 2}})
    before = {k: v.clone() for k, v in lenet5.state_dict().items()}
    lenet5.eval()
    compact = compress(lenet5, plan)
    assert not any(m.training for m in compact.modules())  # factorized layers keep the model's mode
    assert all(m.training for m in compress(lenet5.train(), plan).modules())
    lenet5.eval()
    for k, v in lenet5.state_dict().items():
        assert torch.equal(v, before[k])
    for name, layer in candidate_layers(lenet5).items():
        sub = compact.get_submodule(name)
        if name in plan:
            assert isinstance(sub, get_scheme(plan[name].scheme)) and sub.rank == plan[name].rank
        else:
            assert type(sub) is type(layer) and not isinstance(sub, FactorizedLayer)
            assert torch.equal(sub.weight, layer.weight) and sub.weight is not layer.weight


def test_layer_report(lenet5) -> None:
    plan = build_plan(lenet5, {"features.3": {"scheme": "tucker2", "rank": [4, 3]}, "classifier.1": 5})
    compact = compress(lenet5, plan)
    shape = (1, 8, 8)
    rows = layer_report(lenet5, compact, plan, shape)
    assert [r.name for r in rows] == LENET_LAYERS
    by_name = {r.name: r for r in rows}
    f3 = by_name["features.3"]
    assert (f3.kind, f3.shape, f3.scheme, f3.rank, f3.max_rank) == ("Conv2d", (16, 6, 5, 5), "tucker2", "4x3", "16x6")
    assert f3.dense_params == 16 * 6 * 25 + 16
    assert f3.compact_params == 6 * 3 + 3 * 4 * 25 + 4 * 16 + 16
    assert f3.compact_macs == (6 * 3 + 3 * 4 * 25 + 4 * 16) * 16
    c1 = by_name["classifier.1"]
    assert (c1.scheme, c1.rank, c1.max_rank, c1.compact_params) == ("channel", "5", "64", 5 * (64 + 120) + 120)
    for name in ("features.0", "classifier.3", "classifier.5"):
        r = by_name[name]
        assert (r.scheme, r.rank, r.max_rank) == ("dense", "-", "-")
        assert r.compact_params == r.dense_params and r.compact_macs == r.dense_macs
    # LeNet-5 has no parameters outside its candidate layers: the rows add up to the model totals.
    assert sum(r.dense_params for r in rows) == count_params(lenet5)
    assert sum(r.compact_params for r in rows) == count_params(compact)
    assert sum(r.dense_macs for r in rows) == count_macs(lenet5, shape)[0]
    assert sum(r.compact_macs for r in rows) == count_macs(compact, shape)[0]
    assert rows[0].to_dict()["name"] == "features.0"

    text = format_report(rows)
    lines = text.splitlines()
    assert len(lines) == 1 + len(rows)
    assert lines[0].split() == ["layer", "shape", "scheme", "rank", "max", "params", "->", "MACs", "->"]
    f3_line = next(line for line in lines if line.startswith("features.3 "))
    assert f3_line.split() == ["features.3", "16x6x5x5", "tucker2", "4x3", "16x6", "2,416",
                               f"{f3.compact_params:,}", f"{f3.dense_macs:,}", f"{f3.compact_macs:,}"]
    col = lines[0].index("shape")  # fixed-width columns: every row's shape starts under the header
    for line, row in zip(lines[1:], rows):
        assert line[col:].startswith("x".join(map(str, row.shape))) and line[col - 2:col] == "  "

"""No layer slower than dense: the break-even rule (``cost.stays_dense``), plans that keep such
layers dense unless forced, the budget allocation on the same rule, and `rank-search layers
--ranks` showing it."""
from __future__ import annotations

import json

import pytest
import torch
import yaml
from torch import nn

from rank_search.allocation import LayerMacs, uniform_allocation
from rank_search.cli import main
from rank_search.cost import BREAK_EVEN_REASON, break_even_macs, count_macs, stays_dense
from rank_search.errors import RankSearchError
from rank_search.layers import SCHEMES, get_scheme
from rank_search.models import create_model
from rank_search.plan import LayerPlan, RankPlan, build_plan, keep_dense_at_break_even, plan_from_mapping, uniform_plan
from rank_search.surgery import compress

GEOMETRIES = [nn.Conv2d(6, 16, 5), nn.Conv2d(8, 12, 3, stride=2, padding=1),
              nn.Conv2d(8, 12, (3, 5), stride=(1, 2), padding=(1, 0), dilation=(2, 1)), nn.Linear(20, 30)]


def _lenet5() -> nn.Module:
    torch.manual_seed(0)
    return create_model("lenet5", in_channels=1, num_classes=10, image_size=8)


def _ranks(cls, layer) -> list:
    top = cls.max_rank(layer)
    if isinstance(top, tuple):
        return [(1, 1), top, (max(1, top[0] // 2), top[1])]
    return sorted({1, max(1, top // 2), top})


@pytest.mark.parametrize("scheme", SCHEMES.names())
@pytest.mark.parametrize("layer", GEOMETRIES, ids=lambda m: repr(m).split("(")[0] + str(getattr(m, "kernel_size", "")))
def test_the_probe_counts_what_a_forward_pass_counts(scheme, layer) -> None:
    """The rule's shape-only MACs equal ``count_macs`` of the built layer on the probe input."""
    from rank_search.cost import _geometry_key, _probe_hw

    cls = get_scheme(scheme)
    if cls.unsupported_reason(layer):
        pytest.skip(f"{scheme} does not take {layer}")
    hw = _probe_hw(_geometry_key(layer))
    shape = (layer.in_features,) if isinstance(layer, nn.Linear) else (layer.in_channels, *hw)
    for rank in _ranks(cls, layer):
        dense, factorized = break_even_macs(layer, scheme, rank)
        assert dense == count_macs(layer, shape)[0]
        assert factorized == count_macs(cls.build(layer, rank), shape)[0]


def test_the_rule_is_at_or_above_the_dense_macs() -> None:
    layer = nn.Linear(64, 120)  # channel factors cost r * (64 + 120) MACs against 64 * 120
    below, at_or_above = 41, 42  # 64 * 120 / 184 = 41.7
    assert not stays_dense(layer, "channel", below)
    assert stays_dense(layer, "channel", at_or_above)
    square = nn.Conv2d(16, 16, 3, padding=1)  # spatial: r * 3 * (16 + 16) against 16 * 16 * 9 = break-even at 24
    assert break_even_macs(square, "spatial", 24)[0] == break_even_macs(square, "spatial", 24)[1]
    assert stays_dense(square, "spatial", 24) and not stays_dense(square, "spatial", 23)
    # where the caller has the MACs at the real input size, those decide as well
    assert stays_dense(layer, "channel", below, measured=(100, 100))
    assert not stays_dense(layer, "channel", below, measured=(100, 99))


def test_a_uniform_plan_keeps_layers_above_break_even_dense() -> None:
    model = _lenet5()  # eligible: features.3 (6->16, 5x5), classifier.1 (64->120), classifier.3 (120->84)
    plan = build_plan(model, "ratio:0.8")
    assert list(plan) == ["features.3"]
    assert plan.kept_dense == ("classifier.1", "classifier.3")
    assert plan == keep_dense_at_break_even(model, uniform_plan(model, "ratio:0.8"))  # the one step that drops them
    assert list(uniform_plan(model, "ratio:0.8")) == ["features.3", "classifier.1", "classifier.3"]  # ranks only
    low = build_plan(model, "ratio:0.3")
    assert list(low) == ["features.3", "classifier.1", "classifier.3"] and low.kept_dense == ()
    # the compact model of the plan really is cheaper than dense in every planned layer
    compact = compress(model, plan, decompose=False)
    _, dense_macs = count_macs(model, (1, 8, 8))
    _, compact_macs = count_macs(compact, (1, 8, 8))
    assert sum(v for k, v in compact_macs.items() if k.startswith("features.3.")) < dense_macs["features.3"]
    assert isinstance(compact.get_submodule("classifier.1"), nn.Linear)


def test_a_plan_file_forces_a_layer_per_entry_or_for_all(tmp_path) -> None:
    model = _lenet5()
    unforced = build_plan(model, {"layers": {"classifier.1": 60, "features.3": 4}})
    assert list(unforced) == ["features.3"] and unforced.kept_dense == ("classifier.1",)
    forced = build_plan(model, {"layers": {"classifier.1": {"rank": 60, "force": True}, "features.3": 4}})
    assert list(forced) == ["classifier.1", "features.3"] and forced.kept_dense == ()
    assert forced["classifier.1"] == LayerPlan("channel", 60, None, True) and not forced["features.3"].force
    everything = build_plan(model, {"force": True, "layers": {"classifier.1": 60, "classifier.3": 80}})
    assert list(everything) == ["classifier.1", "classifier.3"]
    # an entry may opt out of the file's default
    opt_out = build_plan(model, {"force": True, "layers": {"classifier.1": {"rank": 60, "force": False}}})
    assert list(opt_out) == [] and opt_out.kept_dense == ("classifier.1",)
    path = tmp_path / "plan.yaml"  # a plan file reads the same
    path.write_text(yaml.safe_dump({"classifier.1": {"rank": 60, "force": True}, "classifier.3": 80}))
    from_file = build_plan(model, str(path))
    assert list(from_file) == ["classifier.1"] and from_file.kept_dense == ("classifier.3",)
    compact = compress(model, forced)
    assert not isinstance(compact.get_submodule("classifier.1"), nn.Linear)


def test_ranks_that_follow_the_weights_are_not_judged_on_them() -> None:
    """An energy or value policy's rank is re-picked as a method trains (TRP: at every
    projection, on the layers of its first plan): a rank from the initial weights must not
    drop a layer for good."""
    model = _lenet5()
    full = build_plan(model, "energy:1")  # every layer at (about) its full rank: above break-even
    assert list(full) == ["features.3", "classifier.1", "classifier.3"] and full.kept_dense == ()
    mixed = build_plan(model, {"classifier.1": "energy:1", "classifier.3": 80})
    assert list(mixed) == ["classifier.1"] and mixed.kept_dense == ("classifier.3",)
    assert list(build_plan(model, "ratio:1.0")) == []  # a fixed full rank is judged


def test_force_survives_the_plans_written_from_it() -> None:
    model = _lenet5()
    forced = build_plan(model, {"classifier.1": {"rank": 60, "force": True}})
    assert forced == plan_from_mapping(model, {"classifier.1": {"rank": 60, "force": True}})
    data = yaml.safe_load(forced.to_yaml())
    assert data == {"layers": {"classifier.1": {"scheme": "channel", "rank": 60, "force": True}}}
    assert RankPlan.from_dict(data) == forced
    assert build_plan(model, forced) == forced  # a run record's plan resolves to itself
    assert "force" not in uniform_plan(model, "ratio:0.3").to_dict()["layers"]["features.3"]  # no noise otherwise


def test_kept_dense_is_not_part_of_a_plans_identity() -> None:
    assert RankPlan((), ("a",)) == RankPlan(())


@pytest.mark.parametrize("data, match", [
    ({"layers": {"classifier.1": {"rank": 60, "force": "yes"}}},
     "force for layer 'classifier.1' must be true or false"),
    ({"force": 1, "layers": {"classifier.1": 60}}, "force in a rank plan must be true or false, got 1"),
    ({"layers": {"classifier.1": {"rank": 60, "forced": True}}}, "may have 'scheme', 'tiles', 'force'"),
])
def test_a_bad_force_is_refused(data, match) -> None:
    with pytest.raises(RankSearchError, match=match):
        build_plan(_lenet5(), data)


@pytest.mark.parametrize("target", [1.2, 1.6, 3.0])
def test_a_budget_allocation_decides_by_the_same_rule(target) -> None:
    model = _lenet5()
    plan = uniform_allocation(LayerMacs(model, (1, 8, 8)), target, scheme="channel")
    layers = dict(model.named_modules())
    assert all(not stays_dense(layers[n], lp.scheme, lp.rank) for n, lp in plan.items())
    resolved = build_plan(model, plan)
    assert resolved == plan and resolved.kept_dense == ()  # re-resolving a budget plan drops nothing


def test_the_layers_command_shows_the_plan(capsys, tmp_path) -> None:
    base = ["layers", "--model", "lenet5", "--dataset", "synthetic"]
    assert main([*base, "--ranks", "ratio:0.8"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[1]: line for line in out.splitlines() if line.strip().startswith("*")}
    for name in ("classifier.1", "classifier.3"):
        assert f"dense: {BREAK_EVEN_REASON}" in lines[name]
    assert "channel r=13" in lines["features.3"]
    assert "1 factorized, 2 kept dense (factorized cost >= dense)" in out

    assert main([*base, "--ranks", "ratio:0.8", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    plans = {e["name"]: e["plan"] for e in data["layers"]}
    assert plans["features.0"] is None
    assert plans["classifier.1"]["dense"] == BREAK_EVEN_REASON
    assert plans["features.3"]["scheme"] == "channel" and plans["features.3"]["dense"] is None
    assert data["plan_macs"] < data["macs"] and data["plan_macs_compression"] > 1

    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(yaml.safe_dump({"layers": {"classifier.1": {"rank": 60, "force": True}}}))
    assert main([*base, "--ranks", str(plan_file)]) == 0
    assert "channel r=60 (forced)" in capsys.readouterr().out


def test_the_layers_command_is_unchanged_without_ranks(capsys) -> None:
    from rank_search.cli.layers import JSON_KEYS, LAYER_KEYS

    assert main(["layers", "--model", "lenet5", "--dataset", "synthetic", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert tuple(data) == JSON_KEYS and all(tuple(e) == LAYER_KEYS for e in data["layers"])


def test_a_bad_spec_in_the_layers_command_is_one_line(capsys) -> None:
    assert main(["layers", "--model", "lenet5", "--dataset", "synthetic", "--ranks", "ratio:7"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ratio" in err[0]

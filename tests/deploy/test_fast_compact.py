"""`prepare_for_inference`: every exact form of every scheme computes the factorized layer's
output (float64 to rounding), and the prepared model the compact model's, whichever forms are
kept; the source model is never touched; `deploy` uses it and records the forms."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from rank_search.deploy import exact_forms, prepare_for_inference
from rank_search.deploy.fast import DENSE, FACTORIZED
from rank_search.layers import SCHEMES, FactorizedLayer
from rank_search.models import create_model
from rank_search.plan import build_plan
from rank_search.surgery import compress
from test_fold import randomize_batchnorm

CONVS = {  # dense layers the schemes accept, with an input for each
    "3x3 stride 2 bias": (nn.Conv2d(6, 8, 3, stride=2, padding=1, bias=True), (3, 6, 9, 9)),
    "5x3 dilated": (nn.Conv2d(4, 6, (5, 3), padding=(2, 2), dilation=(1, 2), bias=False), (2, 4, 8, 8)),
}
FORMS = {"channel": {FACTORIZED, DENSE}, "spatial": {FACTORIZED, DENSE}, "tiled": {FACTORIZED, DENSE},
         "tucker2": {FACTORIZED, DENSE, "in+core", "core+out"}}


def _factorized(scheme: str, layer: nn.Module) -> FactorizedLayer:
    torch.manual_seed(0)
    rank = (3, 2) if scheme == "tucker2" else 2
    return SCHEMES.get(scheme).from_dense(layer.double(), rank, tiles=(2, 2)).double().eval()


@pytest.mark.parametrize("case", CONVS)
@pytest.mark.parametrize("scheme", SCHEMES.names())
def test_every_exact_form_of_a_conv_equals_the_factorized_layer(scheme: str, case: str) -> None:
    layer, shape = CONVS[case]
    fac = _factorized(scheme, copy.deepcopy(layer))
    forms = exact_forms(fac)
    assert set(forms) == FORMS[scheme] and forms[FACTORIZED] is fac
    x = torch.randn(shape, dtype=torch.float64)
    with torch.no_grad():
        want = fac(x)
        for name, form in forms.items():
            assert (form(x) - want).abs().max() < 1e-12, name
    assert isinstance(forms[DENSE], nn.Conv2d) and forms[DENSE].weight.shape == layer.weight.shape


@pytest.mark.parametrize("scheme", ["channel", "tiled"])
def test_the_dense_form_of_a_linear_is_a_linear(scheme: str) -> None:
    fac = _factorized(scheme, nn.Linear(12, 8))
    dense = exact_forms(fac)[DENSE]
    x = torch.randn(5, 12, dtype=torch.float64)
    assert isinstance(dense, nn.Linear)
    with torch.no_grad():
        assert (dense(x) - fac(x)).abs().max() < 1e-12


def _compact(model: str, scheme: str, ratio: str = "ratio:0.5") -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    channels = 1 if model == "lenet5_wide" else 3
    dense = randomize_batchnorm(create_model(model, in_channels=channels, num_classes=10, image_size=8))
    return compress(dense, build_plan(dense, ratio, scheme=scheme)).eval(), torch.randn(4, channels, 8, 8)


@pytest.mark.parametrize("measure", [None, 3])
@pytest.mark.parametrize("scheme", SCHEMES.names())
def test_prepared_model_equals_the_compact_model(scheme: str, measure) -> None:
    compact, x = _compact("resnet20", scheme)
    before = {k: v.clone() for k, v in compact.state_dict().items()}
    prepared = prepare_for_inference(compact, x[:2], measure_batch=measure, repeats=1)
    factorized = [n for n, m in compact.named_modules() if isinstance(m, FactorizedLayer)]
    assert [c.name for c in prepared.choices] == factorized
    assert all(c.form in FORMS[scheme] for c in prepared.choices)
    assert all((c.ms is None) == (measure is None) for c in prepared.choices)
    assert len(prepared.folded) == 19 and not any(isinstance(m, nn.BatchNorm2d) for m in prepared.module.modules())
    with torch.inference_mode():
        assert (prepared.module(x) - compact(x)).abs().max() < 1e-4
    assert all(torch.equal(before[k], v) for k, v in compact.state_dict().items())  # source untouched
    assert compact.layer1[0].bn1.__class__ is nn.BatchNorm2d


def test_every_forced_form_keeps_the_output() -> None:
    """Whatever form the timing picks, the model's output stays: each Tucker-2 form forced in turn."""
    compact, x = _compact("resnet20", "tucker2")
    with torch.inference_mode():
        want = compact(x)
    for form in FORMS["tucker2"]:
        model = copy.deepcopy(compact)
        for name, m in list(model.named_modules()):
            if isinstance(m, FactorizedLayer):
                parent, _, child = name.rpartition(".")
                setattr(model.get_submodule(parent), child, exact_forms(m)[form])
        with torch.inference_mode():
            got = prepare_for_inference(model, x[:2]).module(x)
        assert (got - want).abs().max() < 1e-4, form


def test_macs_choice_keeps_the_cheaper_form() -> None:
    """Without timing a factorized layer stays unless its MACs reach the dense layer's (full rank)."""
    compact, x = _compact("lenet5_wide", "channel", "ratio:0.25")
    assert {c.form for c in prepare_for_inference(compact, x[:2]).choices} == {FACTORIZED}
    conv = nn.Conv2d(4, 4, 3, padding=1)  # full rank 4: 4*36 + 4*4 MACs per pixel against 4*36
    model = nn.Sequential(SCHEMES.get("channel").from_dense(conv, 4), nn.ReLU()).eval()
    x = torch.randn(2, 4, 6, 6)
    prepared = prepare_for_inference(model, x)
    (choice,) = prepared.choices
    assert choice.form == DENSE and choice.macs[DENSE] < choice.macs[FACTORIZED]
    assert isinstance(prepared.module[0], nn.Conv2d)
    with torch.inference_mode():
        assert (prepared.module(x) - model(x)).abs().max() < 1e-5


def test_channels_last_weights_and_the_switch() -> None:
    compact, x = _compact("resnet20", "channel")
    conv = prepare_for_inference(compact, x[:2]).module.conv1
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    conv = prepare_for_inference(compact, x[:2], channels_last=False).module.conv1
    assert conv.weight.is_contiguous()


@pytest.mark.parametrize("measure", [None, 4])
def test_deploy_prepares_the_model_and_records_the_forms(tmp_path, measure) -> None:
    from rank_search import schema
    from rank_search.checkpoint import save_compact
    from rank_search.deploy import deploy

    compact, _ = _compact("lenet5_wide", "tucker2")
    plan = build_plan(create_model("lenet5_wide", in_channels=1, num_classes=10, image_size=8), "ratio:0.5",
                      scheme="tucker2")
    source = str(tmp_path / "c.pt")
    save_compact(source, compact, plan=plan, model="lenet5_wide", dataset="synthetic", method="posthoc",
                 in_channels=1, num_classes=10, image_size=8)
    result = deploy(source, fmt="torch-export", out=str(tmp_path / "m.pt2"), measure_batch=measure)
    forms = result.metadata["inference_forms"]
    factorized = {n for n, m in compact.named_modules() if isinstance(m, FactorizedLayer)}
    assert set(forms) == factorized and {"features.4", "features.7"} <= factorized  # + channel linears
    assert set(forms.values()) <= FORMS["tucker2"]
    if measure is None:
        assert set(forms.values()) == {FACTORIZED}
    assert result.max_abs_diff <= schema.PARITY_TOLERANCE

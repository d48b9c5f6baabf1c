"""The contract every registered method keeps (methods added later are picked up automatically)."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from rank_search import schema
from rank_search.cost import count_macs, count_params
from rank_search.engine import evaluate
from rank_search.errors import RankSearchError
from rank_search.layers import SCHEMES, FactorizedLayer, get_scheme, tile_grid
from rank_search.methods import METHODS, Method, create_method
from rank_search.plan import RankPlan, candidate_layers
from rank_search.run import RunSpec, train

from _resume import assert_same_run, resumed_run, straight_run

EPOCHS = 2
FRACTIONS = (schema.VAL_ACCURACY, schema.TEST_ACCURACY)


@pytest.fixture(scope="module", params=METHODS.names())
def result(request):
    spec = RunSpec(model="lenet5", dataset="synthetic", method=request.param, ranks="ratio:0.25", epochs=EPOCHS)
    return train(spec)


def test_registry_is_strict() -> None:
    assert {"full", "posthoc", "factorized"} <= set(METHODS.names())
    for name in METHODS.names():
        cls = METHODS.get(name)
        assert issubclass(cls, Method) and cls.name == name
    with pytest.raises(ValueError, match="method 'full' is already registered"):
        METHODS.add("full", METHODS.get("full"))
    with pytest.raises(ValueError, match=r"unknown method 'nope'; valid choices: " + ", ".join(METHODS.names())):
        create_method("nope")


@pytest.mark.parametrize("name", METHODS.names())
def test_unknown_knob_lists_the_valid_ones(name: str) -> None:
    import dataclasses

    knobs = [f"{name}.{f.name}" for f in dataclasses.fields(METHODS.get(name).Knobs)]
    valid = ", ".join(knobs) if knobs else r"\(none\)"
    with pytest.raises(ValueError, match=rf"unknown setting '{name}.no_such_knob'; valid settings: {valid}$"):
        create_method(name, {"no_such_knob": 1})


def test_reports_every_required_metric(result) -> None:
    m = result.metrics
    missing = [k for k in schema.REQUIRED_TRAIN_METRICS if k not in m]
    assert not missing
    for key in FRACTIONS:
        assert 0.0 <= m[key] <= 1.0, key
    assert m[schema.EPOCHS] == EPOCHS and m[schema.WALL_SECONDS] > 0
    assert math.isfinite(m[schema.TRAIN_LOSS]) and math.isfinite(m[schema.VAL_LOSS])
    assert len(result.trainer.history) == EPOCHS


def test_metrics_are_consistent(result) -> None:
    m, trainer = result.metrics, result.trainer
    compact = trainer.compact_model()
    shape = trainer.input_shape
    assert m[schema.DENSE_PARAMS] == count_params(trainer.dense) == sum(p.numel() for p in trainer.dense.parameters())
    assert m[schema.COMPACT_PARAMS] == count_params(compact)
    assert m[schema.DENSE_MACS] == count_macs(trainer.dense, shape)[0]
    assert m[schema.COMPACT_MACS] == count_macs(compact, shape)[0]
    assert m[schema.PARAMS_COMPRESSION] == m[schema.DENSE_PARAMS] / m[schema.COMPACT_PARAMS]
    assert m[schema.MACS_COMPRESSION] == m[schema.DENSE_MACS] / m[schema.COMPACT_MACS]
    test_acc, _ = evaluate(compact, trainer.data.test, trainer.device)
    val_acc, val_loss = evaluate(compact, trainer.data.val, trainer.device)
    assert (test_acc, val_acc) == (m[schema.TEST_ACCURACY], m[schema.VAL_ACCURACY])
    assert val_loss == pytest.approx(m[schema.VAL_LOSS], rel=1e-6)
    assert trainer.history[-1].val_accuracy == m[schema.VAL_ACCURACY]


def test_compact_model_compresses(result) -> None:
    m, method = result.metrics, result.trainer.method
    if not method.uses_plan:
        assert m[schema.COMPACT_PARAMS] == m[schema.DENSE_PARAMS] and m[schema.MACS_COMPRESSION] == 1.0
        return
    assert m[schema.COMPACT_PARAMS] <= m[schema.DENSE_PARAMS]
    assert m[schema.PARAMS_COMPRESSION] >= 1.0
    assert m[schema.MACS_COMPRESSION] > 1.0


def test_compact_model_is_the_plan(result) -> None:
    trainer = result.trainer
    plan = trainer.method.plan
    assert isinstance(plan, RankPlan)
    compact = trainer.compact_model()
    dense_layers = candidate_layers(trainer.dense)
    factorized = {n for n, mod in compact.named_modules() if isinstance(mod, FactorizedLayer)}
    assert factorized == set(plan)
    if trainer.method.uses_plan:
        assert len(plan) > 0
    for name, lp in plan.items():
        layer = compact.get_submodule(name)
        assert isinstance(layer, get_scheme(lp.scheme)), name
        assert layer.rank == lp.rank, name
        max_rank = get_scheme(lp.scheme).max_rank(dense_layers[name], tiles=lp.tiles)
        if isinstance(lp.rank, tuple):
            assert all(1 <= r <= mx for r, mx in zip(lp.rank, max_rank)), name
        else:
            assert 1 <= lp.rank <= max_rank, name
        if lp.scheme == "tiled":
            assert layer.grid == tile_grid(dense_layers[name], lp.tiles)
        assert layer.to_dense_weight().shape == dense_layers[name].weight.shape
    for name, layer in dense_layers.items():
        if name not in plan:
            kept = compact.get_submodule(name)
            assert type(kept) is type(layer) and kept.weight.shape == layer.weight.shape, name
    # Every conv/linear of the compact model is a kept dense layer or part of a planned one.
    for name, module in compact.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            inside_planned = any(name.startswith(p + ".") for p in plan)
            assert inside_planned or (name in dense_layers and name not in plan), name


def test_compact_model_does_not_change_training_state(result) -> None:
    trainer = result.trainer
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    a = trainer.compact_model().state_dict()
    b = trainer.compact_model().state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    after = trainer.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_compact_model_predicts(result) -> None:
    compact = result.trainer.compact_model().eval()
    x, _ = next(iter(result.trainer.data.test))
    with torch.no_grad():
        logits = compact(x)
    assert logits.shape == (x.shape[0], 10) and torch.isfinite(logits).all()


@pytest.mark.parametrize("name", METHODS.names())
def test_unsupported_schemes_are_rejected_in_one_wording(name: str) -> None:
    allowed = METHODS.get(name).supported_schemes
    if allowed is None:
        return
    noun = "schemes" if len(allowed) > 1 else "scheme"
    for scheme in [s for s in SCHEMES.names() if s not in allowed]:
        rule = rf"{name} supports {noun} {', '.join(allowed)}; got scheme '{scheme}'$"
        with pytest.raises(RankSearchError, match=rule):
            create_method(name, scheme=scheme)


# ---- exact resume ----

RESUME_EPOCHS = 3
# Knobs that make a 3-epoch run exercise every phase of a method (posthoc: resumed both in
# the dense phase, after epoch 1, and in the fine-tuning phase, after epoch 2).
RESUME_SETTINGS = {"posthoc": {"posthoc.finetune_epochs": 2}}


@pytest.fixture(scope="module")
def straight_runs() -> dict:
    """The uninterrupted run of each method, trained once for both resume points."""
    return {}


@pytest.mark.parametrize("resume_after", [1, 2])
@pytest.mark.parametrize("name", METHODS.names())
def test_exact_resume(name: str, resume_after: int, straight_runs: dict) -> None:
    spec = RunSpec(model="lenet5", dataset="synthetic", method=name, ranks="ratio:0.5", epochs=RESUME_EPOCHS,
                   settings=RESUME_SETTINGS.get(name, {}))
    if name not in straight_runs:
        straight_runs[name] = straight_run(spec)
    resumed = resumed_run(spec, after=resume_after)
    resumed.fit()
    assert_same_run(straight_runs[name], resumed)


# ---- the baselines' own rules (METHODS.md section 6) ----

@pytest.mark.parametrize("finetune,expected", [(2, [False, True, True]), (1, [False, False, True]),
                                               (0, [False, False, True])])
def test_posthoc_decomposes_before_the_finetune_epochs(finetune: int, expected: list[bool]) -> None:
    from rank_search.run import prepare

    trainer = prepare(RunSpec(model="lenet5", dataset="synthetic", method="posthoc", ranks="ratio:0.5", epochs=3,
                              settings={"posthoc.finetune_epochs": finetune}))
    factorized_after = []
    trainer.fit(lambda tr, r: factorized_after.append(isinstance(tr.model.features[3], FactorizedLayer)))
    # Whether the trained model is factorized after each epoch: from the start of the first
    # fine-tuning epoch on (finetune_epochs = 0: by finalize, after the last epoch's training).
    assert factorized_after == expected
    assert trainer.method.phase == "finetune"
    assert [lp.rank for _, lp in trainer.method.plan.items()] == [8, 32, 42]


def test_factorized_init_is_orthonormal_and_norm_preserving(lenet5) -> None:
    from rank_search.methods.factorized import norm_preserving_factorize
    from rank_search.plan import build_plan

    plan = build_plan(lenet5, "ratio:0.25", scheme="tucker2")
    compact = norm_preserving_factorize(lenet5, plan)
    dense_layers = candidate_layers(lenet5)
    for name, lp in plan.items():
        layer = compact.get_submodule(name)
        torch.testing.assert_close(layer.to_dense_weight().norm(), dense_layers[name].weight.norm())
        u = layer.factor_matrices()[-1]  # the input-side factor
        torch.testing.assert_close(u.t() @ u, torch.eye(u.shape[1]), atol=1e-5, rtol=0)

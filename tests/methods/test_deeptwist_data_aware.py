"""DeepTwist with ``init_decomposition: data`` (issue 30): every distortion is the output-error
optimum at the plan's ranks on calibration images drawn through the current model, the compact
model reproduces the distorted weights, and a scheme without a data-aware form is refused."""
from __future__ import annotations

import pytest
import torch

from rank_search.decomp import collect_input_moments, output_error
from rank_search.errors import RankSearchError
from rank_search.layers import get_scheme
from rank_search.plan import candidate_layers
from rank_search.run import RunSpec, prepare, train


def _spec(scheme: str, **knobs) -> RunSpec:
    settings = {f"deeptwist.{k}": v for k, v in knobs.items()}
    return RunSpec(model="lenet5", dataset="synthetic", method="deeptwist", ranks="ratio:0.25", scheme=scheme,
                   epochs=1, seed=3, settings={"train.device": "cpu", "train.threads": 1, **settings})


@pytest.mark.parametrize("scheme", ["tucker2", "channel"])
def test_a_data_aware_distortion_fits_the_outputs_better(scheme: str) -> None:
    trainer = prepare(_spec(scheme, distortion_step=1000, init_decomposition="data", calibration_images=48))
    trainer.method.on_train_start(trainer)
    plan = trainer.method.plan
    before = {n: m.weight.detach().clone() for n, m in candidate_layers(trainer.model).items() if n in plan}
    moments = collect_input_moments(trainer.model, list(plan), trainer.data.train, images=48)
    trainer.method.distort(trainer)
    layers = candidate_layers(trainer.model)
    for name, lp in plan.items():
        dense = before[name].reshape(-1, moments[name].shape[0])
        data = layers[name].weight.detach().reshape(dense.shape)
        weight = get_scheme(lp.scheme).project(before[name], lp.rank, tiles=lp.tiles, randomized=False)
        assert output_error(dense, data, moments[name]) <= \
            output_error(dense, weight.reshape(dense.shape), moments[name]) * (1 + 1e-5) + 1e-9


def test_the_compact_model_reproduces_the_data_aware_distortions() -> None:
    result = train(_spec("tucker2", distortion_step=5, init_decomposition="data", calibration_images=32))
    trainer = result.trainer
    x = torch.randn(16, 1, 8, 8)
    dense, compact = trainer.model.eval(), trainer.compact_model().eval()
    with torch.no_grad():
        torch.testing.assert_close(compact(x), dense(x), atol=1e-4, rtol=0)


def test_a_scheme_without_a_data_aware_form_is_refused_before_training() -> None:
    with pytest.raises(RankSearchError, match="init_decomposition=data needs schemes channel, tucker2; layer "
                                              "'features.3' has scheme 'tiled'"):
        prepare(_spec("tiled", init_decomposition="data"))

"""posthoc's ``init_decomposition`` and distillation end to end (issue 30): the data-aware
decomposition of trained weights, its one-line errors, and a trial with both knobs carried by the
trial codec into a run record that `train --config` re-trains identically."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from rank_search import schema
from rank_search.cli import main
from rank_search.decomp import collect_input_moments, output_error
from rank_search.errors import RankSearchError
from rank_search.layers import ChannelFactorized
from rank_search.run import RunSpec, prepare, train
from rank_search.run.results import run_record
from rank_search.search.trial import spec_from_config
from rank_search.weights import save_weights
from search_spaces import GroupRanks, TrialSpec, decode_trial


@pytest.fixture(scope="module")
def dense_file(tmp_path_factory) -> str:
    result = train(RunSpec(model="lenet5", dataset="synthetic", method="full", epochs=2, seed=0,
                           settings={"train.threads": 1}))
    path = tmp_path_factory.mktemp("dense") / "dense.pt"
    save_weights(result.trainer.model, str(path))
    return str(path)


def _spec(path: str | None, **settings) -> RunSpec:
    return RunSpec(model="lenet5", dataset="synthetic", method="posthoc", ranks="ratio:0.25", epochs=1, seed=0,
                   init=path, settings={"train.threads": 1, **settings})


def test_data_aware_init_fits_each_layers_outputs_better(dense_file: str) -> None:
    weight = prepare(_spec(dense_file))
    data = prepare(_spec(dense_file, **{"posthoc.init_decomposition": "data", "posthoc.calibration_images": 64}))
    moments = collect_input_moments(data.model, list(data.method.plan), data.data.train, images=64)
    for trainer in (weight, data):
        trainer.method.on_epoch_start(trainer, 0)  # the decomposition, before any fine-tuning
        assert trainer.method.phase == "finetune"
    errors = {}
    for name, moment in moments.items():
        dense = data.dense.get_submodule(name).weight.reshape(-1, moment.shape[0])
        got = [output_error(dense, t.model.get_submodule(name).to_dense_weight().reshape(dense.shape), moment)
               for t in (weight, data)]
        assert isinstance(data.model.get_submodule(name), ChannelFactorized)
        assert got[1] <= got[0] * (1 + 1e-5), (name, got)
        errors[name] = got
    assert any(d < 0.99 * w for w, d in errors.values())


def test_sequential_init_decomposes_every_planned_layer(dense_file: str) -> None:
    trainer = prepare(_spec(dense_file, **{"posthoc.init_decomposition": "data_sequential",
                                           "posthoc.calibration_images": 32}))
    plain = prepare(_spec(dense_file, **{"posthoc.init_decomposition": "data", "posthoc.calibration_images": 32}))
    for t in (trainer, plain):
        t.method.on_epoch_start(t, 0)
    names = list(trainer.method.plan)
    assert all(isinstance(trainer.model.get_submodule(n), ChannelFactorized) for n in names)
    first, last = (trainer.model.get_submodule(n).to_dense_weight() for n in (names[0], names[-1]))
    torch.testing.assert_close(first, plain.model.get_submodule(names[0]).to_dense_weight(), atol=1e-5, rtol=1e-4)
    assert not torch.allclose(last, plain.model.get_submodule(names[-1]).to_dense_weight(), atol=1e-5)


@pytest.mark.parametrize("settings, match", [
    ({"posthoc.init_decomposition": "activations"},
     "posthoc.init_decomposition must be one of weight, data, data_sequential, got 'activations'"),
    ({"posthoc.calibration_images": 0}, "posthoc.calibration_images must be an integer >= 1, got 0"),
])
def test_bad_knobs_are_one_line_errors(settings: dict, match: str) -> None:
    with pytest.raises(RankSearchError, match=match) as info:
        prepare(_spec(None, **settings))
    assert "\n" not in str(info.value)


def test_data_aware_refuses_a_scheme_without_it_before_training() -> None:
    spec = RunSpec(**{**_spec(None, **{"posthoc.init_decomposition": "data"}).to_dict(), "scheme": "spatial"})
    with pytest.raises(RankSearchError, match="init_decomposition=data needs schemes channel, tucker2; layer "
                                              "'features.3' has scheme 'spatial'"):
        prepare(spec)


def _trial(dense: str) -> TrialSpec:
    return TrialSpec(method="posthoc", model="lenet5", dataset="synthetic", epochs=1, seed=0,
                     knobs={"init": "scratch", "finetune_epochs": 0, "init_decomposition": "data",
                            "calibration_images": 32},
                     train={"threads": 1}, distill={"weight": 0.5, "temperature": 3.0},
                     ranks=GroupRanks("uniform", {"all": 0.25}), dense=dense)


def test_both_knobs_round_trip_from_a_trial_to_train_config(dense_file: str, tmp_path: Path) -> None:
    trial = _trial(dense_file)
    config = trial.to_config()
    assert config["distill.weight"] == 0.5 and config["posthoc.init_decomposition"] == "data"
    assert decode_trial(config) == trial
    spec = spec_from_config(config)
    assert spec.teacher == dense_file and spec.init is None  # scratch init: the reference only teaches
    result = train(spec)
    assert result.trainer.teacher is not None
    record = run_record(result.trainer, spec)
    assert record["settings"]["distill.weight"] == 0.5 and record["settings"]["distill.temperature"] == 3.0
    assert record["settings"]["posthoc.init_decomposition"] == "data" and record["teacher"] == dense_file
    exported = tmp_path / "best.yaml"  # what `export` writes: the trial's run record under ``run``
    exported.write_text(yaml.safe_dump({"run": record}, sort_keys=False))
    out = tmp_path / "again"
    assert main(["train", "--config", str(exported), "--out", str(out)]) == 0
    metrics = yaml.safe_load((out / schema.METRICS_FILE).read_text())
    for key in (schema.VAL_ACCURACY, schema.TEST_ACCURACY, schema.VAL_LOSS, schema.TRAIN_LOSS):
        assert metrics[key] == result.metrics[key], key
    again = yaml.safe_load((out / schema.RUN_FILE).read_text())["run"]
    assert again["settings"] == record["settings"] and again["teacher"] == dense_file
    compact = torch.load(out / schema.COMPACT_WEIGHTS_FILE, weights_only=True)
    assert not any("teacher" in key for key in str(compact))


def test_a_distilled_trial_without_the_reference_is_refused() -> None:
    trial = _trial("")
    with pytest.raises(RankSearchError, match="distill.weight=0.5 needs a dense teacher"):
        prepare(spec_from_config(trial.to_config()))

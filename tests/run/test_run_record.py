"""The run record (``run.yaml``, written by ``run.results.run_record`` for `train` and for every
trial): every setting resolved, the environment, integers kept; an exported trial re-trains to
its metrics exactly whatever the re-training process's thread count."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
import yaml

from rank_search import schema
from rank_search.cli import main
from rank_search.engine import TrainConfig
from rank_search.methods import METHODS
from rank_search.overrides import to_plain
from rank_search.run import RunSpec, prepare, train
from rank_search.run.environment import PACKAGES
from rank_search.run.results import run_record

from _sweeps import fake_sweep

SYNTH = dict(model="lenet5", dataset="synthetic", epochs=2)


@pytest.fixture
def threads():
    """Restore the process's torch threads after a test that changes them."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("method", METHODS.names())
def test_the_record_holds_every_setting_resolved_and_reads_back(method: str, threads) -> None:
    torch.set_num_threads(1)
    spec = RunSpec(**SYNTH, method=method, settings={"train.weight_decay": 5e-4})
    trainer = prepare(spec)
    record = run_record(trainer, spec)
    settings = record["settings"]
    # the whole TrainConfig (dataset defaults filled in, the threads actually used) and every knob
    assert {k for k in settings if k.startswith("train.")} == {f"train.{k}" for k in to_plain(TrainConfig())}
    assert settings["train.weight_decay"] == 5e-4 and settings["train.threads"] == 1
    assert settings["train.lr"] == trainer.config.lr and settings["train.batch_size"] == trainer.config.batch_size
    assert {k[len(method) + 1:] for k in settings if k.startswith(f"{method}.")} == set(to_plain(trainer.method.knobs))
    env = record[schema.ENVIRONMENT_KEY]
    assert env["torch_threads"] == 1 and env["device"] == "cpu" and set(env["packages"]) == set(PACKAGES)
    assert env["packages"]["torch"] == torch.__version__.split("+")[0] and "git_commit" in env
    # the record, through YAML, is a config that prepares the same run on another thread count
    torch.set_num_threads(2)
    again = prepare(RunSpec.from_dict(yaml.safe_load(yaml.safe_dump(record, sort_keys=False)), source="record"))
    assert again.config == dataclasses.replace(trainer.config, threads=1) and again.method.knobs == trainer.method.knobs
    assert again.threads == 1 and torch.get_num_threads() == 1
    if trainer.method.plan is not None:
        assert again.method.plan == trainer.method.plan


def test_trp_records_the_ranks_it_trained_with_not_its_final_plan(threads) -> None:
    torch.set_num_threads(1)
    fixed = RunSpec(**SYNTH, method="trp", ranks="ratio:0.5",
                    settings={"trp.interval": 3, "trp.final_ranks": "value:0.7"})
    result = train(fixed)
    record = run_record(result.trainer, fixed)
    trained = result.trainer.method.plan_for(result.trainer.dense, "ratio:0.5")
    assert record["ranks"] == trained.to_dict() and result.trainer.method.plan != trained  # final ranks differ
    again = train(RunSpec.from_dict(yaml.safe_load(yaml.safe_dump(record, sort_keys=False))))
    assert again.metrics[schema.VAL_ACCURACY] == result.metrics[schema.VAL_ACCURACY]
    assert again.trainer.method.plan == result.trainer.method.plan
    energy = RunSpec(**SYNTH, method="trp", settings={"trp.interval": 3})  # energy:0.9, re-picked each time
    assert run_record(prepare(energy), energy)["ranks"] == "energy:0.9"


def test_an_exported_trial_retrains_identically_on_another_thread_count(tmp_path, monkeypatch, threads) -> None:
    torch.set_num_threads(1)  # what a 1-CPU trial runs with
    spec = RunSpec(**SYNTH, method="posthoc", ranks="ratio:0.5", settings={"train.lr": 0.05})
    exp = fake_sweep(tmp_path, spec)
    monkeypatch.chdir(tmp_path)  # the exported config must not depend on the folder it is used from
    assert main(["export", "exp", "--out", "best.yaml"]) == 0
    exported = yaml.safe_load((tmp_path / "best.yaml").read_text())
    assert exported["provenance"]["experiment"] == str(exp)  # absolute
    m = exported["metrics"]
    for key in (schema.DENSE_PARAMS, schema.COMPACT_PARAMS, schema.DENSE_MACS, schema.COMPACT_MACS, schema.EPOCHS):
        assert type(m[key]) is int, key
    assert m[schema.EPOCHS] == 2 and schema.EPOCH not in m
    assert exported["run"]["settings"]["train.threads"] == 1
    torch.set_num_threads(2)  # a plain `train` on this machine
    assert main(["train", "--config", "best.yaml", "--out", "again"]) == 0
    metrics = json.loads((tmp_path / "again" / schema.METRICS_FILE).read_text())
    for key in (schema.VAL_ACCURACY, schema.TEST_ACCURACY, schema.COMPACT_MACS, schema.MACS_COMPRESSION):
        assert metrics[key] == m[key], key
    record = yaml.safe_load((tmp_path / "again" / schema.RUN_FILE).read_text())["run"]
    assert record[schema.ENVIRONMENT_KEY]["torch_threads"] == 1

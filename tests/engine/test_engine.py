"""Training engine: determinism, RNG state, divergence, settings, LR schedule."""
from __future__ import annotations

import math

import pytest
import torch

from rank_search import schema
from rank_search.engine import DivergedError, TrainConfig
from rank_search.errors import RankSearchError
from rank_search.run import RunSpec, prepare, train

from _training import fit_until

EPOCHS = 3


def _spec(method: str = "full", *, seed: int = 0, epochs: int = EPOCHS, settings=None, **kw) -> RunSpec:
    return RunSpec(model="lenet5", dataset="synthetic", method=method, ranks=kw.pop("ranks", "ratio:0.5"),
                   epochs=epochs, seed=seed, settings=dict(settings or {}), **kw)


def _same_state(a: dict, b: dict) -> None:
    assert list(a) == list(b)
    for key in a:
        assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key


def _metrics_without_time(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k != schema.WALL_SECONDS}


# ---- determinism ----

def test_same_seed_same_run() -> None:
    a = train(_spec("full", epochs=2))
    b = train(_spec("full", epochs=2))
    _same_state(a.trainer.model.state_dict(), b.trainer.model.state_dict())
    assert _metrics_without_time(a.metrics) == _metrics_without_time(b.metrics)
    assert [(r.train_loss, r.val_accuracy, r.val_loss) for r in a.trainer.history] == \
        [(r.train_loss, r.val_accuracy, r.val_loss) for r in b.trainer.history]
    c = train(_spec("full", epochs=2, seed=1))
    assert not torch.equal(a.trainer.model.state_dict()["features.0.weight"],
                           c.trainer.model.state_dict()["features.0.weight"])
    assert a.trainer.last_loss != c.trainer.last_loss


def test_training_changes_the_model_and_keeps_the_dense_reference() -> None:
    trainer = prepare(_spec("full", epochs=1))
    dense_before = {k: v.clone() for k, v in trainer.dense.state_dict().items()}
    init = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    _same_state(init, dense_before)  # the trained copy starts from the dense initialisation
    trainer.fit()
    _same_state(trainer.dense.state_dict(), dense_before)
    assert not torch.equal(trainer.model.state_dict()["features.0.weight"], init["features.0.weight"])
    assert trainer.global_step == trainer.steps_per_epoch == 16  # 512 samples / batch 32
    assert len(trainer.history) == 1 and trainer.history[0].epoch == 1


# ---- resumable state (exact resume of every method: tests/methods/test_methods_contract.py) ----

def test_rng_state_round_trips_through_a_safe_file(tmp_path) -> None:
    import random

    import numpy as np

    from rank_search.engine.trainer import rng_state, set_rng_state

    random.seed(3)
    np.random.seed(4)
    torch.manual_seed(5)
    random.gauss(0, 1)
    np.random.randn()  # normals come in pairs: one is now cached in each generator's state
    path = tmp_path / "rng.pt"
    torch.save(rng_state(), path)
    expected = (random.gauss(0, 1), float(np.random.randn()), torch.rand(3))
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    set_rng_state(torch.load(path, weights_only=True))
    got = (random.gauss(0, 1), float(np.random.randn()), torch.rand(3))
    assert got[:2] == expected[:2] and torch.equal(got[2], expected[2])


def test_each_epoch_reshuffles_from_its_own_seed() -> None:
    trainer = prepare(_spec("full"))
    calls = []
    real = trainer.data.train.set_epoch
    trainer.data.train.set_epoch = lambda epoch: (calls.append(epoch), real(epoch))
    fit_until(trainer, 2)
    trainer.fit()
    assert calls == [0, 1, 2]


# ---- divergence ----

def test_huge_learning_rate_diverges() -> None:
    trainer = prepare(_spec("full", settings={"train.lr": 1e6}))
    with pytest.raises(DivergedError, match=r"training diverged at epoch \d+, iteration \d+ \(loss=.*\); lower train.lr"):
        trainer.fit()


# ---- settings ----

TRAIN_KEYS = ("train.lr, train.momentum, train.weight_decay, train.batch_size, train.schedule, train.gamma, "
              "train.milestones, train.warmup_epochs, train.nesterov, train.device, train.threads, train.amp, "
              "train.channels_last")


@pytest.mark.parametrize("settings,match", [
    ({"train.foo": 1}, rf"unknown setting 'train.foo'; valid settings: {TRAIN_KEYS}$"),
    ({"posthoc.nope": 1}, r"unknown setting 'posthoc.nope'; valid settings: posthoc.finetune_epochs, posthoc.init, posthoc.bn_recalibrate, posthoc.bn_images, posthoc.init_decomposition, posthoc.calibration_images$"),
    ({"other.x": 1}, r"setting 'other.x' must start with 'train.', 'distill.' or 'posthoc.'"),
    ({"lr": 1}, r"setting 'lr' must start with 'train.', 'distill.' or 'posthoc.'"),
    ({"train.lr": "abc"}, r"train.lr must be a number, got 'abc'"),
    ({"train.lr": -1}, r"train.lr must be a finite number > 0, got -1"),
    ({"train.lr": True}, r"train.lr must be a number, got True"),
    ({"train.batch_size": 2.5}, r"train.batch_size must be an integer, got 2.5"),
    ({"train.batch_size": 0}, r"train.batch_size must be >= 1, got 0"),
    ({"train.momentum": 1.5}, r"train.momentum must be in \[0, 1\), got 1.5"),
    ({"train.weight_decay": -0.1}, r"train.weight_decay must be >= 0, got -0.1"),
    ({"train.schedule": "linear"}, r"train.schedule must be one of cosine, step, constant, got 'linear'"),
    ({"train.milestones": 0.5}, r"train.milestones must be a list, got 0.5"),
    ({"train.milestones": [0.5, 2]}, r"train.milestones must be fractions in \(0, 1\), got \[0.5, 2.0\]"),
    ({"train.warmup_epochs": -1}, r"train.warmup_epochs must be >= 0"),
    ({"train.nesterov": "yes"}, r"train.nesterov must be true or false, got 'yes'"),
    ({"train.threads": -1}, r"train.threads must be >= 0, got -1"),
    ({"train.device": "tpu"}, r"train.device must be auto, cpu or cuda\[:N\], got 'tpu'"),
    ({"posthoc.finetune_epochs": -1}, r"posthoc.finetune_epochs must be >= 0, got -1"),
    ({"posthoc.finetune_epochs": 3}, r"posthoc.finetune_epochs must be < epochs \(3\), got 3"),
])
def test_bad_settings_raise(settings, match: str) -> None:
    with pytest.raises(RankSearchError, match=match):
        prepare(RunSpec(model="lenet5", dataset="synthetic", method="posthoc", epochs=EPOCHS, settings=settings))


def test_method_without_knobs_says_so() -> None:
    with pytest.raises(RankSearchError, match=r"unknown setting 'full.x'; valid settings: \(none\)"):
        prepare(RunSpec(model="lenet5", dataset="synthetic", method="full", settings={"full.x": 1}))


def test_settings_are_applied() -> None:
    trainer = prepare(_spec("full", settings={"train.lr": 0.2, "train.batch_size": 64, "train.momentum": 0.5,
                                               "train.nesterov": True, "train.milestones": [0.25],
                                               "train.weight_decay": 5e-4}))
    c = trainer.config
    assert (c.lr, c.batch_size, c.momentum, c.nesterov, c.milestones) == (0.2, 64, 0.5, True, (0.25,))
    assert trainer.steps_per_epoch == 8  # 512 / 64
    group = trainer.optimizer.param_groups[0]
    assert (group["momentum"], group["nesterov"], group["weight_decay"]) == (0.5, True, 5e-4)
    defaults = prepare(_spec("full")).config
    assert (defaults.lr, defaults.batch_size) == (0.05, 32)  # the synthetic dataset's recommendation


def test_set_values_are_yaml_scalars() -> None:
    from rank_search.overrides import parse_assignments

    assert parse_assignments(["train.lr=1e-4", "train.batch_size=64", "train.nesterov=false",
                              "train.milestones=[0.5, 0.75]", "train.schedule=step", " a.b = 2 ", "x.y=null",
                              "x.z=a=b"]) == {
        "train.lr": 1e-4, "train.batch_size": 64, "train.nesterov": False, "train.milestones": [0.5, 0.75],
        "train.schedule": "step", "a.b": 2, "x.y": None, "x.z": "a=b"}
    assert parse_assignments(None) == {}
    with pytest.raises(RankSearchError, match=r"--set expects key=value, got '=3'"):
        parse_assignments(["=3"])


@pytest.mark.parametrize("kwargs,match", [
    (dict(epochs=0), r"epochs must be an integer >= 1, got 0"),
    (dict(epochs=2.5), r"epochs must be an integer >= 1, got 2.5"),
    (dict(seed="a"), r"seed must be an integer, got 'a'"),
])
def test_run_spec_validation(kwargs, match: str) -> None:
    with pytest.raises(RankSearchError, match=match):
        RunSpec(model="lenet5", dataset="synthetic", method="full", **kwargs)


def test_run_spec_from_dict() -> None:
    spec = _spec("posthoc", settings={"posthoc.finetune_epochs": 2})
    assert RunSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(RankSearchError, match=r"unknown key\(s\) \['foo'\] in cfg.yaml; valid keys: model, dataset"):
        RunSpec.from_dict({"model": "lenet5", "dataset": "synthetic", "method": "full", "foo": 1}, source="cfg.yaml")
    with pytest.raises(RankSearchError, match=r"config is missing required key\(s\): dataset, method"):
        RunSpec.from_dict({"model": "lenet5"})
    with pytest.raises(RankSearchError, match=r"config must be a mapping, got list"):
        RunSpec.from_dict([1, 2])


@pytest.mark.parametrize("field,value,match", [
    ("model", "lenet6", r"unknown model 'lenet6'; valid choices: .*lenet5"),
    ("dataset", "mnist", r"unknown dataset 'mnist'; valid choices: .*mnist5k"),
    ("method", "magic", r"unknown method 'magic'; valid choices: .*posthoc"),
    ("ranks", "foo:1", r"bad rank spec 'foo:1'"),
    ("scheme", "cp", r"unknown scheme 'cp'; valid choices: channel, spatial, tiled, tucker2"),
])
def test_unknown_names_fail_in_prepare(field: str, value: str, match: str) -> None:
    kw = dict(model="lenet5", dataset="synthetic", method="posthoc")
    kw[field] = value
    with pytest.raises(RankSearchError, match=match):
        prepare(RunSpec(**kw))


# ---- learning-rate schedule ----

def test_lr_cosine() -> None:
    cfg = TrainConfig(lr=0.1, schedule="cosine")
    assert cfg.lr_at(0, 100, 10) == pytest.approx(0.1)
    assert cfg.lr_at(25, 100, 10) == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi / 4)))
    assert cfg.lr_at(50, 100, 10) == pytest.approx(0.05)
    assert cfg.lr_at(99, 100, 10) == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * 0.99)))
    assert cfg.lr_at(100, 100, 10) == pytest.approx(0.0, abs=1e-15)
    assert cfg.lr_at(150, 100, 10) == pytest.approx(0.0, abs=1e-15)  # clamped past the end


def test_lr_step() -> None:
    cfg = TrainConfig(lr=0.1, schedule="step", gamma=0.1, milestones=(0.5, 0.75))
    assert [cfg.lr_at(s, 100, 10) for s in (0, 49, 50, 74, 75, 99)] == pytest.approx(
        [0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
    cfg = TrainConfig(lr=1.0, schedule="step", gamma=0.5, milestones=(0.3,))
    assert cfg.lr_at(29, 100, 10) == 1.0 and cfg.lr_at(30, 100, 10) == 0.5


def test_lr_warmup_then_schedule() -> None:
    cfg = TrainConfig(lr=0.1, schedule="cosine", warmup_epochs=2)  # 20 warm-up steps
    assert cfg.lr_at(0, 100, 10) == pytest.approx(0.1 / 20)
    assert cfg.lr_at(9, 100, 10) == pytest.approx(0.1 * 10 / 20)
    assert cfg.lr_at(19, 100, 10) == pytest.approx(0.1)
    assert cfg.lr_at(20, 100, 10) == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * 0.2)))
    half = TrainConfig(lr=0.2, schedule="constant", warmup_epochs=0.5)  # 5 steps of 10
    assert [half.lr_at(s, 100, 10) for s in range(7)] == pytest.approx([0.04, 0.08, 0.12, 0.16, 0.2, 0.2, 0.2])


def test_trainer_follows_the_schedule() -> None:
    trainer = prepare(_spec("full", epochs=2, settings={"train.schedule": "step", "train.milestones": [0.5],
                                                        "train.lr": 0.08}))
    seen = []
    original = trainer.method.before_forward
    trainer.method.before_forward = lambda tr: (seen.append(tr.optimizer.param_groups[0]["lr"]), original(tr))
    trainer.fit()
    per_epoch = trainer.steps_per_epoch
    assert seen == pytest.approx([0.08] * per_epoch + [0.008] * per_epoch)


@pytest.mark.parametrize("lr", [float("inf"), float("nan"), 0.0, -1.0])
def test_learning_rate_must_be_finite_and_positive(lr: float) -> None:
    from rank_search.engine import TrainConfig

    with pytest.raises(RankSearchError, match="train.lr must be a finite number > 0"):
        TrainConfig(lr=lr)


def test_run_spec_settings_may_be_null_but_not_a_list() -> None:
    from rank_search.run import RunSpec

    spec = RunSpec.from_dict({"model": "lenet5", "dataset": "synthetic", "method": "full", "settings": None})
    assert dict(spec.settings) == {}
    with pytest.raises(RankSearchError, match="'settings' in config must map KEY to VALUE"):
        RunSpec.from_dict({"model": "lenet5", "dataset": "synthetic", "method": "full", "settings": [1]})

"""The engine's hooks: the engine runs on ``TrainingHooks`` alone and never loads a method."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import torch
from torch import nn

from rank_search.engine import TrainConfig, Trainer, TrainingHooks

ENGINE = Path(__file__).resolve().parents[2] / "rank_search" / "engine"

CONFIG = TrainConfig(lr=0.05, batch_size=32, device="cpu")
HOOKS = ("validate", "build_model", "on_train_start", "on_epoch_start", "before_forward", "regularization_loss",
         "after_backward", "on_epoch_end", "finalize", "compact_model", "state_dict", "load_state_dict")


def test_every_hook_is_a_documented_no_op(lenet5, synthetic_data) -> None:
    """Each base hook, called as the engine calls it on a real trainer, changes nothing: the
    model's weights and mode, the trainer's step and history, the global RNG stay as they were."""
    for name in HOOKS:
        assert getattr(TrainingHooks, name).__doc__, name
    hooks = TrainingHooks()
    trainer = Trainer(lenet5, hooks, synthetic_data, CONFIG, epochs=1)
    dense = nn.Linear(2, 2)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    rng, step, mode = torch.get_rng_state(), trainer.global_step, trainer.model.training
    calls = {
        "validate": (trainer,), "on_train_start": (trainer,), "on_epoch_start": (trainer, 0),
        "before_forward": (trainer,), "after_backward": (trainer,), "on_epoch_end": (trainer, 0),
        "finalize": (trainer,), "load_state_dict": ({}, trainer),
    }
    for name, args in calls.items():
        assert getattr(hooks, name)(*args) is None, name
    assert hooks.build_model(dense, trainer) is dense
    assert hooks.regularization_loss(trainer) is None and hooks.state_dict() == {}
    assert hooks.compact_model(trainer) is trainer.model
    assert set(calls) | {"build_model", "regularization_loss", "state_dict", "compact_model"} == set(HOOKS)
    assert all(torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())
    assert torch.equal(torch.get_rng_state(), rng) and trainer.global_step == step
    assert trainer.model.training == mode and trainer.history == []


def test_the_bare_hooks_train_the_dense_model(lenet5, synthetic_data) -> None:
    trainer = Trainer(lenet5, TrainingHooks(), synthetic_data, CONFIG, epochs=1)
    before = trainer.model.features[0].weight.detach().clone()
    trainer.fit()
    assert trainer.global_step == 16 and len(trainer.history) == 1
    assert not torch.equal(before, trainer.model.features[0].weight)
    assert trainer.compact_model() is trainer.model


class _RandomCompact(TrainingHooks):
    """A compact model whose construction draws from the global RNG (a new layer's init)."""

    def compact_model(self, trainer) -> nn.Module:
        nn.Linear(8, 8)
        torch.rand(3)
        return trainer.model


def test_building_the_compact_model_leaves_the_rng_alone(lenet5, synthetic_data) -> None:
    trainer = Trainer(lenet5, _RandomCompact(), synthetic_data, CONFIG, epochs=1)
    rng = torch.get_rng_state()
    trainer.compact_model()
    assert torch.equal(rng, torch.get_rng_state())


def test_the_engine_never_imports_a_method() -> None:
    for path in sorted(ENGINE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):  # function bodies included
            if isinstance(node, ast.ImportFrom):
                module = "." * node.level + (node.module or "")
                names = [alias.name for alias in node.names]
                assert "methods" not in module.split(".") and "methods" not in names, (path.name, module)
            elif isinstance(node, ast.Import):
                assert all("methods" not in alias.name.split(".") for alias in node.names), path.name
    code = ("import sys, rank_search.engine\n"
            "print(sorted(m for m in sys.modules if m.startswith('rank_search.methods')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"

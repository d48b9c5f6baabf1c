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


def test_every_hook_is_a_documented_no_op() -> None:
    for name in HOOKS:
        hook = getattr(TrainingHooks, name)
        assert hook.__doc__ and hook.__doc__.strip(), name
    hooks, model = TrainingHooks(), nn.Linear(2, 2)
    assert hooks.build_model(model, None) is model
    assert hooks.regularization_loss(None) is None and hooks.state_dict() == {}


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

"""The hooks the training engine calls, as a base class of no-ops (method plugins subclass it).

Hook order, per run:
    validate -> build_model -> on_train_start -> for each epoch:
        on_epoch_start -> for each iteration: before_forward, [forward + regularization_loss],
        backward, after_backward, optimizer step -> on_epoch_end
    -> finalize -> compact_model

Only the forward pass runs under autocast (``train.amp``): every hook, ``regularization_loss``
included, runs outside it on the float32 weights, and ``after_backward`` sees the true
gradients (unscaled first under ``train.amp=fp16``).

A resumed run calls ``validate`` and ``build_model``, then ``load_state_dict`` instead of
``on_train_start``. ``compact_model`` may also be called at any epoch end.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

import torch
from torch import nn

if TYPE_CHECKING:
    from .trainer import Trainer


class TrainingHooks:
    """What the ``Trainer`` calls on its method; every hook here does nothing."""

    def validate(self, trainer: "Trainer") -> None:
        """Check settings against the run (epochs, ...) before anything is trained."""

    def build_model(self, dense: nn.Module, trainer: "Trainer") -> nn.Module:
        """The module to train, built from (a copy of) the freshly initialised dense model."""
        return dense

    def on_train_start(self, trainer: "Trainer") -> None:
        """Once, before the first iteration of a run that is not resumed."""

    def on_epoch_start(self, trainer: "Trainer", epoch: int) -> None:
        """Before the first iteration of epoch ``epoch`` (0-based)."""

    def before_forward(self, trainer: "Trainer") -> None:
        """Before the forward pass of every iteration (``trainer.global_step`` steps done)."""

    def regularization_loss(self, trainer: "Trainer") -> torch.Tensor | None:
        """A term added to the iteration's loss, or None for none."""
        return None

    def after_backward(self, trainer: "Trainer") -> None:
        """After the backward pass, before the optimizer step (e.g. to edit gradients)."""

    def on_epoch_end(self, trainer: "Trainer", epoch: int) -> None:
        """After the last optimizer step of epoch ``epoch`` (0-based)."""

    def finalize(self, trainer: "Trainer") -> None:
        """The last operation before conversion (e.g. a final projection)."""

    def compact_model(self, trainer: "Trainer") -> nn.Module:
        """The compact model of the current state; must not change the training state (the
        trainer keeps the RNG state for it)."""
        return trainer.model

    def state_dict(self) -> dict[str, Any]:
        """The hooks' own state, saved with the trainer's (``weights_only``-safe values)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any], trainer: "Trainer") -> None:
        """Restore ``state_dict()``; may rebuild ``trainer.model``'s structure before its weights load."""

"""`posthoc`: train dense, decompose with the plan, fine-tune (METHODS.md section 6).

The epoch budget is shared: ``epochs - finetune_epochs`` dense epochs, then the decomposition
(policies resolved on the trained weights), then ``finetune_epochs`` epochs of the compact
model; the learning-rate schedule runs on across the switch.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import RankSearchError
from ..surgery import compress
from ._registry import register_method
from .base import Method


@dataclass(frozen=True)
class PosthocKnobs:
    """Attributes:
    finetune_epochs: epochs of fine-tuning after the decomposition (taken from the budget).
    """

    finetune_epochs: int = 1

    def __post_init__(self) -> None:
        if self.finetune_epochs < 0:
            raise RankSearchError(f"posthoc.finetune_epochs must be >= 0, got {self.finetune_epochs}")


@register_method
class Posthoc(Method):
    name = "posthoc"
    Knobs = PosthocKnobs

    def __init__(self, knobs=None, *, ranks=None, scheme=None) -> None:
        super().__init__(knobs, ranks=ranks, scheme=scheme)
        self.phase = "dense"

    def validate(self, trainer) -> None:
        if self.knobs.finetune_epochs >= trainer.epochs:
            raise RankSearchError(
                f"posthoc.finetune_epochs must be < epochs ({trainer.epochs}), got {self.knobs.finetune_epochs}"
            )

    def _decompose(self, trainer) -> None:
        self.plan = self.current_plan(trainer.model)  # energy/value specs: on the trained weights
        trainer.set_model(compress(trainer.model, self.plan))
        self.phase = "finetune"

    def on_epoch_start(self, trainer, epoch: int) -> None:
        if self.phase == "dense" and epoch >= trainer.epochs - self.knobs.finetune_epochs:
            self._decompose(trainer)

    def finalize(self, trainer) -> None:
        if self.phase == "dense":  # finetune_epochs = 0: decompose at the very end
            self._decompose(trainer)

    def compact_model(self, trainer):
        if self.phase == "finetune":
            return trainer.model
        # Mid dense phase: what decomposing now (without fine-tuning) would give; the plan of
        # record is settled only at the real decomposition.
        return compress(trainer.model, self.current_plan(trainer.model))

    def state_dict(self):
        return {**super().state_dict(), "phase": self.phase}

    def load_state_dict(self, state, trainer) -> None:
        super().load_state_dict(state, trainer)
        self.phase = state["phase"]
        if self.phase == "finetune":
            trainer.set_model(compress(trainer.model, self.plan))

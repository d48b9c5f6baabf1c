"""Method plugins: a base class with no-op hooks, one small file per method (STYLE habit 3).

Hook order, per run:
    build_model -> on_train_start -> for each epoch:
        on_epoch_start -> for each iteration: before_forward, [forward + regularization_loss],
        backward, after_backward, optimizer step -> on_epoch_end
    -> finalize -> compact_model
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Mapping

import torch
from torch import nn

from ..overrides import replace_validated
from ..plan import RankPlan, build_plan

if TYPE_CHECKING:
    from ..engine.trainer import Trainer


@dataclass(frozen=True)
class NoKnobs:
    pass


class Method:
    """Base method: dense training, no compression. Subclasses override what they need.

    Attributes:
        name: registry name, also the ``--set NAME.knob=...`` prefix.
        Knobs: frozen dataclass of the method's settings.
        default_scheme: scheme used when the user gives none.
        uses_plan: whether ``--ranks`` means anything to this method.
        default_ranks: the rank spec used when the user gives none.
    """

    name: ClassVar[str] = "base"
    Knobs: ClassVar[type] = NoKnobs
    default_scheme: ClassVar[str] = "channel"
    uses_plan: ClassVar[bool] = True
    default_ranks: ClassVar[str] = "ratio:0.5"

    def __init__(self, knobs: Mapping[str, Any] | None = None, *, ranks: Any = None, scheme: str | None = None) -> None:
        self.knobs = replace_validated(self.Knobs(), dict(knobs or {}), prefix=f"{self.name}.")
        self.ranks = ranks if ranks is not None else self.default_ranks
        self.scheme = scheme or self.default_scheme
        self.plan: RankPlan | None = None

    # ---- plan ----
    def resolve_plan(self, model: nn.Module) -> RankPlan:
        """Resolve the rank spec against ``model``'s current weights and remember it."""
        self.plan = build_plan(model, self.ranks, scheme=self.scheme)
        return self.plan

    def validate(self, trainer: "Trainer") -> None:
        """Check knobs against the run (epochs, ...) before anything is trained."""

    # ---- hooks ----
    def build_model(self, dense: nn.Module, trainer: "Trainer") -> nn.Module:
        """The module to train, built from the freshly initialised dense model."""
        return dense

    def on_train_start(self, trainer: "Trainer") -> None:
        pass

    def on_epoch_start(self, trainer: "Trainer", epoch: int) -> None:
        pass

    def before_forward(self, trainer: "Trainer") -> None:
        pass

    def regularization_loss(self, trainer: "Trainer") -> torch.Tensor | None:
        return None

    def after_backward(self, trainer: "Trainer") -> None:
        pass

    def on_epoch_end(self, trainer: "Trainer", epoch: int) -> None:
        pass

    def finalize(self, trainer: "Trainer") -> None:
        """The last operation before conversion (e.g. a final projection)."""

    def compact_model(self, trainer: "Trainer") -> nn.Module:
        """The compact model of the current state; must not change the training state."""
        return trainer.model

    # ---- state ----
    def state_dict(self) -> dict[str, Any]:
        return {"plan": self.plan.to_dict() if self.plan is not None else None}

    def load_state_dict(self, state: Mapping[str, Any], trainer: "Trainer") -> None:
        """Restore method state; may rebuild ``trainer.model``'s structure before its weights load."""
        if state.get("plan") is not None:
            self.plan = RankPlan.from_dict(state["plan"])

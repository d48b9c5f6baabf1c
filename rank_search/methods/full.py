"""`full`: dense training, no compression (the reference accuracy)."""
from __future__ import annotations

from ..plan import RankPlan
from ._registry import register_method
from .base import Method


@register_method
class Full(Method):
    name = "full"
    uses_plan = False

    def plan_for(self, model, spec=None) -> RankPlan:
        return RankPlan()  # nothing is compressed

    def on_train_start(self, trainer) -> None:
        self.plan = self.current_plan(trainer.model)

"""`full`: dense training, no compression (the reference accuracy)."""
from __future__ import annotations

from ._registry import register_method
from .base import Method


@register_method
class Full(Method):
    name = "full"
    uses_plan = False

    def resolve_plan(self, model):
        from ..plan import RankPlan

        self.plan = RankPlan()
        return self.plan

    def on_train_start(self, trainer) -> None:
        self.resolve_plan(trainer.model)

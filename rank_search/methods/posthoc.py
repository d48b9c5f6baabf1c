"""`posthoc`: train dense, decompose with the plan, fine-tune (METHODS.md section 6).

From scratch the epoch budget is shared: ``epochs - finetune_epochs`` dense epochs, then the
decomposition (policies resolved on the trained weights), then ``finetune_epochs`` epochs of the
compact model; the learning-rate schedule runs on across the switch. From trained dense weights
(``init: dense`` and a run that has them: `train --init`, a sweep's dense reference) the
decomposition comes first and every epoch fine-tunes. ``init_decomposition: data`` decomposes
each layer by its output error on training images drawn through the trained dense model.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..decomp import full_precision
from ..errors import RankSearchError
from ..surgery import check_data_aware, compress
from ._registry import register_method
from .base import Method, check_init, check_init_decomposition, decompose_trained


@dataclass(frozen=True)
class PosthocKnobs:
    """Attributes:
    finetune_epochs: epochs of fine-tuning after the decomposition (taken from the budget;
        from trained dense weights every epoch fine-tunes and this is not used).
    init: ``dense`` (the paper's choice: decompose a trained network) uses the run's trained
        dense weights when it has them; ``scratch`` always trains the dense phase first.
    bn_recalibrate: after the decomposition, re-estimate every BatchNorm's running statistics
        on ``bn_images`` training images (no gradient) before fine-tuning.
    init_decomposition: ``weight`` (each layer's weight error), ``data`` (each layer's output
        error on ``calibration_images`` training images drawn through the trained dense model;
        schemes ``channel`` and ``tucker2``) or ``data_sequential`` (each layer fitted on the
        inputs it gets once the layers before it are compressed):
        ``methods.base.check_init_decomposition``.
    """

    finetune_epochs: int = 1
    init: str = "dense"
    bn_recalibrate: bool = False
    bn_images: int = 512
    init_decomposition: str = "weight"
    calibration_images: int = 256

    def __post_init__(self) -> None:
        check_init("posthoc", self.init)
        check_init_decomposition("posthoc", self.init_decomposition, self.calibration_images)
        if self.bn_images < 1:
            raise RankSearchError(f"posthoc.bn_images must be >= 1, got {self.bn_images}")
        if self.finetune_epochs < 0:
            raise RankSearchError(f"posthoc.finetune_epochs must be >= 0, got {self.finetune_epochs}")


@register_method
class Posthoc(Method):
    name = "posthoc"
    Knobs = PosthocKnobs

    def __init__(self, knobs=None, *, ranks=None, scheme=None) -> None:
        super().__init__(knobs, ranks=ranks, scheme=scheme)
        self.phase = "dense"

    @property
    def from_dense(self) -> bool:
        """Whether the run starts from trained dense weights (then every epoch fine-tunes)."""
        return self.initialized and self.knobs.init == "dense"

    def validate(self, trainer) -> None:
        if self.knobs.init_decomposition != "weight":
            check_data_aware(self.plan if self.plan is not None else self.plan_for(trainer.dense))
        if not self.from_dense and self.knobs.finetune_epochs >= trainer.epochs:
            raise RankSearchError(
                f"posthoc.finetune_epochs must be < epochs ({trainer.epochs}), got {self.knobs.finetune_epochs}"
            )

    @full_precision()
    def _decompose(self, trainer) -> None:
        self.plan = self.current_plan(trainer.model)  # energy/value specs: on the trained weights
        model = decompose_trained(trainer, self.plan, init_decomposition=self.knobs.init_decomposition,
                                  images=self.knobs.calibration_images)
        if self.knobs.bn_recalibrate:
            from ..engine.batchnorm import reestimate_batchnorm

            reestimate_batchnorm(model, trainer.data.train, images=self.knobs.bn_images, device=trainer.device)
        trainer.set_model(model)
        self.phase = "finetune"

    def on_epoch_start(self, trainer, epoch: int) -> None:
        if self.phase == "dense" and (self.from_dense or epoch >= trainer.epochs - self.knobs.finetune_epochs):
            self._decompose(trainer)

    def finalize(self, trainer) -> None:
        if self.phase == "dense":  # finetune_epochs = 0: decompose at the very end
            self._decompose(trainer)

    def compact_model(self, trainer):
        if self.phase == "finetune":
            return trainer.model
        # Mid dense phase: what decomposing now (without fine-tuning) would give; the plan of
        # record is settled only at the real decomposition.
        return decompose_trained(trainer, self.current_plan(trainer.model),
                                 init_decomposition=self.knobs.init_decomposition,
                                 images=self.knobs.calibration_images)

    def state_dict(self):
        return {**super().state_dict(), "phase": self.phase}

    def load_state_dict(self, state, trainer) -> None:
        super().load_state_dict(state, trainer)
        self.phase = state["phase"]
        if self.phase == "finetune":
            trainer.set_model(compress(trainer.model, self.plan))

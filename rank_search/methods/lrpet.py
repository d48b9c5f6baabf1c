"""`lrpet`: Low-Rank Projection with Energy Transfer (Guo et al., TNNLS 2024; METHODS.md section 3).

The dense model trains freely in Euclidean space; every ``interval`` epochs (or iterations)
each planned layer's ``channel`` matrix is projected to its plan rank k with BN
rectification and energy transfer (the math is in ``_lrpet_ops``). The last operation before
conversion is a projection to rank exactly k (beta tail dropped), so the compact model
(``surgery.compress`` with the plan) computes what the projected dense model computes.

Ranks come from the plan (``--ranks``, default ``ratio:0.5``), fixed from the train start on.
The paper's ``p`` is the *pruned* fraction with ``k = int(n (1 - p))``: use
``--ranks ratio:1-p`` (p = 0.6 -> ``ratio:0.4``). Our ratio rounds up (ceil, at least 1), so a
layer may keep one more singular value than ``int(n (1 - p))`` when ``n (1 - p)`` is
fractional; a plan.yaml with integer ranks gives the paper's k exactly.
"""
from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass

import torch

from ..decomp import full_precision
from ..engine.trainer import rng_devices
from ..errors import RankSearchError
from ..layers import ChannelFactorized
from ..plan import candidate_layers
from ..surgery import compress
from ._lrpet_ops import bn_scale, following_batchnorms, project_matrices
from ._registry import register_method
from .base import Method, check_init, check_svd, svd_randomized

INTERVAL_UNITS = ("epoch", "iter")


@dataclass(frozen=True)
class LRPETKnobs:
    """Attributes:
    interval: project every ``interval`` units of training (paper: every epoch on CIFAR,
        every 250 iterations on ImageNet).
    interval_unit: ``epoch`` (default; projection at the end of every ``interval``-th epoch)
        or ``iter`` (projection before the forward pass of every global iteration that is a
        positive multiple of ``interval``, i.e. after ``interval`` optimizer steps).
    energy_transfer: rescale the kept singular values so ``||diag(a) M||_F`` is preserved.
        Off: ``alpha = 1``, i.e. plain truncation (beta = 0) or an uncompensated soft
        truncation (beta > 0) *(our choice: the knobs stay orthogonal)*.
    beta: factor kept on the tail singular values during training, in [0, 1]. With beta > 0
        the projected weights are not rank k; the final projection uses beta = 0 *(our
        choice)*, transferring the tail's energy (when energy_transfer is on).
    bn_rectification: measure the low-rank error through the following BatchNorm's scale.
        Layers without a BatchNorm (or whose BatchNorm keeps no running stats) use a = 1.
    init: ``scratch`` (the paper's choice) or ``dense``: in a sweep, whether trials start from
        the sweep's dense reference.
    svd: ``exact`` (default: the paper's and the authors' code's SVD) or ``randomized``
        (``torch.svd_lowrank`` where k is far below the layer size: cheaper on big layers, but
        the projected weights differ from the exact SVD's; under a forked RNG).
    """

    interval: int = 1
    interval_unit: str = "epoch"
    energy_transfer: bool = True
    beta: float = 0.0
    bn_rectification: bool = True
    init: str = "scratch"
    svd: str = "exact"

    def __post_init__(self) -> None:
        check_init("lrpet", self.init)
        check_svd("lrpet", self.svd)
        if isinstance(self.interval, bool) or not isinstance(self.interval, int) or self.interval < 1:
            raise RankSearchError(f"lrpet.interval must be an integer >= 1, got {self.interval!r}")
        if self.interval_unit not in INTERVAL_UNITS:
            raise RankSearchError(
                f"lrpet.interval_unit must be one of {', '.join(INTERVAL_UNITS)}, got {self.interval_unit!r}"
            )
        if isinstance(self.beta, bool) or not isinstance(self.beta, (int, float)) or not 0.0 <= self.beta <= 1.0:
            raise RankSearchError(f"lrpet.beta must be a number in [0, 1], got {self.beta!r}")
        for knob in ("energy_transfer", "bn_rectification"):
            if not isinstance(getattr(self, knob), bool):
                raise RankSearchError(f"lrpet.{knob} must be true or false, got {getattr(self, knob)!r}")


@register_method
class LRPET(Method):
    """Projection schedule *(our choices)*: no projection at initialisation (training starts
    from the dense init); with ``epoch`` units the projection due at the last epoch's end is
    the final one (``finalize``: beta = 0, and a layer with ``s_1 < 1e-4`` gets a plain
    rank-k truncation instead of being skipped, so every layer ends at rank <= k). The
    final projection is skipped when the weights already are the result of an exact (beta = 0,
    nothing skipped) projection at the same step: re-projecting would only shrink rows by
    ``a^2 / (a^2 + 1e-5)``. Optimizer momentum is kept across projections.
    ``compact_model`` during training projects a deep copy the final way (RNG untouched).
    """

    name = "lrpet"
    Knobs = LRPETKnobs
    supported_schemes = ("channel",)

    def __init__(self, knobs=None, *, ranks=None, scheme=None) -> None:
        super().__init__(knobs, ranks=ranks, scheme=scheme)
        self.bn_map: dict[str, str | None] | None = None
        self.last_projection_step = -1  # global step of the last in-place projection
        self.last_projection_exact = False  # it left every layer at rank <= k

    # ---- hooks ----
    def on_train_start(self, trainer) -> None:
        self.plan = self.current_plan(trainer.model)  # fixed from here; a resumed run restores it
        if self.knobs.bn_rectification:
            self._batchnorms(trainer)

    def before_forward(self, trainer) -> None:
        step = trainer.global_step
        if self.knobs.interval_unit == "iter" and step > 0 and step % self.knobs.interval == 0:
            self._project_in_place(trainer, final=False)

    def on_epoch_end(self, trainer, epoch: int) -> None:
        done = epoch + 1
        if self.knobs.interval_unit == "epoch" and done % self.knobs.interval == 0 and done < trainer.epochs:
            self._project_in_place(trainer, final=False)

    def finalize(self, trainer) -> None:
        if not self._is_exact(trainer):
            self._project_in_place(trainer, final=True)

    def compact_model(self, trainer):
        if self.plan is None:
            self.resolve_plan(trainer.model)
        if self._is_exact(trainer):
            return compress(trainer.model, self.plan)
        model = copy.deepcopy(trainer.model)
        self._project_weights(model, trainer, final=True)
        return compress(model, self.plan)

    # ---- projection ----
    def _is_exact(self, trainer) -> bool:
        return self.last_projection_exact and self.last_projection_step == trainer.global_step

    def _batchnorms(self, trainer) -> dict[str, str | None]:
        if self.bn_map is None:
            if self.plan is None:
                self.resolve_plan(trainer.model)
            param = next(trainer.model.parameters())
            example = torch.zeros((2, *trainer.input_shape), device=param.device, dtype=param.dtype)
            self.bn_map = following_batchnorms(trainer.model, example, list(self.plan))
        return self.bn_map

    def _project_in_place(self, trainer, *, final: bool) -> None:
        self.last_projection_exact = self._project_weights(trainer.model, trainer, final=final)
        self.last_projection_step = trainer.global_step

    @torch.no_grad()
    @full_precision()
    def _project_weights(self, model, trainer, *, final: bool) -> bool:
        """Project every planned layer of ``model`` in place; True when all end at rank <= k."""
        if self.plan is None:
            self.resolve_plan(trainer.model)
        layers = candidate_layers(model)
        names = list(self.plan)
        bns = self._batchnorms(trainer) if self.knobs.bn_rectification else {}
        scales = [bn_scale(model.get_submodule(bns[n])) if bns.get(n) else None for n in names]
        weights = [layers[n].weight for n in names]
        beta = 0.0 if final else self.knobs.beta
        randomized = svd_randomized(self.knobs.svd)
        # The exact SVD draws no random numbers; a randomized one must not move the training RNG.
        with contextlib.ExitStack() as stack:
            if randomized is not False:
                stack.enter_context(torch.random.fork_rng(devices=rng_devices(model)))
            new = project_matrices(
                [ChannelFactorized.matrix(w.detach()) for w in weights],
                [int(self.plan[n].rank) for n in names],
                scales=scales,
                beta=beta,
                energy_transfer=self.knobs.energy_transfer,
                degenerate="truncate" if final else "skip",
                randomized=randomized,
            )
        for w, m in zip(weights, new):
            if m is not None:
                w.copy_(m.reshape(w.shape))
        return beta == 0.0 and all(m is not None for m in new)

    # ---- state ----
    def state_dict(self):
        return {
            **super().state_dict(),
            "bn_map": dict(self.bn_map) if self.bn_map is not None else None,
            "last_projection_step": self.last_projection_step,
            "last_projection_exact": self.last_projection_exact,
        }

    def load_state_dict(self, state, trainer) -> None:
        super().load_state_dict(state, trainer)
        self.bn_map = dict(state["bn_map"]) if state.get("bn_map") is not None else None
        self.last_projection_step = int(state.get("last_projection_step", -1))
        self.last_projection_exact = bool(state.get("last_projection_exact", False))

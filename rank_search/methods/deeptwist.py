"""`deeptwist`: periodic weight distortion by low-rank approximation (Lee et al. 2019; METHODS.md section 4).

The dense model trains normally. Every ``distortion_step`` (S_D) iterations each planned weight is
replaced by its low-rank reconstruction (decompose, multiply back) under ``no_grad``: Tucker-2
for convolutions (``tucker2``), or DeepTwist's tiled 2-D SVD of the lowered matrix (``tiled``);
Linear layers and 1x1 convolutions use the plan's ``channel`` fallback under ``tucker2``.

Where the distortion sits: ``before_forward`` of iteration t, for t > 0 and t % S_D == 0. The
weights it distorts are those after exactly t optimizer steps (nothing touches them between the
step and the next ``before_forward``), so this is "distort after every S_D-th step", and the
loss of iteration t is computed at the distorted weights. ``finalize`` distorts once more after
the last step, so training always ends on a distortion: with T iterations in all there are
``(T - 1) // S_D + 1`` distortions. The compact model is ``surgery.compress`` of those distorted
weights, whose decomposition reproduces them exactly (they already have the plan's ranks).

The SVD is exact by default (``svd: exact``, as the paper; ``randomized`` is a knob). Decompositions
never draw from the training RNG stream (they run under a forked RNG, which ``torch.svd_lowrank``
needs); the trajectory between distortions is that of dense training.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..decomp import full_precision
from ..engine.trainer import rng_devices
from ..errors import RankSearchError
from ..layers import get_scheme
from ..plan import candidate_layers
from ..surgery import check_data_aware, compress
from ._registry import register_method
from .base import Method, check_init, check_init_decomposition, check_svd, decompose_trained, svd_randomized


@dataclass(frozen=True)
class DeepTwistKnobs:
    """Attributes:
    distortion_step: S_D, iterations between two weight distortions. The paper uses 200 on
        CIFAR-10 (range 100-5000), about 2 distortions per epoch at 391 iterations per epoch.
        *Our choice*: 100, the low end of that range, which keeps that cadence on the small
        data sets here (mnist5k: 219 iterations per epoch, so 2 epochs distort at 100, 200, 300,
        400 and, finally, 438). With S_D >= the run's length only the final distortion happens,
        which is post-hoc decomposition without fine-tuning.
    tiles: (row tiles, column tiles) of the lowered matrix for the ``tiled`` scheme (default
        [2, 2]); each count is lowered to the largest divisor of the layer's out/in channels.
        Used by policy rank specs (``ratio:0.5``); a plan file's own ``tiles`` win.
    init: ``dense`` (the paper's choice: distort a trained network) starts from the run's
        trained dense weights (`train --init`, a sweep's dense reference); ``scratch`` trains
        from a fresh initialisation in a sweep.
    svd: ``exact`` (default: the paper's SVD, ``torch.linalg.svd`` truncated) or ``randomized``
        (``torch.svd_lowrank`` where the rank is far below the layer size) for the ``channel``
        and ``tiled`` distortions; Tucker-2 always uses tensorly's SVD-initialised HOOI.
    init_decomposition: ``weight`` (the paper's), ``data`` or ``data_sequential``: every distortion
        is the low-rank weight with the least output error on ``calibration_images`` training
        images drawn through the current model (one extra forward pass of them per distortion,
        one per layer for ``data_sequential``; schemes ``channel`` and ``tucker2``):
        ``methods.base.check_init_decomposition``.
    """

    distortion_step: int = 100
    tiles: tuple[int, int] = (2, 2)
    init: str = "dense"
    svd: str = "exact"
    init_decomposition: str = "weight"
    calibration_images: int = 256

    def __post_init__(self) -> None:
        check_init("deeptwist", self.init)
        check_svd("deeptwist", self.svd)
        check_init_decomposition("deeptwist", self.init_decomposition, self.calibration_images)
        s = self.distortion_step
        if isinstance(s, bool) or not isinstance(s, int) or s < 1:
            raise RankSearchError(f"deeptwist.distortion_step must be an integer >= 1, got {s!r}")
        t = self.tiles
        if (not isinstance(t, (tuple, list)) or len(t) != 2
                or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in t)):
            raise RankSearchError(f"deeptwist.tiles must be two integers >= 1 (row tiles, column tiles), got {t!r}")
        object.__setattr__(self, "tiles", tuple(t))


@register_method
class DeepTwist(Method):
    name = "deeptwist"
    Knobs = DeepTwistKnobs
    default_scheme = "tucker2"
    #: ``channel`` is the untiled 2-D SVD (a [1, 1] tile grid), which the plan also uses for
    #: Linear layers and 1x1 convolutions under ``tucker2``.
    supported_schemes = ("tucker2", "tiled", "channel")

    def __init__(self, knobs=None, *, ranks=None, scheme=None) -> None:
        super().__init__(knobs, ranks=ranks, scheme=scheme)
        self.distortions = 0  # distortions done so far, the final one included
        self.last_distortion_step = -1  # trainer.global_step of the last distortion

    # ---- plan ----
    @property
    def uniform_tiles(self) -> tuple[int, int]:
        return self.knobs.tiles

    # ---- distortion ----
    @torch.no_grad()
    @full_precision()
    def distort(self, trainer) -> None:
        """Replace every planned weight of ``trainer.model`` by its low-rank reconstruction,
        in place, on the weight's device."""
        model = trainer.model
        layers = candidate_layers(model)
        randomized = svd_randomized(self.knobs.svd)
        fitted = None
        if self.knobs.init_decomposition != "weight":  # the output-error optimum, multiplied back
            fitted = decompose_trained(trainer, self.plan, init_decomposition=self.knobs.init_decomposition,
                                       images=self.knobs.calibration_images)
        # The exact SVD draws no random numbers; the fork keeps the training stream untouched
        # whatever a decomposition does (a randomized SVD draws from the global RNG).
        with torch.random.fork_rng(devices=rng_devices(model)):
            for name, lp in self.plan.items():
                weight = layers[name].weight
                if fitted is not None:
                    weight.copy_(fitted.get_submodule(name).to_dense_weight().reshape(weight.shape))
                else:
                    weight.copy_(get_scheme(lp.scheme).project(weight.detach(), lp.rank, tiles=lp.tiles,
                                                               randomized=randomized))
        self.distortions += 1
        self.last_distortion_step = trainer.global_step

    # ---- hooks ----
    def validate(self, trainer) -> None:
        if self.knobs.init_decomposition != "weight":
            check_data_aware(self.plan if self.plan is not None else self.plan_for(trainer.dense))

    def on_train_start(self, trainer) -> None:
        self.plan = self.current_plan(trainer.model)  # fixed from here; a resumed run restores it
        if self.knobs.init_decomposition != "weight":
            check_data_aware(self.plan)

    def before_forward(self, trainer) -> None:
        t = trainer.global_step
        if t > 0 and t % self.knobs.distortion_step == 0:
            self.distort(trainer)

    def finalize(self, trainer) -> None:
        # Training ends on a distortion; the guard keeps a repeated finalize from re-distorting.
        if self.last_distortion_step != trainer.global_step:
            self.distort(trainer)

    def compact_model(self, trainer) -> nn.Module:
        """Compact model of the current weights: exact after ``finalize``; mid-training, the plan's
        truncation of the current weights (what stopping now would give). Training state is untouched."""
        if self.plan is None:
            raise RankSearchError("deeptwist has no rank plan yet: compact_model is called before training starts")
        return compress(trainer.model, self.plan)

    # ---- state ----
    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "distortions": self.distortions,
                "last_distortion_step": self.last_distortion_step}

    def load_state_dict(self, state, trainer) -> None:
        super().load_state_dict(state, trainer)
        self.distortions = int(state["distortions"])
        self.last_distortion_step = int(state["last_distortion_step"])

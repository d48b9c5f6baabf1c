"""`elrt`: Efficient Low-Rank Training (Sui et al., 2024; METHODS.md section 5).

The model is built factorized from the start, exactly as the `factorized` baseline does
(orthonormal factors from the decomposed random dense init, norm-preserving), and trained
directly: no full-size weight exists, let alone is updated. Each iteration adds

    rho * sum over the factor matrices U of the planned layers of R(U)

to the loss, with R one of the orthogonality regularizers of ``_orthogonality`` and the Gram
taken r x r (``FactorizedLayer.factor_matrices``: Tucker-2 -> U_out, U_in; channel -> V).
With ``rho = 0`` no term is added and the run is the `factorized` baseline, bit for bit.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from ..errors import RankSearchError
from ..layers import FactorizedLayer
from ._orthogonality import REGULARIZERS, get_regularizer, orthogonality_penalty
from ._registry import register_method
from .factorized import Factorized

if TYPE_CHECKING:
    from ..engine.trainer import Trainer


@dataclass(frozen=True)
class ELRTKnobs:
    """Attributes:
    regularizer: ``so``, ``dso`` (ELRT's choice), ``srip`` or ``mc`` (see ``_orthogonality``).
        ``dso`` of a tall factor with orthonormal columns is ``m - r``, a constant that
        leaves the gradient (twice SO's) unchanged.
    rho: weight of the regularizer, >= 0. No published default: 1e-3 is *our choice*, the
        middle of the log range 1e-4 .. 1e-1 that the search explores; 0 gives `factorized`.
    srip_iters: power-iteration steps of ``srip`` (2, as SRIP), from a fixed seeded start
        vector, under ``no_grad``: deterministic and stateless, so a resume needs nothing more.
    """

    regularizer: str = "dso"
    rho: float = 1e-3
    srip_iters: int = 2

    def __post_init__(self) -> None:
        if self.regularizer not in REGULARIZERS:
            raise RankSearchError(
                f"elrt.regularizer must be one of {', '.join(REGULARIZERS.names())}, got {self.regularizer!r}"
            )
        if not (math.isfinite(self.rho) and self.rho >= 0):
            raise RankSearchError(f"elrt.rho must be a finite number >= 0, got {self.rho}")
        if self.srip_iters < 1:
            raise RankSearchError(f"elrt.srip_iters must be >= 1, got {self.srip_iters}")


@register_method
class ELRT(Factorized):
    name = "elrt"
    Knobs = ELRTKnobs
    default_scheme = "tucker2"
    #: The schemes whose factor matrices ELRT regularizes (spatial/tiled factors are not its format).
    supported_schemes = ("tucker2", "channel")

    def __init__(self, knobs=None, *, ranks=None, scheme=None) -> None:
        super().__init__(knobs, ranks=ranks, scheme=scheme)
        self._regularizer = get_regularizer(self.knobs.regularizer, srip_iters=self.knobs.srip_iters)
        self._layers_of: tuple[nn.Module, list[FactorizedLayer]] | None = None

    def factorized_layers(self, model: nn.Module) -> list[FactorizedLayer]:
        """The planned layers of ``model`` (cached per model object: looked up every iteration)."""
        if self._layers_of is None or self._layers_of[0] is not model:
            layers = [model.get_submodule(name) for name in self.plan]
            if not all(isinstance(m, FactorizedLayer) for m in layers):
                raise RankSearchError("elrt: the trained model's planned layers are not factorized")
            self._layers_of = (model, layers)
        return self._layers_of[1]

    def regularization_loss(self, trainer: "Trainer") -> torch.Tensor | None:
        if self.knobs.rho == 0 or not self.plan:
            return None
        factors = [u for layer in self.factorized_layers(trainer.model) for u in layer.factor_matrices()]
        return self.knobs.rho * orthogonality_penalty(factors, self._regularizer)

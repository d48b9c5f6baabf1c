"""`factorized`: the low-rank model trained from scratch, no regularizer (ELRT with rho = 0).

Initialisation *(our choice)*: the freshly initialised dense weights are decomposed with the
plan so that input-side factors are orthonormal (Tucker-2 factors, or V of the SVD) and
then the output-side factor is rescaled so each layer keeps the Frobenius norm of the
standard dense initialisation (truncation alone would shrink the activations).
"""
from __future__ import annotations

import torch

from ..decomp import full_precision
from ..layers import FactorizedLayer
from ..plan import candidate_layers
from ..surgery import compress
from ._registry import register_method
from .base import Method


@full_precision()
def norm_preserving_factorize(dense, plan):
    """Compact model from ``dense``'s current weights, each factorized layer rescaled to the
    dense layer's Frobenius norm, input-side factors orthonormal."""
    compact = compress(dense, plan, balance=False)
    dense_layers = candidate_layers(dense)
    with torch.no_grad():
        for name in plan:
            layer = compact.get_submodule(name)
            assert isinstance(layer, FactorizedLayer)
            target = dense_layers[name].weight.norm()
            current = layer.to_dense_weight().norm()
            if current > 0:
                layer.rescale_(float(target / current))
    return compact


@register_method
class Factorized(Method):
    name = "factorized"
    default_scheme = "tucker2"

    def build_model(self, dense, trainer):
        self.plan = self.current_plan(dense)
        return norm_preserving_factorize(dense, self.plan)

    def load_state_dict(self, state, trainer) -> None:
        super().load_state_dict(state, trainer)
        # The model object built at construction already has the plan's structure.

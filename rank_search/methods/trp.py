"""`trp`: Trained Rank Pruning (Xu et al., IJCAI 2020; METHODS.md section 2).

The dense model is trained, but every ``interval`` iterations each planned weight is replaced
(under no_grad, before the forward pass) by its truncated SVD in the scheme's matrix, so the
loss and gradients are taken at low-rank weights. After the backward pass of each projection
iteration the stochastic sub-gradient of ``nuclear_weight * ||W||_*``, ``lambda * U_r V_r^T``,
is added to the gradient (the authors' code: ``batch_idx % period == 0``; ``subgradient:
iteration`` adds it after every backward pass instead). The run ends with a projection at the
final rank spec (default ``value:0.05``, the authors' conversion threshold); the weights are then
exactly low-rank and the conversion to the compact model is exact. Compression is an outcome of
the training, measured from the compact model.

Rank specs are policies resolved against the *current* weights at every projection
(``energy:0.9`` re-picks ranks each time, ``ratio:0.25`` gives fixed ranks); a plan
(YAML, mapping) gives fixed ranks.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..decomp import RankPolicy, batched_truncated_svd, full_precision, parse_rank_policy
from ..errors import RankSearchError
from ..layers import ChannelFactorized, SpatialFactorized
from ..plan import RankPlan
from ..surgery import compress
from ._registry import register_method
from .base import Method, check_init, is_plan_file, ranks_follow_weights, spectrum_policy

# name -> (U_r [rows, r], Vh_r [r, cols]) of the last SVD, on the weights' device
Factors = dict[str, tuple[torch.Tensor, torch.Tensor]]

#: When the nuclear sub-gradient is added: on projection iterations only (the authors' code), or
#: after every backward pass with the factors of the last projection (or fresh ones).
SUBGRADIENT_MODES = ("projection", "iteration")
#: The authors' final conversion threshold: singular values below it are dropped.
AUTHORS_FINAL_RANKS = "value:0.05"


@dataclass(frozen=True)
class TRPKnobs:
    """Attributes:
    interval: projection period m in iterations (iteration t projects when t % m == 0);
        default 5, as in the paper's scripts. The code's default, and the period of the
        README's anchor runs, is 1 (``trp.interval=1``).
    nuclear_weight: lambda of the nuclear-norm sub-gradient ``lambda * U_r V_r^T`` added to
        the gradient (README: 3e-4); 0 disables it.
    subgradient: when it is added: ``projection`` (default, the authors' code: after the
        backward pass of each projection iteration, with that projection's factors) or
        ``iteration`` (after every backward pass; between projections with the last factors,
        which multiplies the effective weight by ``interval``).
    final_ranks: rank spec of the final projection and conversion; default ``value:0.05``
        (the authors' code: the trained weights are low-rank, so a small value threshold drops
        only what training left near zero); e.g. ``energy:0.9`` or a plan .yaml; empty/None =
        the training rank spec (``--ranks``), which keeps fixed training ranks as they are.
    fresh_subgradient: with ``subgradient: iteration``, on iterations without a projection take
        U_r, V_r from a fresh SVD of the current weights (at the ranks of the last projection)
        instead of reusing the factors of the last projection; default False *(our choice:
        cheaper, and the factors change little within an interval)*.
    init: ``scratch`` (the paper's choice: TRP trains from scratch) or ``dense``: in a sweep,
        whether trials start from the sweep's dense reference.
    """

    interval: int = 5
    nuclear_weight: float = 3e-4
    final_ranks: str | None = AUTHORS_FINAL_RANKS
    fresh_subgradient: bool = False
    init: str = "scratch"
    subgradient: str = "projection"

    def __post_init__(self) -> None:
        check_init("trp", self.init)
        if isinstance(self.interval, bool) or not isinstance(self.interval, int) or self.interval < 1:
            raise RankSearchError(f"trp.interval must be an integer >= 1, got {self.interval!r}")
        if not (isinstance(self.nuclear_weight, (int, float)) and math.isfinite(self.nuclear_weight)
                and self.nuclear_weight >= 0):
            raise RankSearchError(f"trp.nuclear_weight must be a finite number >= 0, got {self.nuclear_weight!r}")
        if not isinstance(self.fresh_subgradient, bool):
            raise RankSearchError(f"trp.fresh_subgradient must be true or false, got {self.fresh_subgradient!r}")
        if self.subgradient not in SUBGRADIENT_MODES:
            raise RankSearchError(
                f"trp.subgradient must be one of {', '.join(SUBGRADIENT_MODES)}, got {self.subgradient!r}")
        if self.fresh_subgradient and self.subgradient != "iteration":
            raise RankSearchError(
                "trp.fresh_subgradient=true needs trp.subgradient=iteration (on projection iterations the "
                f"factors are always fresh), got trp.subgradient={self.subgradient!r}")
        if self.final_ranks is not None and str(self.final_ranks).strip() and not is_plan_file(self.final_ranks):
            try:
                parse_rank_policy(self.final_ranks)
            except RankSearchError as exc:
                raise RankSearchError(
                    f"trp.final_ranks must be a rank spec such as 'value:0.05' or 'energy:0.9' (or a plan .yaml), "
                    f"got {self.final_ranks!r}: {exc}"
                ) from None


def to_matrix(scheme: str, weight: torch.Tensor) -> torch.Tensor:
    """The scheme's matrix of a dense weight (Linear weights are their own channel matrix)."""
    return SpatialFactorized.matrix(weight) if scheme == "spatial" else ChannelFactorized.matrix(weight)


def from_matrix(scheme: str, matrix: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Inverse of :func:`to_matrix`."""
    return SpatialFactorized.unmatrix(matrix, shape) if scheme == "spatial" else matrix.reshape(shape)


@torch.no_grad()
@full_precision()
def project_layers(model: nn.Module, plan: RankPlan, *, policy: RankPolicy | None = None,
                   write: bool = True) -> tuple[RankPlan, Factors]:
    """Replace each planned weight of ``model`` by its truncated SVD in its scheme's matrix.

    Same-shape layers are decomposed in one batched call on the weights' device. The SVD is
    always the exact thin SVD (*our choice*: a randomized SVD misplaces the subspace of a
    flat spectrum, which freshly initialised weights have), sliced to each layer's rank.

    Args:
        policy: re-pick every layer's rank from its current spectrum (energy/value policies);
            None keeps the plan's ranks.
        write: False computes the factors without touching the weights (fresh sub-gradients).

    Returns:
        The plan with the ranks used, and each layer's ``(U_r, Vh_r)`` (contiguous copies).
    """
    entries = dict(plan.items())
    names = list(entries)
    weights = [model.get_submodule(n).weight for n in names]
    mats = [to_matrix(entries[n].scheme, w.detach()) for n, w in zip(names, weights)]
    full = batched_truncated_svd(mats, [min(m.shape) for m in mats])
    if policy is None:
        ranks = [int(entries[n].rank) for n in names]
    else:
        # One device->host copy of all spectra, then the policy's own rule (as build_plan).
        lengths = [s.numel() for _, s, _ in full]
        flat = torch.cat([s for _, s, _ in full]).tolist() if full else []
        starts = [0, *itertools.accumulate(lengths)]
        ranks = [policy.choose(k, flat[a:a + k]) for k, a in zip(lengths, starts)]
    factors = [(u[:, :r], s[:r], vh[:r]) for (u, s, vh), r in zip(full, ranks)]
    cached: Factors = {}
    for name, w, (u, s, vh) in zip(names, weights, factors):
        if write:
            w.copy_(from_matrix(entries[name].scheme, (u * s) @ vh, w.shape))
        cached[name] = (u.clone(memory_format=torch.contiguous_format),
                        vh.clone(memory_format=torch.contiguous_format))
    new_plan = RankPlan(tuple((n, dataclasses.replace(entries[n], rank=r)) for n, r in zip(names, ranks)))
    return new_plan, cached


@full_precision()
def subgradient_directions(plan: RankPlan, factors: Factors, model: nn.Module) -> dict[str, torch.Tensor]:
    """``U_r V_r^T`` of every layer, reshaped to its weight's shape."""
    schemes = {n: lp.scheme for n, lp in plan.items()}
    out = {}
    for name, (u, vh) in factors.items():
        shape = model.get_submodule(name).weight.shape
        out[name] = from_matrix(schemes[name], u @ vh, shape)
    return out


@register_method
class TRP(Method):
    """Trained Rank Pruning: periodic truncated-SVD projections plus a nuclear sub-gradient."""

    name = "trp"
    Knobs = TRPKnobs
    default_ranks = "energy:0.9"  # the TRP code's energy threshold
    supported_schemes = ("channel", "spatial")

    # in a sweep the searched ranks are the trial's budget: convert at them (the training spec),
    # not at the authors' value threshold, unless the space sets trp.final_ranks
    search_defaults = {"final_ranks": ""}

    def __init__(self, knobs=None, *, ranks=None, scheme=None) -> None:
        super().__init__(knobs, ranks=ranks, scheme=scheme)
        self.factors: Factors = {}
        self.finalized = False
        self._directions: dict[str, torch.Tensor] = {}
        self._trained_plan: RankPlan | None = None  # the fixed plan of a run record (ranks_of_record)

    # ---- plans ----
    @property
    def final_spec(self) -> Any:
        spec = self.knobs.final_ranks
        return spec if spec is not None and str(spec).strip() else self.ranks

    def _final_plan(self, model: nn.Module) -> RankPlan:
        """The plan of the final projection on ``model``'s current weights."""
        if self.final_spec == self.ranks:
            return self.current_plan(model)
        return self.plan_for(model, self.final_spec)

    def validate(self, trainer) -> None:
        self._final_plan(trainer.dense)  # fail fast on a bad final_ranks plan

    def ranks_of_record(self, trainer) -> Any:
        """TRP's plan changes during training (energy/value ranks re-picked at every projection,
        the final one at ``final_ranks``): a re-run needs the training spec as given where it
        follows the weights, else the fixed plan it trained with, not the final plan."""
        if ranks_follow_weights(self.ranks):
            return self.ranks
        if self._trained_plan is None:  # resolved once: trainer.dense never changes
            self._trained_plan = self.plan_for(trainer.dense)
        return self._trained_plan

    # ---- projections ----
    def _set_factors(self, factors: Factors, model: nn.Module) -> None:
        self.factors = factors
        self._directions = (subgradient_directions(self.plan, factors, model)
                            if factors and self.knobs.nuclear_weight > 0 else {})

    def project(self, model: nn.Module) -> None:
        """One training projection at the training rank spec."""
        self.plan, factors = project_layers(model, self.plan, policy=spectrum_policy(self.ranks))
        self._set_factors(factors, model)

    # ---- hooks ----
    def on_train_start(self, trainer) -> None:
        self.plan = self.current_plan(trainer.model)

    def before_forward(self, trainer) -> None:
        if trainer.global_step % self.knobs.interval == 0:
            self.project(trainer.model)

    def after_backward(self, trainer) -> None:
        lam = self.knobs.nuclear_weight
        if lam <= 0:
            return
        projected = trainer.global_step % self.knobs.interval == 0
        if self.knobs.subgradient == "projection" and not projected:
            return
        model = trainer.model
        if self.knobs.fresh_subgradient and not projected:
            _, factors = project_layers(model, self.plan, write=False)
            self._set_factors(factors, model)
        for name, direction in self._directions.items():
            weight = model.get_submodule(name).weight
            if weight.grad is None:
                weight.grad = lam * direction
            else:
                weight.grad.add_(direction, alpha=lam)

    def finalize(self, trainer) -> None:
        """The final projection, at the final rank spec; ``self.plan`` becomes the exported plan."""
        final = self._final_plan(trainer.model)
        self.plan, factors = project_layers(trainer.model, final, policy=spectrum_policy(self.final_spec))
        self._set_factors(factors, trainer.model)
        self.finalized = True

    def compact_model(self, trainer) -> nn.Module:
        model = trainer.model
        # Mid-training: what finalizing now would give. compress() decomposes a copy, so the
        # weights and factors are untouched.
        plan = self.plan if self.finalized else self._final_plan(model)
        return compress(model, plan)

    # ---- state ----
    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "finalized": self.finalized,
            "factors": {n: {"u": u, "vh": vh} for n, (u, vh) in self.factors.items()},
        }

    def load_state_dict(self, state, trainer) -> None:
        super().load_state_dict(state, trainer)
        self.finalized = bool(state.get("finalized", False))
        model = trainer.model
        factors = {}
        for name, f in (state.get("factors") or {}).items():
            device = model.get_submodule(name).weight.device
            factors[name] = (f["u"].to(device), f["vh"].to(device))
        self._set_factors(factors, model)

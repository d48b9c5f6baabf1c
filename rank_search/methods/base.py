"""The base method: the engine's no-op hooks plus what every method has (knobs, rank spec,
scheme, plan). The hook order is in ``rank_search.engine.hooks``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Mapping

from torch import nn

from ..decomp import RankPolicy, parse_rank_policy
from ..engine.hooks import TrainingHooks
from ..errors import RankSearchError
from ..overrides import replace_validated
from ..plan import RankPlan, build_plan

if TYPE_CHECKING:
    from ..engine.trainer import Trainer


@dataclass(frozen=True)
class NoKnobs:
    pass


INITS = ("scratch", "dense")


def check_init(method: str, value: Any) -> None:
    """The ``<method>.init`` knob: ``dense`` starts from trained dense weights where the run has
    them (`train --init`, a sweep's dense reference), ``scratch`` from a fresh initialisation."""
    if value not in INITS:
        raise RankSearchError(f"{method}.init must be one of {', '.join(INITS)}, got {value!r}")


SVD_MODES = ("exact", "randomized")


def check_svd(method: str, value: Any) -> None:
    """The ``<method>.svd`` knob of the projection methods: ``exact`` (the papers' and the
    authors' code: ``torch.linalg.svd``, truncated) or ``randomized`` (``torch.svd_lowrank`` where
    the rank is far below the matrix size, oversample 8, 2 power iterations; cheaper on big
    layers, approximate, and run under a forked RNG)."""
    if value not in SVD_MODES:
        raise RankSearchError(f"{method}.svd must be one of {', '.join(SVD_MODES)}, got {value!r}")


def svd_randomized(value: str) -> bool | None:
    """The ``randomized`` argument of ``decomp.truncated_svd`` for an ``svd`` knob value:
    False (never randomized) for ``exact``, None (randomized where the rank is far below the
    matrix size) for ``randomized``."""
    return False if value == "exact" else None


INIT_DECOMPOSITIONS = ("weight", "data", "data_sequential")


def check_init_decomposition(method: str, value: Any, images: Any) -> None:
    """The ``<method>.init_decomposition`` knob of the methods that decompose trained weights:
    ``weight`` (each layer's truncated SVD / Tucker-2: the weight error), ``data`` (each layer's
    output error on ``calibration_images`` training images drawn through the model being
    decomposed; schemes ``channel`` and ``tucker2``) or ``data_sequential`` (the same, each layer
    fitted on the inputs it gets once the layers before it are compressed: one calibration pass
    per layer), and its ``calibration_images`` count."""
    if value not in INIT_DECOMPOSITIONS:
        raise RankSearchError(f"{method}.init_decomposition must be one of {', '.join(INIT_DECOMPOSITIONS)}, "
                              f"got {value!r}")
    if isinstance(images, bool) or not isinstance(images, int) or images < 1:
        raise RankSearchError(f"{method}.calibration_images must be an integer >= 1, got {images!r}")


def decompose_trained(trainer: "Trainer", plan: RankPlan, *, init_decomposition: str, images: int) -> nn.Module:
    """``trainer.model`` compressed with ``plan`` as ``init_decomposition`` says (see
    :func:`check_init_decomposition`); calibration runs with no gradient and leaves the model's
    mode, the data order and the global RNG untouched."""
    from ..decomp import collect_input_moments
    from ..surgery import compress, compress_sequential

    if init_decomposition == "weight":
        return compress(trainer.model, plan)
    if init_decomposition == "data_sequential":
        return compress_sequential(trainer.model, plan, trainer.data.train, images=images, device=trainer.device)
    moments = collect_input_moments(trainer.model, list(plan), trainer.data.train, images=images,
                                    device=trainer.device)
    return compress(trainer.model, plan, input_moments=moments)


def is_plan_file(spec: Any) -> bool:
    """Whether the rank spec ``spec`` names a plan file (``.yaml``/``.yml``)."""
    return isinstance(spec, str) and spec.strip().lower().endswith((".yaml", ".yml"))


def spectrum_policy(spec: Any) -> RankPolicy | None:
    """The uniform policy of ``spec`` when it must be re-resolved on the weights (energy,
    value); None for fixed/ratio policies and plans, whose ranks do not depend on the weights."""
    if isinstance(spec, RankPolicy):
        policy = spec
    elif isinstance(spec, (str, int, float)) and not isinstance(spec, bool) and not is_plan_file(spec):
        policy = parse_rank_policy(spec)
    else:
        return None
    return policy if policy.needs_spectrum else None


def ranks_follow_weights(spec: Any) -> bool:
    """Whether resolving ``spec`` on other weights of the same model can give other ranks: energy
    and value policies, and plan files and mappings (a layer's rank may be such a policy)."""
    if isinstance(spec, RankPlan):
        return False
    return isinstance(spec, Mapping) or is_plan_file(spec) or spectrum_policy(spec) is not None


class Method(TrainingHooks):
    """Base method: dense training, no compression. Subclasses override what they need.

    Attributes:
        name: registry name, also the ``--set NAME.knob=...`` prefix.
        Knobs: frozen dataclass of the method's settings.
        default_scheme: scheme used when the user gives none.
        supported_schemes: the schemes the method works in (the run's and every planned
            layer's), None for any.
        uses_plan: whether ``--ranks`` means anything to this method.
        default_ranks: the rank spec used when the user gives none.
        plan: the resolved plan of record; ``rank_search.run.prepare`` resolves it once on the
            dense model, methods re-resolve it only where the rank spec follows the weights.
        initialized: whether the dense model the run starts from holds trained weights (set by
            ``rank_search.run.prepare`` when the run has ``init``).
    """

    name: ClassVar[str] = "base"
    Knobs: ClassVar[type] = NoKnobs
    default_scheme: ClassVar[str] = "channel"
    supported_schemes: ClassVar[tuple[str, ...] | None] = None
    uses_plan: ClassVar[bool] = True
    default_ranks: ClassVar[str] = "ratio:0.5"
    #: knob values a sweep's trials use unless the space sets them: what keeps the searched ranks
    #: the trial's budget (e.g. TRP converts at them rather than at its own threshold)
    search_defaults: ClassVar[Mapping[str, Any]] = {}

    def __init__(self, knobs: Mapping[str, Any] | None = None, *, ranks: Any = None, scheme: str | None = None) -> None:
        self.knobs = replace_validated(self.Knobs(), dict(knobs or {}), prefix=f"{self.name}.")
        self.ranks = ranks if ranks is not None else self.default_ranks
        self.scheme = scheme or self.default_scheme
        self._check_scheme(self.scheme, f"got scheme {self.scheme!r}")
        self.plan: RankPlan | None = None
        self.initialized = False

    def _check_scheme(self, scheme: str, what: str) -> None:
        allowed = self.supported_schemes
        if allowed is not None and scheme not in allowed:
            noun = "schemes" if len(allowed) > 1 else "scheme"
            raise RankSearchError(f"{self.name} supports {noun} {', '.join(allowed)}; {what}")

    # ---- plan ----
    @property
    def uniform_tiles(self) -> tuple[int, int] | None:
        """The tile grid of a uniform plan's ``tiled`` layers; None for the scheme's default."""
        return None

    def plan_for(self, model: nn.Module, spec: Any = None) -> RankPlan:
        """``spec`` (default: the run's rank spec) resolved against ``model``'s current weights,
        every layer's scheme checked (a plan file may name schemes per layer); not remembered."""
        plan = build_plan(model, self.ranks if spec is None else spec, scheme=self.scheme, tiles=self.uniform_tiles)
        for name, lp in plan.items():
            self._check_scheme(lp.scheme, f"layer {name!r} has scheme {lp.scheme!r}")
        return plan

    def resolve_plan(self, model: nn.Module) -> RankPlan:
        """Resolve the rank spec against ``model``'s current weights and remember it."""
        self.plan = self.plan_for(model)
        return self.plan

    def current_plan(self, model: nn.Module) -> RankPlan:
        """The plan for ``model``'s current weights, not remembered: ``self.plan`` unless the rank
        spec follows the weights (or there is no plan yet), else the spec resolved on ``model``."""
        if self.plan is None or ranks_follow_weights(self.ranks):
            return self.plan_for(model)
        return self.plan

    def ranks_of_record(self, trainer: "Trainer") -> Any:
        """The rank spec a re-run needs to train this run again (the run record's ``ranks``): the
        resolved plan, for methods that decide the ranks once (at the start or at a decomposition)."""
        return self.plan

    # ---- state ----
    def state_dict(self) -> dict[str, Any]:
        return {"plan": self.plan.to_dict() if self.plan is not None else None}

    def load_state_dict(self, state: Mapping[str, Any], trainer: "Trainer") -> None:
        if state.get("plan") is not None:
            self.plan = RankPlan.from_dict(state["plan"])

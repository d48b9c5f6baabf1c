"""The ``refine`` sampler's settings: frozen dataclasses, validated when made."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping


@dataclass(frozen=True)
class FillSettings:
    """Gap fills along the objective a parameter sets directly.

    Attributes:
        param: the parameter (a searched target compression); a float or int distribution.
        objective: index of the objective that parameter sets.
        spacing: the narrowest gap worth filling, in the parameter's own space (log space for a
            log-scaled parameter); > 0.
        fixed: parameter -> value every fill takes where its parent has that parameter and the
            value is one of its distribution's.
    """

    param: str
    objective: int
    spacing: float
    fixed: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not float(self.spacing) > 0:
            raise ValueError(f"refine: fill must be given a spacing > 0, got {self.spacing!r}")
        object.__setattr__(self, "param", str(self.param))
        object.__setattr__(self, "objective", int(self.objective))
        object.__setattr__(self, "spacing", float(self.spacing))
        object.__setattr__(self, "fixed", dict(self.fixed))


@dataclass(frozen=True)
class ShareSettings:
    """A categorical parameter (the method) whose open value is chosen by the choices' results.

    Attributes:
        param: the parameter's name.
        choices: the choices shared (the space's planned methods); at least one.
    """

    param: str
    choices: tuple[Any, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "param", str(self.param))
        object.__setattr__(self, "choices", tuple(self.choices))
        if not self.choices:
            raise ValueError(f"refine: share must be given at least one choice, got {self.choices!r}")


@dataclass(frozen=True)
class RefineSettings:
    """Everything ``FrontSampler`` is told.

    Attributes:
        step: a numeric mutation's standard deviation, as a fraction of the range; > 0.
        switch: probability that a mutation changes a categorical parameter; in [0, 1].
        explore: probability that a searched trial is drawn from the priors; in [0, 1].
        floors: objective index -> its least useful value (None: none); parents come from the trials that
            reach every floor while any does.
        log_objectives: indices of ratio objectives, compared in log space.
        fill: gap fills, or None for none.
        share: the method share, or None for none.
        weighted_parents: parents drawn half by hypervolume contribution (True) or uniformly from
            the front (False).
    """

    step: float = 0.15
    switch: float = 0.2
    explore: float = 0.1
    floors: Mapping[int, float] = field(default_factory=dict)
    log_objectives: tuple[int, ...] = ()
    fill: FillSettings | None = None
    share: ShareSettings | None = None
    weighted_parents: bool = False

    def __post_init__(self) -> None:
        if not (0 < self.step and 0 <= self.switch <= 1 and 0 <= self.explore <= 1):
            raise ValueError("refine: need step > 0 and switch, explore in [0, 1], "
                             f"got {self.step}, {self.switch}, {self.explore}")
        object.__setattr__(self, "floors", {int(k): float(v) for k, v in (self.floors or {}).items()})
        object.__setattr__(self, "log_objectives", tuple(int(i) for i in self.log_objectives))

"""``RunSpec``: everything that defines one training run, validated.

A run config (``train --config``, an exported trial) is ``{run: RunSpec fields}``; a run record
(``run.yaml`` of a trial checkpoint) adds the resolved rank groups under ``schema.GROUPS_KEY``,
which a spec accepts and ignores (the integer plan in ``ranks`` already fixes every rank).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Mapping

from .. import schema
from ..errors import RankSearchError
from ..allocation import BudgetRanks
from ..groups import GroupRatios
from ..overrides import split_prefixed

RUN_KEYS = ("model", "dataset", "method", "ranks", "scheme", "epochs", "seed", "data_root", "download", "settings",
            "init", "teacher")
# written by results.run_record, ignored on input
RECORD_KEYS = (schema.GROUPS_KEY, schema.RANK_RATIOS_KEY, schema.KEPT_DENSE_KEY, schema.ENVIRONMENT_KEY)


@dataclass(frozen=True)
class RunSpec:
    """Everything that defines a run; ``settings`` holds ``train.*``, ``distill.*`` and ``<method>.*`` keys.

    ``teacher`` is the dense teacher of ``distill.weight > 0`` (a state_dict file); without it the
    ``init`` weights teach.
    """

    model: str
    dataset: str
    method: str
    ranks: Any = None
    scheme: str | None = None
    epochs: int = 10
    seed: int = 0
    data_root: str | None = None
    download: bool = False
    settings: Mapping[str, Any] = field(default_factory=dict)
    init: str | None = None  # a state_dict file the dense model starts from (``train --init``)
    teacher: str | None = None  # a state_dict file of the dense teacher (default: ``init``)

    def __post_init__(self) -> None:
        for key in ("model", "dataset", "method"):
            value = getattr(self, key)
            if not isinstance(value, str) or not value:
                raise RankSearchError(f"{key} must be a name (a non-empty string), got {value!r}")
        for key in ("init", "teacher"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, str) or not value):
                raise RankSearchError(f"{key} must be the path of a state_dict file, got {value!r}")
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise RankSearchError(f"epochs must be an integer >= 1, got {self.epochs!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise RankSearchError(f"seed must be an integer, got {self.seed!r}")
        allowed = ("train.", "distill.", f"{self.method}.")
        for key in self.settings:
            if not key.startswith(allowed):
                raise RankSearchError(
                    f"setting {key!r} must start with 'train.', 'distill.' or '{self.method}.' (the method's knobs)"
                )

    @property
    def train_settings(self) -> dict[str, Any]:
        """The ``train.*`` settings, keyed without the prefix (``TrainConfig`` fields)."""
        return split_prefixed(self.settings, "train")

    @property
    def distill_settings(self) -> dict[str, Any]:
        """The ``distill.*`` settings, keyed without the prefix (``DistillConfig`` fields)."""
        return split_prefixed(self.settings, "distill")

    @property
    def knobs(self) -> dict[str, Any]:
        """The method's ``<method>.*`` knobs, keyed without the prefix."""
        return split_prefixed(self.settings, self.method)

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["settings"] = dict(self.settings)
        if hasattr(self.ranks, "to_dict"):  # GroupRatios, BudgetRanks, RankPlan
            out["ranks"] = self.ranks.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "config") -> "RunSpec":
        if not isinstance(data, Mapping):
            raise RankSearchError(f"{source} must be a mapping, got {type(data).__name__}")
        unknown = set(data) - set(RUN_KEYS) - set(RECORD_KEYS)
        if unknown:
            raise RankSearchError(f"unknown key(s) {sorted(unknown)} in {source}; valid keys: {', '.join(RUN_KEYS)}")
        missing = [k for k in ("model", "dataset", "method") if k not in data]
        if missing:
            raise RankSearchError(f"{source} is missing required key(s): {', '.join(missing)}")
        values = {k: v for k, v in data.items() if k in RUN_KEYS}
        if GroupRatios.is_dict(values.get("ranks")):
            values["ranks"] = GroupRatios.from_dict(values["ranks"])
        elif BudgetRanks.is_dict(values.get("ranks")):
            values["ranks"] = BudgetRanks.from_dict(values["ranks"])
        if values.get("settings") is None:
            values["settings"] = {}
        elif not isinstance(values["settings"], Mapping):
            raise RankSearchError(f"'settings' in {source} must map KEY to VALUE, got {type(values['settings']).__name__}")
        return cls(**values)

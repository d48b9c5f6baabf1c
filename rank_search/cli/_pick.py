"""The trial of a sweep that `export` and `deploy` pick, and its final checkpoint."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import schema
from ..errors import RankSearchError


@dataclass(frozen=True)
class PickedTrial:
    """The trial of a sweep that `export` and `deploy` pick, and its final checkpoint.

    Attributes:
        experiment: the experiment folder or URI, as given.
        trial: the trial's row (``analysis.loading``'s columns).
        checkpoint: its final checkpoint folder, relative to the experiment.
        loc: the experiment's ``storage.Location``.
    """

    experiment: str
    trial: Any
    checkpoint: str
    loc: Any

    @property
    def trial_id(self) -> str:
        return str(self.trial["trial_id"])

    def file(self, name: str) -> str:
        """``name`` in the final checkpoint (relative to the experiment); a missing file is a
        one-line error."""
        rel = f"{self.checkpoint}/{name}"
        if not self.loc.exists(rel):
            raise RankSearchError(f"trial {self.trial_id} has no {name} in its final checkpoint in "
                                  f"{self.experiment!r}")
        return rel

    def compact_weights(self) -> str:
        """The trial's ``compact.pt`` (relative to the experiment)."""
        return self.file(schema.COMPACT_WEIGHTS_FILE)


def pick_checkpoint(experiment: str, *, pick: str, min_accuracy: float | None = None,
                    max_macs: float | None = None, exp=None, include_stopped: bool = False) -> PickedTrial:
    """Pick a trial of the sweep at ``experiment`` (``analysis.select.pick_trial``) and find its
    final checkpoint; ``exp`` is the experiment when it is loaded already.

    Raises:
        RankSearchError: no trial to pick, or the picked one has no final checkpoint.
    """
    from analysis.loading import load_experiment
    from analysis.select import pick_trial

    from ..storage import Location

    exp = exp if exp is not None else load_experiment(experiment)
    trial = pick_trial(exp, pick=pick, min_accuracy=min_accuracy, max_macs=max_macs, include_stopped=include_stopped)
    loc = Location(experiment)
    name = trial["checkpoint"]
    if not isinstance(name, str) or not loc.is_dir(f"{trial['folder']}/{name}"):
        raise RankSearchError(f"trial {trial['trial_id']} has no final checkpoint in {experiment!r}")
    return PickedTrial(experiment, trial, f"{trial['folder']}/{name}", loc)


def pick_row(rows: list[dict], *, pick: str, min_accuracy: float | None = None,
             max_macs: float | None = None) -> dict:
    """The row of ``rows`` (plain mappings with ``val_accuracy``, ``macs_compression`` and
    ``macs``, e.g. one-shot front points) that ``pick`` picks under ``pick_trial``'s rules, both
    objectives maximised (``analysis.select.pick_among``).

    Raises:
        RankSearchError: no row meets the bounds.
    """
    import pandas as pd

    from analysis.select import pick_among

    table = pd.DataFrame({k: [r[k] for r in rows] for k in (schema.VAL_ACCURACY, schema.MACS_COMPRESSION, "macs")})
    picked = pick_among(table, [(schema.VAL_ACCURACY, "max"), (schema.MACS_COMPRESSION, "max")], pick=pick,
                        min_accuracy=min_accuracy, max_macs=max_macs, macs_column="macs", what="point")
    return rows[int(picked.name)]

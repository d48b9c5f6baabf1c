"""Quality measures a user cares about: the dense reference, the log hypervolume above a floor
near dense accuracy, and the best accuracy at each compression level.

The plain hypervolume (reference accuracy 0, compression 1) is dominated by the most compressed
trial however bad it is. Here compression counts on a log2 scale (2x -> 1, 4x -> 2, ...) and
accuracy only above ``dense - margin`` (5 points by default): a model far below the dense one,
or no smaller than it, adds nothing.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, NamedTuple, Sequence

import numpy as np
import pandas as pd

from rank_search import schema
from rank_search.storage import Location

from .hypervolume import hypervolume
from .loading import Experiment
from .summary import usable_mask

DENSE_METHOD = "full"  # the method that trains the dense model
METHOD_COLUMN = schema.CONFIG_COLUMN_PREFIX + schema.METHOD_KEY
DENSE_SOURCE_KEY = "source"  # dense.yaml: how the reference was obtained (trained | given)
DEFAULT_LEVELS = (2, 4, 8, 16, 32)
DEFAULT_MARGIN = schema.ACCURACY_MARGIN
FLOOR_DECIMALS = 12


class DenseReference(NamedTuple):
    accuracy: float
    source: str  # "dense.yaml (trained)" or "best full trial <id>"


def _number(value) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _read_dense_record(path: str) -> dict:
    """``dense.yaml`` as a mapping; ``{}`` when it is missing, unreadable or not a mapping."""
    try:
        return Location(path).read_mapping(schema.DENSE_RECORD_FILE)
    except OSError:  # a URI whose file system cannot be opened
        return {}


def _finished(trials: pd.DataFrame) -> pd.Series:
    # a table without the column (built by hand) counts every row as finished
    if "finished" not in trials:
        return pd.Series(True, index=trials.index)
    return trials["finished"].map(lambda v: v is not None and v == v and bool(v)).astype(bool)  # NaN: no


def _usable(trials: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """Finished trials with every metric reported and no divergence."""
    if trials.empty:
        return trials
    return trials[usable_mask(trials, metrics) & _finished(trials)]


def dense_reference(exp: Experiment, metric: str = schema.VAL_ACCURACY) -> DenseReference | None:
    """The sweep's dense reference accuracy and where it comes from.

    ``dense.yaml`` in the experiment folder (written by the search) when it holds ``metric``;
    else the best finished, not diverged ``full``-method trial (best by validation accuracy,
    so a test reference is never selected on test); else ``None``.
    """
    record = _read_dense_record(exp.path)
    value = _number(record.get(metric))
    if value is not None:
        source = record.get(DENSE_SOURCE_KEY)
        return DenseReference(value, schema.DENSE_RECORD_FILE + (f" ({source})" if source else ""))
    t = exp.trials
    if t.empty or METHOD_COLUMN not in t:
        return None
    full = _usable(t[t[METHOD_COLUMN] == DENSE_METHOD], [metric])
    if full.empty:
        return None
    by = schema.VAL_ACCURACY if schema.VAL_ACCURACY in full else metric
    keys = pd.to_numeric(full[by], errors="coerce").fillna(-math.inf)
    best = full.loc[keys.idxmax()]
    return DenseReference(float(best[metric]), f"best {DENSE_METHOD} trial {best['trial_id']}")


def dense_accuracy(exp: Experiment, metric: str = schema.VAL_ACCURACY) -> float | None:
    """The sweep's dense reference ``metric`` (see ``dense_reference``), or ``None``."""
    ref = dense_reference(exp, metric)
    return None if ref is None else ref.accuracy


def log_hypervolume(trials: pd.DataFrame, *, floor: float, accuracy: str = schema.VAL_ACCURACY,
                    compression: str = schema.MACS_COMPRESSION) -> float:
    """Hypervolume of the usable trials in (log2 ``compression``, ``accuracy``) against the
    reference point (0, ``floor``): a trial at compression <= 1 or accuracy <= floor adds nothing.

    Usable: finished, both metrics reported, not diverged.
    """
    t = _usable(trials, [accuracy, compression])
    if t.empty:
        return 0.0
    x = t[compression].to_numpy(dtype=float)
    y = t[accuracy].to_numpy(dtype=float)
    keep = x > 1.0  # log2 of the rest is <= 0: outside the region anyway, and log2(0) warns
    points = np.column_stack([np.log2(x[keep]), y[keep]])
    return hypervolume(points, ["max", "max"], [0.0, float(floor)])


def best_accuracy_at(trials: pd.DataFrame, levels: Sequence[float] = DEFAULT_LEVELS, *,
                     accuracy: str = schema.VAL_ACCURACY,
                     compression: str = schema.MACS_COMPRESSION) -> dict[float, float | None]:
    """Per level: the best ``accuracy`` among usable trials with ``compression >= level``
    (``None`` when no usable trial reaches it).

    With ``accuracy="test_accuracy"`` the trial is chosen on test itself: an optimistic
    reading, comparable between sweeps but not an unbiased estimate.
    """
    t = _usable(trials, [accuracy, compression])
    x = t[compression].to_numpy(dtype=float) if not t.empty else np.zeros(0)
    y = t[accuracy].to_numpy(dtype=float) if not t.empty else np.zeros(0)
    return {float(level): (float(y[x >= level].max()) if (x >= level).any() else None) for level in levels}


def best_trials_at(trials: pd.DataFrame, levels: Sequence[float] = DEFAULT_LEVELS, *,
                   accuracy: str = schema.VAL_ACCURACY,
                   compression: str = schema.MACS_COMPRESSION) -> dict[float, pd.Series | None]:
    """Per level: the usable trial (a row) with the best ``accuracy`` among those with
    ``compression >= level`` (ties: the first in table order), or ``None``. Every figure quoted
    for a level (its validation and test accuracy) is then read from this one trial."""
    t = _usable(trials, [accuracy, compression])
    out: dict[float, pd.Series | None] = {}
    for level in levels:
        reach = t[t[compression].astype(float) >= level] if not t.empty else t
        out[float(level)] = None if reach.empty else reach.loc[reach[accuracy].astype(float).idxmax()]
    return out


def _metric_of(row: pd.Series | None, metric: str) -> float | None:
    return None if row is None else _number(row.get(metric))


@dataclass(frozen=True)
class Quality:
    """The quality measures of one sweep (accuracies as fractions)."""

    dense_accuracy: float | None  # validation
    dense_test_accuracy: float | None
    dense_source: str | None
    margin: float
    floor: float | None  # dense - margin, else best trial - margin, else None (no usable trial)
    floor_from_dense: bool
    log_hypervolume: float
    best_val: Mapping[float, float | None]
    best_test: Mapping[float, float | None]  # chosen on test itself: optimistic (best_accuracy_at)
    # the test accuracy of the trial best on validation at each level (the same trial as best_val)
    test_of_best_val: Mapping[float, float | None]
    trial_of_best_val: Mapping[float, str | None]

    def row(self) -> dict[str, object]:
        """One flat row (``quality.csv``)."""
        out: dict[str, object] = {
            "dense_val_accuracy": self.dense_accuracy, "dense_test_accuracy": self.dense_test_accuracy,
            "dense_source": self.dense_source, "margin": self.margin, "floor": self.floor,
            "floor_from": "dense" if self.floor_from_dense else ("best trial" if self.floor is not None else None),
            "log_hypervolume": self.log_hypervolume,
        }
        for level, value in self.best_val.items():
            out[f"best_{schema.VAL_ACCURACY}_at_{level:g}x"] = value
        for level, value in self.best_test.items():
            out[f"best_{schema.TEST_ACCURACY}_at_{level:g}x"] = value
        for level, value in self.test_of_best_val.items():
            out[f"{schema.TEST_ACCURACY}_of_best_val_at_{level:g}x"] = value
        return out


def quality(exp: Experiment, *, margin: float = DEFAULT_MARGIN, levels: Sequence[float] = DEFAULT_LEVELS) -> Quality:
    """The sweep's quality measures.

    The floor is the dense validation accuracy minus ``margin``. When no dense accuracy is
    known (no ``dense.yaml``, no finished ``full`` trial) it falls back to the best usable
    trial's validation accuracy minus ``margin``: the volume then measures how close the sweep
    stays to its own best model, not to the dense one (``floor_from_dense`` says which).
    """
    if not (math.isfinite(margin) and margin >= 0):
        raise ValueError(f"margin must be a finite number >= 0, got {margin}")
    t = exp.trials
    val = dense_reference(exp, schema.VAL_ACCURACY)
    test = dense_reference(exp, schema.TEST_ACCURACY)
    if val is not None:
        top, from_dense = val.accuracy, True
    else:
        usable = _usable(t, [schema.VAL_ACCURACY])
        top = float(usable[schema.VAL_ACCURACY].astype(float).max()) if not usable.empty else None
        from_dense = False
    # rounded: 0.95 - 0.05 is 0.8999999999999999 in floats, and a trial at exactly dense - 5 pt
    # must add nothing (accuracies are counts over a few thousand images, far coarser than 1e-12)
    floor = None if top is None else round(top - margin, FLOOR_DECIMALS)
    source = val.source if val is not None else (test.source if test is not None else None)
    best = best_trials_at(t, levels, accuracy=schema.VAL_ACCURACY)
    return Quality(
        dense_accuracy=None if val is None else val.accuracy,
        dense_test_accuracy=None if test is None else test.accuracy,
        dense_source=source, margin=margin, floor=floor, floor_from_dense=from_dense,
        log_hypervolume=log_hypervolume(t, floor=floor) if floor is not None else 0.0,
        best_val={level: _metric_of(row, schema.VAL_ACCURACY) for level, row in best.items()},
        best_test=best_accuracy_at(t, levels, accuracy=schema.TEST_ACCURACY),
        test_of_best_val={level: _metric_of(row, schema.TEST_ACCURACY) for level, row in best.items()},
        trial_of_best_val={level: None if row is None else str(row["trial_id"]) for level, row in best.items()},
    )


__all__ = ["DenseReference", "Quality", "best_accuracy_at", "best_trials_at", "dense_accuracy", "dense_reference",
           "log_hypervolume", "quality"]

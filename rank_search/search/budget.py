"""A sweep limited by trial-hours (``launch --budget-hours``) instead of a trial count.

Trial-hours are every trial's training time (its last ``time_total_s``) plus the dense reference
and the profile (their summed task time), as ``schema.DENSE_RECORD_FILE`` records them: the
compute a sweep pays for, whatever ran at once. ``BudgetSearcher`` asks its searcher for a new
trial only while the sweep has spent less than the budget; trials already running finish, so a
sweep overshoots by at most the trials it runs at once. ``spent_seconds`` reads the same sum from
an experiment folder (what ``launch`` and ``resume`` report).
"""
from __future__ import annotations

import json
from typing import Any

from ray.tune.search import Searcher

from .. import schema
from .. import safe_yaml
from ..storage import Location

TIME_TOTAL = "time_total_s"


def reference_seconds(path: str) -> float:
    """Trial-seconds the dense reference and the profile took (0 without a record)."""
    loc = Location(path)
    if not loc.is_file(schema.DENSE_RECORD_FILE):
        return 0.0
    record = safe_yaml.load(loc.read_text(schema.DENSE_RECORD_FILE), what=schema.DENSE_RECORD_FILE) or {}
    total = float(record.get("seconds_total") or 0.0)
    if "profile_task_seconds" in record:  # a profile measured in parallel parts: their summed time
        total += float(record["profile_task_seconds"]) - float(record.get("profile_seconds") or 0.0)
    return total


def trial_seconds(loc: Location, folder: str) -> float:
    """A trial's training time so far: its last result's ``time_total_s`` (0 before any result)."""
    rel = f"{folder}/result.json"  # Tune's per-trial results, one JSON line per report
    if not loc.is_file(rel):
        return 0.0
    for line in reversed(loc.read_text(rel).splitlines()):
        try:
            value = json.loads(line).get(TIME_TOTAL)
        except (ValueError, AttributeError):
            continue  # a line being written, or damaged: the one before it counts
        if isinstance(value, (int, float)):
            return float(value)
    return 0.0


def spent_seconds(path: str) -> float:
    """Trial-seconds an experiment has spent: its trials' and its references'."""
    loc = Location(path)
    folders = [n for n in loc.listdir() if n.startswith("trial_")] if loc.is_dir() else []
    return reference_seconds(path) + sum(trial_seconds(loc, f) for f in folders)


def planned_trials(hours: float, path: str, num_samples: int) -> int:
    """How many full trials a budget buys after the references, estimated by the dense
    reference's own training time (the same model and epochs): what sizes the warm start."""
    loc = Location(path)
    record = {}
    if loc.is_file(schema.DENSE_RECORD_FILE):
        record = safe_yaml.load(loc.read_text(schema.DENSE_RECORD_FILE), what=schema.DENSE_RECORD_FILE) or {}
    per_trial = float(record.get("seconds") or 0.0)
    if per_trial <= 0:
        return num_samples
    left = hours * 3600 - reference_seconds(path)
    return max(1, min(num_samples, int(left // per_trial)))


class BudgetSearcher(Searcher):
    """``searcher``, asked for trials while the sweep has spent under ``hours``: ``reference``
    seconds (the dense reference and profile) plus each trial's latest ``time_total_s``. A wrapper
    in Tune's sense (like its ConcurrencyLimiter): its own state, the time of every trial it has
    heard of, is saved with the experiment and set again on ``resume``; the wrapped searcher is
    saved and restored by Tune itself."""

    def __init__(self, searcher: Searcher, *, hours: float, reference: float) -> None:
        super().__init__(metric=searcher.metric, mode=searcher.mode)
        self.searcher, self.hours, self.reference = searcher, float(hours), float(reference)
        self.trial_seconds: dict[str, float] = {}

    def spent(self) -> float:
        return self.reference + sum(self.trial_seconds.values())

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if self.spent() >= self.hours * 3600:
            return Searcher.FINISHED
        return self.searcher.suggest(trial_id)

    def _count(self, trial_id: str, result: dict | None) -> None:
        value = (result or {}).get(TIME_TOTAL)
        if isinstance(value, (int, float)):
            self.trial_seconds[trial_id] = float(value)

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return self.searcher.set_search_properties(metric, mode, config, **spec)

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        return self.searcher.set_max_concurrency(max_concurrent)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self._count(trial_id, result)
        self.searcher.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        self._count(trial_id, result)
        self.searcher.on_trial_complete(trial_id, result=result, error=error)

    def add_evaluated_point(self, *args, **kwargs) -> None:
        self.searcher.add_evaluated_point(*args, **kwargs)

    def get_state(self) -> dict:
        return {"trial_seconds": dict(self.trial_seconds)}

    def set_state(self, state: dict) -> None:
        self.trial_seconds = {str(k): float(v) for k, v in (state.get("trial_seconds") or {}).items()}

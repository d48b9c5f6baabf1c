"""Multi-objective asynchronous successive halving (MO-ASHA) as a Ray Tune scheduler.

Rungs sit at geometric epoch budgets (``grace * eta**k`` below the trial's epochs). When a trial
reports a rung's epoch it is compared with every trial recorded at that rung before it: it goes on
while it ranks in the top ``ceil(n / eta)`` of the ``n`` trials by non-dominated sorting of the
sweep's objectives, ties inside a front broken by exclusive hypervolume contribution, and the most
compressed trial of the first front always goes on (the compressed end of the front is kept).
Otherwise it is stopped and keeps the metrics it reported (in the spirit of Schmucker et al., 2021).
With ``group_by`` (a config key, e.g. ``method``) a trial is compared only with the trials of its
own group: methods learn at different speeds, so early accuracy ranks trials of one method only.

Every decision is written to ``mo_asha.yaml`` in the experiment folder before it is returned, and
a restored scheduler replays it: a stopped trial stays stopped and a promoted one is never stopped
again at that rung, whatever ran or was lost in between. Tune does not save a scheduler's state
across ``Tuner.restore``, so this ledger is the state.
"""
from __future__ import annotations

import math
import os
from typing import Sequence

import numpy as np
from ray.tune.schedulers import FIFOScheduler

import yaml

from .. import safe_yaml, schema
from ..storage import Location
from ._private_api import SnapshotFirst
from .refine.pareto import contributions, dominance

LEDGER_FILE = schema.SCHEDULER_LEDGER_FILE
CONTINUE, STOP = "CONTINUE", "STOP"


def rung_epochs(max_epochs: int, *, grace: int = 1, eta: int = 3) -> tuple[int, ...]:
    """The epochs at which trials are compared: ``grace * eta**k`` strictly below ``max_epochs``."""
    if grace < 1 or eta < 2:
        raise ValueError(f"MO-ASHA needs grace >= 1 and eta >= 2, got grace {grace}, eta {eta}")
    out, t = [], grace
    while t < max_epochs:
        out.append(t)
        t *= eta
    return tuple(out)


def promotion_order(points: np.ndarray, *, ref: Sequence[float | None] = (None, None),
                    compressed: int | None = None) -> list[int]:
    """Row indices of ``points`` (every column maximised), best first: by non-dominated front,
    inside a front the row of the largest column ``compressed`` first (when given), then by
    exclusive hypervolume contribution against ``ref`` (largest first), then by index."""
    p = np.asarray(points, dtype=float)
    left = list(range(len(p)))
    order: list[int] = []
    while left:
        dom = dominance(p[left])
        layer = [left[i] for i in np.flatnonzero(~dom.any(axis=0))]
        contrib = contributions(p[layer], ref) if p.shape[1] == 2 else np.zeros(len(layer))
        ranked = sorted(range(len(layer)), key=lambda k: (-contrib[k], layer[k]))
        layer_order = [layer[k] for k in ranked]
        if compressed is not None:
            end = max(layer, key=lambda i: (p[i, compressed], -i))
            layer_order.remove(end)
            layer_order.insert(0, end)
        order += layer_order
        left = [i for i in left if i not in layer]
    return order


def decide(records: list[Sequence[float]], mine: Sequence[float], *, eta: int, ref=(None, None),
           compressed: int | None = None) -> str:
    """CONTINUE or STOP for a trial with objective values ``mine`` (maximised) reaching a rung
    where ``records`` were reported before it (the asynchronous rule: the first always goes on)."""
    if not records:
        return CONTINUE
    points = np.array([*records, mine], dtype=float)
    keep = math.ceil(len(points) / eta)
    position = promotion_order(points, ref=ref, compressed=compressed).index(len(points) - 1)
    return CONTINUE if position < keep else STOP


class MOASHAScheduler(SnapshotFirst, FIFOScheduler):
    """The Tune scheduler (see the module docstring). ``objectives``: the sweep's (metric, mode)
    pairs; ratio metrics are compared in log space; ``floors`` maps a metric to the value a
    trial's hypervolume contribution counts from (e.g. validation accuracy of the dense reference
    minus a margin); ``path``: the experiment folder that holds the ledger; ``group_by``: a config
    key whose value splits each rung into groups compared apart (None: one group)."""

    def __init__(self, objectives: Sequence[tuple[str, str]], *, max_epochs: int, path: str,
                 grace: int = 1, eta: int = 3, floors: dict[str, float] | None = None,
                 group_by: str | None = None) -> None:
        super().__init__()
        self.group_by = group_by
        self.objectives = [(m, mode) for m, mode in objectives]
        self.eta = eta
        self.rungs = rung_epochs(max_epochs, grace=grace, eta=eta)
        self.floors = dict(floors or {})
        self.path = path
        self._ledger: dict | None = None

    # -- the ledger ----------------------------------------------------------------------------
    def _follow(self, trial) -> None:
        """A local experiment resumed where it was moved to: its trials live there now (Tune
        rebases them), and so does the ledger; the launch location is only the fallback."""
        if self._ledger is None and not schema.is_uri(self.path):
            trial_path = getattr(trial, "path", None)
            if isinstance(trial_path, str) and os.path.isabs(trial_path):
                self.path = os.path.dirname(trial_path)

    @property
    def ledger(self) -> dict:
        if self._ledger is None:
            loc = Location(self.path)
            self._ledger = (safe_yaml.load(loc.read_text(LEDGER_FILE), what=LEDGER_FILE) if loc.is_file(LEDGER_FILE)
                            else {"rungs": {}, "decisions": {}})
        return self._ledger

    def _save(self) -> None:
        Location(self.path).write_text(LEDGER_FILE, yaml.safe_dump(self.ledger, sort_keys=True))

    def _point(self, result: dict) -> list[float] | None:
        out = []
        for metric, mode in self.objectives:
            v = result.get(metric)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or (metric in schema.RATIO_METRICS and v <= 0):
                return None
            v = math.log(v) if metric in schema.RATIO_METRICS else float(v)
            out.append(v if mode == "max" else -v)
        return out

    def _ref(self) -> list[float | None]:
        ref: list[float | None] = []
        for metric, mode in self.objectives:
            if metric in self.floors:
                ref.append(self.floors[metric] if mode == "max" else -self.floors[metric])
            elif metric in schema.RATIO_METRICS and mode == "max":
                ref.append(0.0)  # log(1): no compression
            else:
                ref.append(None)
        return ref

    def _compressed(self) -> int | None:
        return next((i for i, (m, mode) in enumerate(self.objectives)
                     if m == schema.MACS_COMPRESSION and mode == "max"), None)

    # -- Tune's scheduler interface --------------------------------------------------------------
    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        epoch = result.get("training_iteration")
        if epoch not in self.rungs or result.get(schema.DIVERGED):
            return CONTINUE
        self._follow(trial)
        key, rung = str(trial.trial_id), str(epoch)
        done = self.ledger["decisions"].get(key, {})
        if rung in done:  # replayed after a restore: the recorded decision stands
            return done[rung]
        mine = self._point(result)
        if mine is None:
            return CONTINUE
        records = self.ledger["rungs"].setdefault(rung, {})
        group = None  # one group: every trial at the rung
        if self.group_by is not None:
            group = str((getattr(trial, "config", None) or {}).get(self.group_by))
            self.ledger.setdefault("groups", {})[key] = group
        groups = self.ledger.get("groups", {})
        peers = [p for k, p in records.items() if groups.get(k) == group]
        action = decide(peers, mine, eta=self.eta, ref=self._ref(), compressed=self._compressed())
        records[key] = mine
        self.ledger["decisions"].setdefault(key, {})[rung] = action
        self._save()  # before Tune acts on it
        return action

    def set_search_properties(self, metric, mode, **spec) -> bool:
        return True  # the objectives come from the sweep, not from TuneConfig

    @property
    def supports_buffered_results(self) -> bool:
        return False  # every epoch's result must reach on_trial_result

    def debug_string(self) -> str:
        stopped = sum(STOP in d.values() for d in self.ledger["decisions"].values())
        return f"MO-ASHA: rungs at epochs {list(self.rungs)}, eta {self.eta}, {stopped} trial(s) stopped"

    def save(self, checkpoint_path: str) -> None:
        pass  # the ledger is saved at every decision

    def restore(self, checkpoint_path: str) -> None:
        pass

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_ledger"] = None  # re-read from the experiment folder after unpickling
        return state


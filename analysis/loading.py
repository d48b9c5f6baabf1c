"""Load a Ray Tune experiment folder (finished, running or interrupted) into pandas.

One row per trial: status, flattened config (``config/...``), final metrics, best metrics
(``best/...``), epochs run, trial folder and last checkpoint. Reads only files: no torch, no ray.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pandas as pd
import yaml

from rank_search import schema
from rank_search.errors import RankSearchError

from ._fs import Location

SWEEP_FILE = "rank_search_sweep.yaml"
STATE_PREFIX = "experiment_state-"
STATUSES = ("PENDING", "RUNNING", "PAUSED", "TERMINATED", "ERROR")


class NotAnExperimentError(RankSearchError):
    """The folder is not a Tune experiment."""


@dataclass
class Experiment:
    path: str
    sweep: dict | None
    trials: pd.DataFrame

    @property
    def objectives(self) -> list[tuple[str, str]]:
        """(metric, mode) pairs of the sweep (default accuracy vs MACs compression)."""
        if self.sweep and self.sweep.get("launch", {}).get("objectives"):
            return [tuple(o.split(":")) for o in self.sweep["launch"]["objectives"]]  # type: ignore[misc]
        return [(schema.VAL_ACCURACY, "max"), (schema.MACS_COMPRESSION, "max")]


def _decode(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _state_statuses(loc: Location) -> dict[str, dict[str, Any]]:
    """trial folder name -> {status, trial_id, num_failures} from Tune's latest state snapshot."""
    states = [f for f in loc.listdir() if f.startswith(STATE_PREFIX) and f.endswith(".json")]
    if not states:
        return {}
    try:
        data = json.loads(loc.read_text(sorted(states)[-1]))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}  # a snapshot being rewritten: fall back to the trial folders
    out = {}
    for item in data.get("trial_data", []):
        meta = _decode(item[0])
        runtime = _decode(item[1]) if len(item) > 1 else {}
        folder = meta.get("relative_logdir") or meta.get("custom_dirname")
        if folder:
            out[folder] = {"status": meta.get("status"), "trial_id": meta.get("trial_id"),
                           "num_failures": runtime.get("num_failures", 0) if isinstance(runtime, dict) else 0}
    return out


def _read_results(loc: Location, folder: str) -> list[dict[str, Any]]:
    rel = f"{folder}/result.json"
    if not loc.exists(rel):
        return []
    rows = []
    for line in loc.read_text(rel).splitlines():
        line = line.strip()
        if line:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a line being written right now
    return rows


def _is_trial_folder(loc: Location, name: str) -> bool:
    return loc.is_dir(name) and loc.exists(f"{name}/params.json")


def load_experiment(path: str) -> Experiment:
    """Read ``path`` (local folder or pyarrow URI) into an ``Experiment``."""
    loc = Location(path)
    if not loc.is_dir():
        raise NotAnExperimentError(f"experiment folder {path!r} does not exist")
    names = loc.listdir()
    sweep = yaml.safe_load(loc.read_text(SWEEP_FILE)) if SWEEP_FILE in names else None
    statuses = _state_statuses(loc)
    folders = [n for n in names if _is_trial_folder(loc, n)]
    if not folders and not statuses and sweep is None:
        raise NotAnExperimentError(
            f"{path!r} is not a Ray Tune experiment (no {STATE_PREFIX}*.json, no trial folders with params.json)"
        )
    rows = []
    for folder in sorted(set(folders) | set(statuses)):
        info = statuses.get(folder, {})
        config = json.loads(loc.read_text(f"{folder}/params.json")) if folder in folders else {}
        results = _read_results(loc, folder) if folder in folders else []
        last = results[-1] if results else {}
        row: dict[str, Any] = {
            "trial_id": info.get("trial_id") or last.get("trial_id") or folder,
            "status": info.get("status") or ("TERMINATED" if last.get("done") else "UNKNOWN"),
            "folder": folder,
            "epochs_run": len(results),
            "num_failures": info.get("num_failures", 0),
            "checkpoint": last.get("checkpoint_dir_name"),
        }
        row.update({f"config/{k}": v for k, v in config.items()})
        for key, value in last.items():
            if isinstance(value, (int, float, str, bool)) or value is None:
                row[key] = value
        for metric in (schema.VAL_ACCURACY,):
            values = [r[metric] for r in results if isinstance(r.get(metric), (int, float))]
            row[f"best/{metric}"] = max(values) if values else None
        rows.append(row)
    trials = pd.DataFrame(rows)
    if not trials.empty:
        trials = trials.sort_values("trial_id", kind="stable").reset_index(drop=True)
    return Experiment(path=path, sweep=sweep, trials=trials)


def trial_counts(path: str) -> dict[str, int]:
    """Number of trials by Tune status."""
    trials = load_experiment(path).trials
    return {} if trials.empty else {str(k): int(v) for k, v in trials["status"].value_counts().items()}


def epoch_history(path: str, folder: str) -> list[dict[str, Any]]:
    """All per-epoch results of one trial folder."""
    return _read_results(Location(path), folder)

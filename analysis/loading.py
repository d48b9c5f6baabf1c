"""Load a Ray Tune experiment folder (finished, running or interrupted) into pandas.

One row per trial: status, flattened config (``config/...``), final metrics, best metrics
(``best/...``), epochs run, whether the trial reported its last epoch (``finished``), when it
started (``started``, seconds since the epoch), trial folder and last checkpoint. Reads only
files: no torch, no ray.

An experiment being written (or killed) is read as it is: a state snapshot that is missing,
being rewritten or older than the trial folders, trial folders with no result yet, and a
result line cut in the middle are all fine.
"""
from __future__ import annotations

import csv
import io
import json
import os
import socket
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import yaml

from rank_search import schema
from rank_search.errors import RankSearchError
from rank_search.storage import Location

SWEEP_FILE = schema.SWEEP_FILE
RUN_FILE = schema.RUN_FILE
CHECKPOINT_PREFIX = "checkpoint_"
SPACE_EPOCHS = schema.SPACE_PREFIX + "epochs"
STATE_PREFIX = "experiment_state-"
STATUSES = ("PENDING", "RUNNING", "PAUSED", "TERMINATED", "ERROR")


class NotAnExperimentError(RankSearchError):
    """The folder is not a Tune experiment."""


@dataclass
class Experiment:
    path: str
    sweep: dict | None
    trials: pd.DataFrame
    # whether a `launch`/`resume` drives the sweep now: "running", "gone" (it ended, or was
    # killed on this host) or "unknown" (no driver record, or another host's)
    driver: str = "unknown"
    damaged: dict = field(default_factory=dict)  # trial id -> what is wrong with its result.json

    @property
    def objectives(self) -> list[tuple[str, str]]:
        """(metric, mode) pairs of the sweep (default accuracy vs MACs compression)."""
        if self.sweep and self.sweep.get("launch", {}).get("objectives"):
            try:
                return list(schema.parse_objectives(",".join(self.sweep["launch"]["objectives"])))
            except (RankSearchError, TypeError):
                pass  # a damaged record: fall back to the default pair
        return list(schema.DEFAULT_OBJECTIVES)


def _decode(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _state_statuses(loc: Location) -> dict[str, dict[str, Any]]:
    """trial folder name -> {status, trial_id, num_failures} from Tune's latest state snapshot."""
    states = [f for f in loc.listdir() if f.startswith(STATE_PREFIX) and f.endswith(".json")]
    if not states:
        return {}
    try:
        data = json.loads(loc.read_text(sorted(states)[-1]))
    except (json.JSONDecodeError, UnicodeDecodeError, OSError):
        return {}  # a snapshot being rewritten: fall back to the trial folders
    items = data.get("trial_data") if isinstance(data, dict) else None
    out = {}
    for item in items if isinstance(items, list) else []:
        try:
            meta = _decode(item[0])
            runtime = _decode(item[1]) if len(item) > 1 else {}
            folder = meta.get("relative_logdir") or meta.get("custom_dirname")
        except (TypeError, AttributeError, IndexError, KeyError, json.JSONDecodeError):
            continue  # a damaged entry: that trial is read from its folder
        if folder:
            runtime = runtime if isinstance(runtime, dict) else {}
            out[folder] = {"status": meta.get("status"), "trial_id": meta.get("trial_id"),
                           "num_failures": runtime.get("num_failures", 0), "started": runtime.get("start_time")}
    return out


#: what every trial reports as a number (null or NaN allowed: a diverged or unfinished trial's)
_NUMERIC_METRICS = (schema.VAL_ACCURACY, schema.TEST_ACCURACY, schema.VAL_LOSS, schema.TRAIN_LOSS, schema.EPOCH,
                    schema.DENSE_PARAMS, schema.COMPACT_PARAMS, schema.DENSE_MACS, schema.COMPACT_MACS,
                    schema.PARAMS_COMPRESSION, schema.MACS_COMPRESSION, schema.LATENCY_MS,
                    schema.DENSE_LATENCY_MS, schema.LATENCY_SPEEDUP)


def _parse_results(loc: Location, folder: str) -> tuple[list[dict[str, Any]], str | None, bool]:
    """(rows, problem, only_the_last_line): the result lines up to the first that is not a JSON
    object, what is wrong (None if nothing) and whether that is the last line (which may be one
    being written right now)."""
    rel = f"{folder}/result.json"
    if not loc.exists(rel):
        return [], None, False
    try:
        text = loc.read_bytes(rel).decode("utf-8")
    except UnicodeDecodeError:
        return [], "result.json is not UTF-8 text", False
    except OSError as exc:
        return [], f"result.json cannot be read: {exc.strerror or type(exc).__name__}", False
    lines = [(i, line.strip()) for i, line in enumerate(text.splitlines(), start=1) if line.strip()]
    rows = []
    for k, (number, line) in enumerate(lines):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
        if not isinstance(row, dict):
            return rows, f"result.json line {number} is not a JSON object", k == len(lines) - 1
        bad = next((m for m in _NUMERIC_METRICS if row.get(m) is not None
                    and not schema.is_number(row[m], finite=False)), None)
        if bad is not None:
            return rows, f"result.json line {number}: {bad} is {row[bad]!r:.40}, not a number", False
        rows.append(row)
    return rows, None, False


def _read_results(loc: Location, folder: str) -> list[dict[str, Any]]:
    return _parse_results(loc, folder)[0]


def _driver_state(loc: Location) -> str:
    """"running", "gone" or "unknown" from the driver record `launch`/`resume` keep."""
    try:
        record = json.loads(loc.read_text(schema.DRIVER_FILE)) if loc.is_file(schema.DRIVER_FILE) else None
    except (json.JSONDecodeError, UnicodeDecodeError, OSError):
        return "unknown"
    if not isinstance(record, dict):
        return "unknown"
    if record.get("ended"):
        return "gone"
    pid = record.get("pid")
    # a pid outside what the kernel hands out is damage; 0 or a negative one would signal a group
    if record.get("host") != socket.gethostname() or isinstance(pid, bool) or not isinstance(pid, int) \
            or not 0 < pid < 2 ** 31:
        return "unknown"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return "gone"
    except (PermissionError, OSError, OverflowError):
        return "running"
    return "running"


def _read_sweep(loc: Location) -> dict | None:
    try:
        data = yaml.safe_load(loc.read_text(SWEEP_FILE))
    except (yaml.YAMLError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _read_params(loc: Location, folder: str) -> dict[str, Any]:
    try:
        data = json.loads(loc.read_text(f"{folder}/params.json"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}  # being written
    return data if isinstance(data, dict) else {}


def _finished(config: dict[str, Any], last: dict[str, Any]) -> bool:
    """The trial reported its final epoch (or ended early by diverging)."""
    if not last:
        return False
    if last.get(schema.DIVERGED) or last.get("done"):
        return True
    epochs = config.get(SPACE_EPOCHS)
    return isinstance(epochs, int) and isinstance(last.get(schema.EPOCH), int) and last[schema.EPOCH] >= epochs


def _stopped_by_scheduler(loc: Location) -> dict[str, int]:
    """Trial id -> the rung epoch the sweep's scheduler stopped it at (``--scheduler mo-asha``'s
    ledger); a ledger that cannot be read is damage the trials table names, not a crash."""
    try:
        ledger = yaml.safe_load(loc.read_text(schema.SCHEDULER_LEDGER_FILE))
        return {str(t): int(r) for t, d in ledger["decisions"].items() for r, a in d.items() if a == "STOP"}
    except (ValueError, KeyError, TypeError, AttributeError, OSError, yaml.YAMLError) as exc:
        raise RankSearchError(f"{loc.join(schema.SCHEDULER_LEDGER_FILE)!r} cannot be read: {exc}") from None


def _started(info: dict[str, Any], results: list[dict[str, Any]]) -> float | None:
    """Start time (seconds since the epoch): Tune's record, else the first result minus its duration."""
    if isinstance(info.get("started"), (int, float)):
        return float(info["started"])
    if results and isinstance(results[0].get("timestamp"), (int, float)):
        return float(results[0]["timestamp"]) - float(results[0].get("time_this_iter_s") or 0.0)
    return None


def _is_trial_folder(loc: Location, name: str) -> bool:
    return loc.is_dir(name) and loc.exists(f"{name}/params.json")


def load_experiment(path: str) -> Experiment:
    """Read ``path`` (local folder or pyarrow URI) into an ``Experiment``."""
    loc = Location(path)
    if not loc.is_dir():
        if loc.exists():
            raise NotAnExperimentError(f"{path!r} is a file, not an experiment folder")
        raise NotAnExperimentError(f"experiment folder {path!r} does not exist")
    names = loc.listdir()
    sweep = _read_sweep(loc) if SWEEP_FILE in names else None
    statuses = _state_statuses(loc)
    folders = [n for n in names if _is_trial_folder(loc, n)]
    if not folders and not statuses and sweep is None:
        raise NotAnExperimentError(
            f"{path!r} is not a Ray Tune experiment (no {STATE_PREFIX}*.json, no trial folders with params.json)"
        )
    rows = []
    damaged = {}
    for folder in sorted(set(folders) | set(statuses)):
        info = statuses.get(folder, {})
        config = _read_params(loc, folder) if folder in folders else {}
        results, problem, last_line = _parse_results(loc, folder) if folder in folders else ([], None, False)
        # a cut last line is one being written, unless Tune says the trial ended
        if problem and (not last_line or info.get("status") in ("TERMINATED", "ERROR")):
            damaged[str(info.get("trial_id") or (results[-1].get("trial_id") if results else None) or folder)] = \
                f"{folder}/{problem}"
        last = results[-1] if results else {}
        if isinstance(last.get("config"), dict):
            # params.json has its keys sorted; the reported config keeps the sampler's order
            # (rank groups in model order)
            config = {**last["config"], **config}
        finished = _finished(config, last)
        row: dict[str, Any] = {
            "trial_id": info.get("trial_id") or last.get("trial_id") or folder,
            "status": info.get("status") or ("TERMINATED" if finished else "UNKNOWN"),
            "finished": finished,
            "started": _started(info, results),
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
        if damaged:
            row[schema.RESULTS_DAMAGED] = damaged.get(str(row["trial_id"]))
        rows.append(row)
    stopped = _stopped_by_scheduler(loc) if schema.SCHEDULER_LEDGER_FILE in names else {}
    for row in rows:
        row[schema.STOPPED_RUNG] = stopped.get(str(row["trial_id"]))
    trials = pd.DataFrame(rows)
    if not trials.empty:
        trials = trials.sort_values("trial_id", kind="stable").reset_index(drop=True)
    return Experiment(path=path, sweep=sweep, trials=trials, driver=_driver_state(loc), damaged=damaged)


def in_trial_order(trials: pd.DataFrame) -> pd.DataFrame:
    """``trials`` sorted by start time (trials that never started last), then trial id."""
    if trials.empty or "started" not in trials:
        return trials
    return trials.sort_values(["started", "trial_id"], kind="stable", na_position="last")


def trial_counts(path: str) -> dict[str, int]:
    """Number of trials by Tune status."""
    trials = load_experiment(path).trials
    return {} if trials.empty else {str(k): int(v) for k, v in trials["status"].value_counts().items()}


def epoch_history(path: str, folder: str) -> list[dict[str, Any]]:
    """All per-epoch results of one trial folder."""
    return _read_results(Location(path), folder)


def last_checkpoint(path: str, folder: str, hint: str | None = None) -> str | None:
    """Name of the trial's newest checkpoint folder holding a run record.

    ``hint`` (the last result's ``checkpoint`` column) is tried first; Tune keeps only the last
    few checkpoints and an interrupted trial may have lost the newest, so others are searched.
    """
    loc = Location(path)
    if hint and loc.exists(f"{folder}/{hint}/{RUN_FILE}"):
        return hint
    if not loc.is_dir(folder):
        return None
    names = sorted((n for n in loc.listdir(folder) if n.startswith(CHECKPOINT_PREFIX)), reverse=True)
    return next((n for n in names if loc.exists(f"{folder}/{n}/{RUN_FILE}")), None)


def run_record(path: str, folder: str, checkpoint: str | None = None) -> dict[str, Any] | None:
    """The ``run:`` mapping of the trial's newest checkpoint (model, method, integer ranks under
    ``ranks.layers`` as ``{layer: {scheme, rank}}``, ``ranks: None`` for a dense method), or
    ``None`` when the trial has no readable checkpoint yet."""
    name = last_checkpoint(path, folder, checkpoint)
    if name is None:
        return None
    try:
        data = yaml.safe_load(Location(path).read_text(f"{folder}/{name}/{RUN_FILE}"))
    except (yaml.YAMLError, OSError, UnicodeDecodeError):
        return None
    run = data.get("run") if isinstance(data, dict) else None
    return run if isinstance(run, dict) else None


def read_profile(path: str) -> tuple[list[dict[str, str]], dict[str, Any]] | None:
    """The experiment's layer sensitivity profile: the rows of ``sensitivity.csv`` (values as
    the strings written, ``""`` where a proxy was not measured) and ``sensitivity.yaml`` as a
    mapping; ``None`` when either file is missing or unreadable."""
    loc = Location(path)
    try:
        if not (loc.is_file(schema.PROFILE_FILE) and loc.is_file(schema.PROFILE_META_FILE)):
            return None
        rows = list(csv.DictReader(io.StringIO(loc.read_text(schema.PROFILE_FILE))))
        meta = yaml.safe_load(loc.read_text(schema.PROFILE_META_FILE))
    except (OSError, csv.Error, yaml.YAMLError, UnicodeDecodeError):
        return None
    return rows, (meta if isinstance(meta, dict) else {})

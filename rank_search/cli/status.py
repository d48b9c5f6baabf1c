"""`rank-search status`: trial counts, best trials and the Pareto front, read from disk (no Ray);
with ``--json`` the same as one JSON object."""
from __future__ import annotations

import argparse
import json
import math
from typing import Any

from .. import schema

#: The keys of `status --json` (stable; README), of each entry of its ``trials`` list, and of
#: its ``counts`` (every trial state, 0 included).
JSON_KEYS = ("experiment", "name", "space", "state", "driver", "num_samples", "objectives", "counts", "diverged",
             "trials", "top", "front", "knee", "resume")
TRIAL_KEYS = ("trial_id", "state", "epoch", "epochs", "finished", "diverged", "stopped_rung", "num_failures",
              "metrics", "config", "folder", "checkpoint", "damaged")
TRIAL_STATES = ("PENDING", "RUNNING", "PAUSED", "TERMINATED", "ERROR", schema.INTERRUPTED, "UNKNOWN")
#: ``state`` of the sweep: its driver runs; every trial ended (TERMINATED or ERROR); its driver is
#: gone with trials left (`resume` finishes it); neither can be told (no driver record, another host's).
SWEEP_STATES = ("running", "finished", "interrupted", "unknown")
#: Each trial's ``metrics`` (the text's columns and the compact counts; null where not reported),
#: then the sweep's objectives not among them.
METRIC_KEYS = (schema.VAL_ACCURACY, schema.TEST_ACCURACY, schema.MACS_COMPRESSION, schema.PARAMS_COMPRESSION,
               schema.LATENCY_SPEEDUP, schema.LATENCY_MS, schema.COMPACT_MACS, schema.COMPACT_PARAMS)
_COUNTS = (schema.COMPACT_MACS, schema.COMPACT_PARAMS, schema.DENSE_MACS, schema.DENSE_PARAMS)
_ENDED = ("TERMINATED", "ERROR")


def add_parser(sub) -> None:
    p = sub.add_parser("status", help="show a sweep's progress and Pareto front (works while it runs)",
                       description="Read the experiment folder (local or URI) and print trial counts by state, "
                                   "the best trials and the current Pareto front. Does not start Ray and "
                                   "unpickles nothing.")
    p.add_argument("experiment", metavar="EXP_DIR",
                   help="the experiment folder or URI (from `rank-search launch`), running or not")
    p.add_argument("--top", type=int, default=5, metavar="N", help="how many best finished trials to list (0: none)")
    p.add_argument("--json", action="store_true",
                   help=f"print one JSON object (keys: {', '.join(JSON_KEYS)}; each trial: {', '.join(TRIAL_KEYS)}) "
                        "instead of the text")
    p.set_defaults(func=run)


def _number(value: Any, *, integer: bool = False) -> int | float | None:
    """A reported number as JSON wants it: None where missing (NaN in a table) or not a finite
    number, counts as integers."""
    if value is None or isinstance(value, (str, bool)):
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(value):
        return None
    return int(value) if integer else value


def _config(loc, trial) -> dict[str, Any]:
    """The searched part of a trial's config (method, knobs, train settings, ranks or target; not
    the sweep's ``space.*`` constants), with its own types: params.json as Tune wrote it (a table
    turns an integer knob that other trials lack into a float), else the loaded row."""
    config = None
    try:
        config = json.loads(loc.read_text(f"{trial['folder']}/params.json"))
    except (OSError, ValueError):  # none yet, or being written
        pass
    if not isinstance(config, dict):
        prefix = schema.CONFIG_COLUMN_PREFIX
        config = {k[len(prefix):]: v for k, v in trial.items() if k.startswith(prefix) and _present(v)}
    return {k: v for k, v in config.items() if not k.startswith(schema.SPACE_PREFIX)}


def _present(value: Any) -> bool:
    return not (value is None or (isinstance(value, float) and value != value))


def _sweep_state(exp, statuses: list[str], expected: int | None) -> str:
    ended = sum(s in _ENDED for s in statuses)
    if exp.driver == "running":
        return "running"
    if statuses and ended == len(statuses) and (expected is None or ended >= expected):
        return "finished"
    return "interrupted" if exp.driver == "gone" else "unknown"


def status_info(exp, *, top: int = 5) -> dict[str, Any]:
    """What `status` shows, as plain data (``JSON_KEYS``): the sweep, its trials (``TRIAL_KEYS``),
    the ``top`` best finished trials by val_accuracy and the Pareto front as trial ids, both in the
    text's order."""
    from analysis.loading import Experiment
    from analysis.summary import best_trials, front, shown_statuses

    from ..storage import Location
    from ._scripting import command
    from .export import absolute

    launch = (exp.sweep or {}).get("launch") or {}
    expected = launch.get("num_samples") if isinstance(launch.get("num_samples"), int) else None
    path = absolute(exp.path)
    trials, top_ids, front_ids, knee = [], [], [], None
    if not exp.trials.empty:
        exp = Experiment(exp.path, exp.sweep, exp.trials.assign(status=shown_statuses(exp)), exp.driver, exp.damaged)
        loc = Location(exp.path)
        metrics = list(METRIC_KEYS) + [m for m, _ in exp.objectives if m not in METRIC_KEYS]
        for _, t in exp.trials.iterrows():
            epoch = _number(t.get(schema.EPOCH), integer=True)
            trials.append({
                "trial_id": str(t["trial_id"]), "state": str(t["status"]),
                "epoch": epoch if epoch is not None else 0,
                "epochs": _number(t.get(schema.CONFIG_COLUMN_PREFIX + schema.SPACE_PREFIX + "epochs"), integer=True),
                "finished": bool(t["finished"]), "diverged": _present(t.get(schema.DIVERGED)) and bool(t[schema.DIVERGED]),
                "stopped_rung": _number(t.get(schema.STOPPED_RUNG), integer=True),
                "num_failures": _number(t.get("num_failures"), integer=True) or 0,
                "metrics": {m: _number(t.get(m), integer=m in _COUNTS) for m in metrics},
                "config": _config(loc, t), "folder": str(t["folder"]),
                "checkpoint": t["checkpoint"] if isinstance(t.get("checkpoint"), str) else None,
                "damaged": exp.damaged.get(str(t["trial_id"])),
            })
        top_ids = [str(i) for i in best_trials(exp, top=top)["trial_id"]]  # finished trials only
        f = front(exp)
        front_ids = [str(i) for i in f["trial_id"]]
        knee = next((str(i) for i, k in zip(f["trial_id"], f["knee"]) if k), None)
    statuses = [t["state"] for t in trials]
    counts = {s: statuses.count(s) for s in TRIAL_STATES}
    counts.update({s: statuses.count(s) for s in statuses if s not in counts})  # a state Tune adds later
    state = _sweep_state(exp, statuses, expected)
    return {
        "experiment": path, "name": launch.get("name") or path.rstrip("/").rsplit("/", 1)[-1],
        "space": launch.get("space"), "state": state, "driver": exp.driver, "num_samples": expected,
        "objectives": [{"metric": m, "mode": d} for m, d in exp.objectives], "counts": counts,
        "diverged": sum(t["diverged"] for t in trials), "trials": trials, "top": top_ids, "front": front_ids,
        "knee": knee, "resume": command("resume", path) if state == "interrupted" else None,
    }


def run(args: argparse.Namespace) -> int:
    from analysis.loading import load_experiment
    from analysis.summary import status_text

    from ..errors import RankSearchError
    from ._scripting import as_invoked, print_json

    if args.top < 0:
        raise RankSearchError(f"--top must be >= 0, got {args.top}")
    exp = load_experiment(args.experiment)
    if args.json:
        print_json(status_info(exp, top=args.top), JSON_KEYS)
        return 0
    # its hints (`rank-search resume ...`) spelled as this command was invoked
    print(as_invoked(status_text(exp, top=args.top)))
    return 0

"""`rank-search export`: the best trial's config (integer ranks, method, knobs, metrics, provenance)."""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import sys

import yaml

from .. import __version__, safe_yaml, schema
from ..errors import RankSearchError
from ._scripting import LazyChoices, command

RUN_FILE = schema.RUN_FILE
PICKS = LazyChoices.of("pick", "analysis.select", "PICKS")
#: The keys of `export --json` (stable; README): the files written, the trial, its metrics and
#: the command that re-trains it.
JSON_KEYS = ("out", "weights", "trial_id", "method", "pick", "experiment", "metrics", "retrain")


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="export the best rank config of a sweep",
                       description="Pick a trial from the Pareto front and write a config that "
                                   "`rank-search train --config` re-runs.")
    p.add_argument("experiment", metavar="EXP_DIR", help="the experiment folder or URI (from `rank-search launch`)")
    p.add_argument("--pick", default="knee", type=PICKS, choices=PICKS, metavar="PICK",
                   help="which trial of the Pareto front: one of %(choices)s")
    p.add_argument("--min-accuracy", type=float, metavar="A",
                   help="only trials with val_accuracy >= A (default: no bound)")
    p.add_argument("--max-macs", type=float, metavar="M",
                   help="only trials whose compact model has <= M MACs (default: no bound)")
    p.add_argument("--include-stopped", action="store_true",
                   help="also pick among the trials --scheduler mo-asha stopped early (default: trials that "
                        "trained their full budget only)")
    p.add_argument("--oneshot", action="store_true",
                   help="pick among the one-shot front of a `launch --searcher oneshot` sweep (oneshot.csv), "
                        "not its trials: OUT.yaml fine-tunes that truncation with `train --config`, --weights "
                        "writes its compact model before fine-tuning (default: pick a trial)")
    p.add_argument("--weights", action="store_true", help="also copy the trial's compact weights (OUT.pt)")
    p.add_argument("--out", required=True, help="output YAML file")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out (and OUT.pt)")
    p.add_argument("--json", action="store_true",
                   help=f"print one JSON object (keys: {', '.join(JSON_KEYS)}) instead of the text lines")
    p.set_defaults(func=run)


def _atomic_write(path: str, data: bytes) -> None:
    from ._output import write_file_atomically

    write_file_atomically(path, data)  # whole or not at all, with the umask's permissions (not 0600)


#: The metrics an export carries, named as `train` writes them in metrics.json.
METRIC_KEYS = (schema.VAL_ACCURACY, schema.TEST_ACCURACY, schema.DENSE_PARAMS, schema.COMPACT_PARAMS,
               schema.DENSE_MACS, schema.COMPACT_MACS, schema.PARAMS_COMPRESSION, schema.MACS_COMPRESSION,
               schema.EPOCHS)
COUNT_KEYS = (schema.DENSE_PARAMS, schema.COMPACT_PARAMS, schema.DENSE_MACS, schema.COMPACT_MACS, schema.EPOCHS)


def absolute(path: str) -> str:
    """A local path made absolute (found from any folder); a URI as it is."""
    return path if schema.is_uri(path) else os.path.abspath(path)


def trial_metrics(loc, ckpt: str, trial) -> dict:
    """The trial's final metrics under ``train``'s names, exactly as it wrote them: from the final
    checkpoint's metrics.json (integers stay integers, floats are the trial's own), else from its
    last reported row (where a table made every number a float), counts turned back into integers."""
    written = {}
    if loc.exists(f"{ckpt}/{schema.METRICS_FILE}"):
        written = json.loads(loc.read_text(f"{ckpt}/{schema.METRICS_FILE}"))
    out = {}
    for key in METRIC_KEYS:
        # a trial reports the epoch it finished as ``epoch``; train writes the total as ``epochs``
        names = (key, schema.EPOCH) if key == schema.EPOCHS else (key,)
        value = next((source[n] for source in (written, trial) for n in names
                      if n in source and source[n] is not None), None)
        if isinstance(value, float) and value != value:  # NaN: not reported
            value = None
        if value is not None:
            value = int(value) if key in COUNT_KEYS else float(value)
        out[key] = value
    return out


def _check_out(args: argparse.Namespace) -> None:
    """--out (and OUT.pt with --weights) can be written: its folder exists, no file is in the way."""
    from ._output import check_writable

    out_dir = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(out_dir):
        raise RankSearchError(f"folder of --out {args.out!r} does not exist: {out_dir}")
    for target in [args.out] + ([os.path.splitext(args.out)[0] + ".pt"] if args.weights else []):
        if os.path.isdir(target):
            raise RankSearchError(f"--out {target!r} is a folder; give a file name")
        if os.path.exists(target) and not args.overwrite:
            raise RankSearchError(f"--out {target!r} already exists; choose another or pass --overwrite")
    check_writable(out_dir, what=f"--out {args.out!r}")


def run(args: argparse.Namespace) -> int:
    from analysis.loading import load_experiment
    from analysis.summary import damaged_lines

    from ._pick import pick_checkpoint

    if args.oneshot:
        return run_oneshot(args)
    _check_out(args)
    exp = load_experiment(args.experiment)
    for line in damaged_lines(exp):
        print(f"export: {line}", file=sys.stderr)
    picked = pick_checkpoint(args.experiment, pick=args.pick, min_accuracy=args.min_accuracy,
                             max_macs=args.max_macs, exp=exp, include_stopped=args.include_stopped)
    trial, loc, ckpt = picked.trial, picked.loc, picked.checkpoint
    run_record = safe_yaml.load(loc.read_text(picked.file(RUN_FILE)), what=picked.file(RUN_FILE))["run"]
    launch = (exp.sweep or {}).get("launch", {})
    record = {
        "run": run_record,
        "metrics": trial_metrics(loc, ckpt, trial),
        "provenance": {
            "trial_id": str(trial["trial_id"]),
            "trial_folder": str(trial["folder"]),
            "experiment": absolute(args.experiment),
            "sweep": launch.get("name"),
            "space": launch.get("space"),
            "searcher": launch.get("searcher"),
            "searcher_seed": launch.get("seed"),
            "training_seed": run_record.get("seed"),
            "pick": args.pick,
            "exported": _dt.datetime.now().isoformat(timespec="seconds"),
            "rank_search_version": __version__,
        },
    }
    weights = None
    if args.weights:
        from ..checkpoint import read_compact_bytes

        weights_rel = picked.compact_weights()
        weights = loc.read_bytes(weights_rel)
        # loaded with weights_only=True before it is copied: a booby-trapped file is refused, never run
        read_compact_bytes(weights, label=f"{args.experiment.rstrip('/')}/{weights_rel}")
    return _write(args, record, weights, JSON_KEYS, {"trial_id": str(trial["trial_id"]), "method": run_record["method"]},
                  f"exported trial {trial['trial_id']} ({run_record['method']}, pick {args.pick})",
                  "re-train it with")


def _write(args: argparse.Namespace, record: dict, weights: bytes | None, keys: tuple[str, ...], ids: dict,
           what: str, hint: str) -> int:
    """Write ``args.out`` (and OUT.pt from ``weights``), each atomically, then say so: one JSON
    object of ``keys`` under --json (``ids`` name the exported thing), else two text lines."""
    weights_path = os.path.splitext(args.out)[0] + ".pt"
    if weights is not None:
        _atomic_write(weights_path, weights)
        record["weights"] = os.path.basename(weights_path)
    _atomic_write(args.out, yaml.safe_dump(record, sort_keys=False).encode())
    m = record["metrics"]
    follow = command("train", "--config", args.out, "--out", "DIR")
    if args.json:
        out = {"out": os.path.abspath(args.out), "weights": os.path.abspath(weights_path) if weights is not None else None,
               **ids, "pick": args.pick, "experiment": record["provenance"]["experiment"], "metrics": m,
               "retrain": follow}
        print(json.dumps({k: out[k] for k in keys}, indent=2))
        return 0
    print(f"{what}: val_acc {m[schema.VAL_ACCURACY]:.4f}, test_acc {(m[schema.TEST_ACCURACY] or float('nan')):.4f}, "
          f"macs_compression {m[schema.MACS_COMPRESSION]:.2f} -> {args.out}"
          + (f" (+ {record['weights']})" if weights is not None else ""))
    print(f"{hint}: {follow}")
    return 0


#: The keys of `export --oneshot --json`: as ``JSON_KEYS``, the front point's index for the trial's,
#: its metrics before fine-tuning, and the command that fine-tunes it.
ONESHOT_JSON_KEYS = ("out", "weights", "point", "method", "pick", "experiment", "metrics", "retrain")


def run_oneshot(args: argparse.Namespace) -> int:
    """`export --oneshot`: a one-shot front point (``search.oneshot_export``), not a trial."""
    from ..search.oneshot_export import export_point, front_points
    from ..search.sweep_record import read_sweep_record
    from ._pick import pick_row

    if args.include_stopped:
        raise RankSearchError("--include-stopped picks among trials; --oneshot picks among one-shot front points")
    _check_out(args)
    experiment = absolute(args.experiment)
    row = pick_row(front_points(experiment), pick=args.pick, min_accuracy=args.min_accuracy, max_macs=args.max_macs)
    point = export_point(experiment, row)
    m = point.metrics
    if abs(m[schema.VAL_ACCURACY] - point.search_val_accuracy) > 1e-6:  # another device or library version
        print(f"export: note: point {row['point']}'s val_accuracy is {m[schema.VAL_ACCURACY]:.6f} here, "
              f"{point.search_val_accuracy:.6f} in {schema.ONESHOT_FILE}", file=sys.stderr)
    launch = read_sweep_record(experiment)["launch"]
    record = {
        "run": point.run.to_dict(),
        "metrics": m,  # before fine-tuning
        "provenance": {
            "oneshot_point": row["point"], "oneshot_val_accuracy": point.search_val_accuracy,
            "experiment": experiment, "sweep": launch.get("name"), "space": launch.get("space"),
            "searcher": launch.get("searcher"), "searcher_seed": launch.get("seed"),
            "training_seed": point.run.seed, "pick": args.pick,
            "exported": _dt.datetime.now().isoformat(timespec="seconds"), "rank_search_version": __version__,
        },
    }
    return _write(args, record, point.compact if args.weights else None, ONESHOT_JSON_KEYS,
                  {"point": row["point"], "method": "nested"},
                  f"exported one-shot point {row['point']} (pick {args.pick}), before fine-tuning",
                  f"fine-tune it ({point.run.epochs} epoch(s)) with")

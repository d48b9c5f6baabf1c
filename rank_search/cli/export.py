"""`rank-search export`: the best trial's config (integer ranks, method, knobs, metrics, provenance)."""
from __future__ import annotations

import argparse
import datetime as _dt
import os
import tempfile

import yaml

from .. import __version__, schema
from ..errors import RankSearchError

RUN_FILE = schema.RUN_FILE


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="export the best rank config of a sweep",
                       description="Pick a trial from the Pareto front and write a config that "
                                   "`rank-search train --config` re-runs.")
    p.add_argument("experiment", metavar="EXP_DIR")
    p.add_argument("--pick", default="knee", help="knee (default) | max-accuracy | max-compression")
    p.add_argument("--min-accuracy", type=float, help="only trials with val_accuracy >= A")
    p.add_argument("--max-macs", type=float, help="only trials whose compact model has <= M MACs")
    p.add_argument("--weights", action="store_true", help="also copy the trial's compact weights (OUT.pt)")
    p.add_argument("--out", required=True, help="output YAML file")
    p.set_defaults(func=run)


def _atomic_write(path: str, data: bytes) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def run(args: argparse.Namespace) -> int:
    from ..storage import Location
    from analysis.loading import load_experiment
    from analysis.select import pick_trial

    out_dir = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(out_dir):
        raise RankSearchError(f"folder of --out {args.out!r} does not exist: {out_dir}")
    exp = load_experiment(args.experiment)
    trial = pick_trial(exp, pick=args.pick, min_accuracy=args.min_accuracy, max_macs=args.max_macs)
    loc = Location(args.experiment)
    ckpt = f"{trial['folder']}/{trial['checkpoint']}"
    if not isinstance(trial["checkpoint"], str) or not loc.exists(f"{ckpt}/{RUN_FILE}"):
        raise RankSearchError(f"trial {trial['trial_id']} has no final checkpoint with {RUN_FILE} in {args.experiment!r}")
    run_record = yaml.safe_load(loc.read_text(f"{ckpt}/{RUN_FILE}"))["run"]
    launch = (exp.sweep or {}).get("launch", {})
    metric_keys = (schema.VAL_ACCURACY, schema.TEST_ACCURACY, schema.DENSE_PARAMS, schema.COMPACT_PARAMS,
                   schema.DENSE_MACS, schema.COMPACT_MACS, schema.PARAMS_COMPRESSION, schema.MACS_COMPRESSION,
                   schema.EPOCH)
    record = {
        "run": run_record,
        "metrics": {k: (float(trial[k]) if k in trial and trial[k] is not None else None) for k in metric_keys},
        "provenance": {
            "trial_id": str(trial["trial_id"]),
            "trial_folder": str(trial["folder"]),
            "experiment": str(exp.path),
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
    if args.weights:
        weights_rel = f"{ckpt}/{schema.COMPACT_WEIGHTS_FILE}"
        if not loc.exists(weights_rel):
            raise RankSearchError(f"trial {trial['trial_id']} has no {schema.COMPACT_WEIGHTS_FILE} in its final checkpoint")
        weights_path = os.path.splitext(args.out)[0] + ".pt"
        _atomic_write(weights_path, loc.read_bytes(weights_rel))
        record["weights"] = os.path.basename(weights_path)
    _atomic_write(args.out, yaml.safe_dump(record, sort_keys=False).encode())
    m = record["metrics"]
    print(f"exported trial {trial['trial_id']} ({run_record['method']}, pick {args.pick}): "
          f"val_acc {m[schema.VAL_ACCURACY]:.4f}, test_acc {(m[schema.TEST_ACCURACY] or float('nan')):.4f}, "
          f"macs_compression {m[schema.MACS_COMPRESSION]:.2f} -> {args.out}"
          + (f" (+ {record['weights']})" if args.weights else ""))
    print(f"re-train it with: rank-search train --config {args.out} --out DIR")
    return 0

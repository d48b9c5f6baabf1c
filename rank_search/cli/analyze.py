"""`rank-search analyze`: Pareto fronts, hypervolume, figures and an HTML report of sweeps (no Ray)."""
from __future__ import annotations

import argparse
import sys

from ..errors import RankSearchError


def add_parser(sub) -> None:
    p = sub.add_parser("analyze", help="analyse sweeps: Pareto front, hypervolume, figures, HTML report",
                       description="Read one or more experiment folders (local or URI; finished, running or "
                                   "interrupted) and write trials.csv, pareto.csv, figures (PNG + SVG) and a "
                                   "self-contained report.html to --out. Several sweeps overlay their fronts. "
                                   "Does not start Ray.")
    p.add_argument("experiments", nargs="+", metavar="EXP_DIR",
                   help="experiment folders (give them before --labels)")
    p.add_argument("--labels", nargs="+", metavar="LABEL", help="one name per EXP_DIR (default: folder names)")
    p.add_argument("--objectives", help="comma-separated METRIC:max|min (default: the first sweep's, "
                                        "e.g. val_accuracy:max,macs_compression:max)")
    p.add_argument("--reference", metavar="V1,V2,...",
                   help="hypervolume reference point, one value per objective (default: accuracy 0, "
                        "compression 1.0 = the dense model; see analysis.hypervolume.default_reference)")
    p.add_argument("--out", required=True, help="output folder (written atomically)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing non-empty --out")
    p.set_defaults(func=run)


def _say(message: str) -> None:
    print(f"analyze: {message}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from analysis.analyze import analyze
    from analysis.hypervolume import parse_reference

    from ..schema import parse_objectives
    from ._output import atomic_output_dir, check_out_dir

    objectives = parse_objectives(args.objectives) if args.objectives else None
    reference = None
    if args.reference:
        try:
            reference = parse_reference(args.reference)
        except ValueError as exc:
            raise RankSearchError(f"--reference: {exc}") from None
    check_out_dir(args.out, overwrite=args.overwrite)
    with atomic_output_dir(args.out, overwrite=args.overwrite) as tmp:  # umask permissions, not 0700
        result = analyze(args.experiments, tmp, labels=args.labels, objectives=objectives, reference=reference,
                         log=_say)
    print(result.summary)
    figures = sum(f.endswith((".png", ".svg")) for f in result.files)
    print(f"\nwrote {args.out}/: trials.csv, pareto.csv, report.html and {figures} figure files (PNG + SVG)")
    return 0

"""`rank-search status`: trial counts, best trials and the Pareto front, read from disk (no Ray)."""
from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser("status", help="show a sweep's progress and Pareto front (works while it runs)",
                       description="Read the experiment folder (local or URI) and print trial counts by state, "
                                   "the best trials and the current Pareto front. Does not start Ray.")
    p.add_argument("experiment", metavar="EXP_DIR",
                   help="the experiment folder or URI (from `rank-search launch`), running or not")
    p.add_argument("--top", type=int, default=5, metavar="N", help="how many best trials to list (0: none)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from analysis.loading import load_experiment
    from analysis.summary import status_text

    from ..errors import RankSearchError
    from ._scripting import as_invoked

    if args.top < 0:
        raise RankSearchError(f"--top must be >= 0, got {args.top}")
    # its hints (`rank-search resume ...`) spelled as this command was invoked
    print(as_invoked(status_text(load_experiment(args.experiment), top=args.top)))
    return 0

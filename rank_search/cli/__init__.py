"""`rank-search` command line. Heavy imports (torch) happen inside the sub-commands."""
from __future__ import annotations

import argparse
import sys

from ..errors import RankSearchError
from . import analyze, deploy, evaluate, export, launch, layers, profile, status, train

COMMANDS = (train, layers, profile, launch, status, export, analyze, deploy, evaluate)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rank-search",
        description="Low-rank training of CNNs (TRP, LRPET, DeepTwist, ELRT) and rank search.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except RankSearchError as exc:
        print(f"rank-search {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"rank-search {args.command}: interrupted", file=sys.stderr)
        return 130


__all__ = ["build_parser", "main"]

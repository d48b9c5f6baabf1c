"""`rank-search` command line. Heavy imports (torch) happen inside the sub-commands."""
from __future__ import annotations

import argparse
import sys

from ..errors import RankSearchError
from . import analyze, deploy, evaluate, export, launch, layers, profile, status, train

COMMANDS = (train, layers, profile, launch, status, export, analyze, deploy, evaluate)


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line naming the problem (exit 2), like every other bad input."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
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
    except OSError as exc:  # a path the user named cannot be read or written (permissions, a full disk)
        where = f": {exc.filename}" if getattr(exc, "filename", None) else ""
        print(f"rank-search {args.command}: error: {exc.strerror or type(exc).__name__}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"rank-search {args.command}: interrupted", file=sys.stderr)
        return 130


__all__ = ["build_parser", "main"]

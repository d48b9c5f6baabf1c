"""`rank-search` command line. Heavy imports (torch) happen inside the sub-commands."""
from __future__ import annotations

import os
import sys

from .. import __version__
from ..errors import RankSearchError
from . import analyze, deploy, evaluate, export, launch, layers, profile, status, train
from . import list as list_command
from ._scripting import PROG, Parser, as_invoked, make_parser

COMMANDS = (train, layers, profile, launch, status, export, analyze, deploy, evaluate, list_command)

#: Exit codes: 0 success, 1 a sweep whose trials failed, 2 bad input (one line on stderr),
#: 3 a `train` run that diverged, 130 interrupted (see README).
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


def build_parser() -> Parser:
    parser = Parser(
        prog=PROG,
        description="Low-rank training of CNNs (TRP, LRPET, DeepTwist, ELRT) and rank search.",
        epilog="`rank-search list` prints the models, data sets, methods, schemes and search spaces.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=make_parser)
    for module in COMMANDS:
        module.add_parser(sub)
    parser.commands = tuple(sub.choices)  # for "did you mean" (see _unknown_command)
    return parser


def _unknown_command(parser: Parser, argv: list[str]) -> str | None:
    """The one-line message for a first argument that is no sub-command (``lauch``: did you mean
    ``launch``?), or None. The top-level flags take no values, so the first non-flag is the command."""
    from ._names import unknown_name

    first = next((a for a in argv if not a.startswith("-")), None)
    commands = parser.commands
    if first is None or first in commands:
        return None
    return unknown_name("command", first, commands).replace("valid choices", "valid commands")


def main(argv: list[str] | None = None) -> int:
    """Run one command; the exit code is returned (a bad flag too, as 2), never raised."""
    parser = build_parser()
    unknown = _unknown_command(parser, sys.argv[1:] if argv is None else argv)
    if unknown:
        print(f"{PROG}: error: {unknown}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a bad flag (one line already printed)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_BAD_INPUT)
    try:
        return int(args.func(args) or 0)
    except RankSearchError as exc:
        print(f"{PROG} {args.command}: error: {as_invoked(str(exc))}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"{PROG} {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `rank-search list | head`: the reader left; not an error of ours
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # Python would complain again flushing stdout at exit
        return 0


__all__ = ["build_parser", "main"]

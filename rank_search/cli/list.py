"""`rank-search list [KIND]`: the registered models, data sets, methods, schemes and search spaces,
one per line (for scripts, and to see them without causing an error)."""
from __future__ import annotations

import argparse
import importlib
import json

from ._names import BUILTIN, space_names
from ._scripting import LazyChoices

#: kind -> (module, registry attribute): the one owner of each list. The CLI prints the built-in
#: names of the torch-backed ones from ``_names.BUILTIN`` (no torch; a test keeps them equal).
KINDS = {
    "models": ("rank_search.models", "MODELS"),
    "datasets": ("rank_search.data", "DATASETS"),
    "methods": ("rank_search.methods", "METHODS"),
    "schemes": ("rank_search.layers", "SCHEMES"),
    "spaces": ("search_spaces", "SPACES"),
}


def add_parser(sub) -> None:
    p = sub.add_parser("list", help="list the models, data sets, methods, schemes or search spaces",
                       description="Print the registered names, one per line: of one KIND, or of every kind as "
                                   "'KIND NAME' lines.")
    kinds = LazyChoices("kind", lambda: tuple(KINDS))
    p.add_argument("kind", nargs="?", type=kinds, choices=kinds, metavar="KIND",
                   help=f"one of {', '.join(KINDS)} (default: all of them)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object {KIND: [NAME, ...]} instead")
    p.set_defaults(func=run)


def names(kind: str) -> list[str]:
    """The sorted names registered under ``kind``."""
    if kind == "spaces":
        return space_names()
    return sorted(BUILTIN[kind])


def registered_names(kind: str) -> list[str]:
    """The sorted names in ``kind``'s registry itself (imports torch; for the test of ``BUILTIN``)."""
    module, attr = KINDS[kind]
    return list(getattr(importlib.import_module(module), attr).names())


def run(args: argparse.Namespace) -> int:
    kinds = [args.kind] if args.kind else list(KINDS)
    found = {kind: names(kind) for kind in kinds}
    if args.json:
        print(json.dumps(found, indent=2))
    elif args.kind:
        print("\n".join(found[args.kind]))
    else:
        print("\n".join(f"{kind} {name}" for kind in kinds for name in found[kind]))
    return 0

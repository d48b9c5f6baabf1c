"""What makes the CLI scriptable: one-line argparse errors, every default in the help, lazy
``choices=`` from the registries (no torch for ``rank-search --help``), hints that print the
command as it was invoked, and ``--json`` output that is strict JSON."""
from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import shlex
import shutil
import sys
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

PROG = "rank-search"


class Parser(argparse.ArgumentParser):
    """An argparse parser whose errors are one line, ``PROG COMMAND: error: ...``, exit code 2,
    like every other rank-search error (the usage is one ``--help`` away)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


class DefaultsFormatter(argparse.HelpFormatter):
    """Appends ``(default: X)`` to a flag's help where it has a default and does not state it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        # ``is``, not ``in``: a default of 0 or 0.0 equals False and must still be shown
        if "default" in text or any(default is v for v in (None, False, argparse.SUPPRESS)) \
                or not action.option_strings:
            return text
        shown = ",".join(map(str, default)) if isinstance(default, (list, tuple)) else default
        return f"{text} (default: {shown})".strip()


def make_parser(**kwargs) -> Parser:
    """The parser class of every sub-command (``add_subparsers(parser_class=make_parser)``)."""
    kwargs.setdefault("formatter_class", DefaultsFormatter)
    return Parser(**kwargs)


class LazyChoices:
    """``choices=`` and ``type=`` of a flag whose valid values live in a registry or a constant
    of a module that imports torch: loaded the first time a value is checked or the help is
    shown, so building the parser (and ``rank-search --help``) imports nothing. A bad value is
    the registry's own one-line message, ``unknown KIND 'x'; valid choices: a, b``.

    Args:
        kind: what a value names (``method``, ``scheme``, ...), for the error message.
        load: returns the valid values.
    """

    def __init__(self, kind: str, load: Callable[[], Iterable[str]]) -> None:
        self.kind, self._load, self._values = kind, load, None

    @classmethod
    def of(cls, kind: str, module: str, attr: str) -> "LazyChoices":
        """The names of ``module.attr``: a ``Registry`` (its sorted names) or a tuple of values."""
        def load() -> Iterable[str]:
            values = getattr(importlib.import_module(module), attr)
            return values.names() if hasattr(values, "names") else values

        return cls(kind, load)

    @classmethod
    def builtin(cls, kind: str, key: str) -> "LazyChoices":
        """The built-in names of ``key`` (``models``, ``datasets``, ...) from the CLI's static table
        (``_names.BUILTIN``, kept equal to the registries by a test): checking a value imports no torch."""
        from ._names import BUILTIN

        return cls(kind, lambda: BUILTIN[key])

    def values(self) -> list[str]:
        if self._values is None:
            self._values = list(self._load())
        return self._values

    def __contains__(self, value: object) -> bool:
        return value in self.values()

    def __iter__(self) -> Iterator[str]:
        return iter(self.values())

    def __call__(self, value: str) -> str:  # the flag's ``type=``: checks before argparse's choices
        if value not in self.values():
            from ._names import unknown_name

            raise argparse.ArgumentTypeError(unknown_name(self.kind, value, self.values()))
        return value


def invoked_command() -> str:
    """How the user ran rank-search, for hints they can paste: ``rank-search`` when that is
    what the shell finds, the path they typed otherwise (``.venv/bin/rank-search``), or
    ``python -m rank_search``."""
    argv0 = sys.argv[0] if sys.argv else ""
    base = os.path.basename(argv0)
    if base == PROG:
        found = shutil.which(PROG)
        if found and os.path.realpath(found) == os.path.realpath(argv0):
            return PROG
        return shlex.quote(argv0)  # the path as typed: the shell passes it on unchanged
    if base == "__main__.py" and os.path.basename(os.path.dirname(os.path.abspath(argv0))) == "rank_search":
        return f"{shlex.quote(sys.executable)} -m rank_search"
    return PROG


def command(*args: str) -> str:
    """A rank-search command line to print: the invoked command and ``args``, shell-quoted."""
    return " ".join([invoked_command(), *(shlex.quote(a) for a in args)])


def as_invoked(text: str) -> str:
    """``text`` with each quoted hint `` `rank-search ...` `` of the library (a message of
    ``search``, ``analysis``, ...) spelled as the command was invoked: the library cannot know
    how, the CLI does."""
    invoked = invoked_command()
    return text if invoked == PROG else text.replace(f"`{PROG} ", f"`{invoked} ")


def json_value(value: Any) -> Any:
    """``value`` as plain JSON data: numpy and pandas scalars as Python numbers, NaN, infinities
    and pandas' missing values as null (strict JSON has no NaN), mappings and sequences walked."""
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, Mapping):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    if type(value).__module__ == "numpy" and callable(getattr(value, "item", None)):
        value = value.item()  # numpy.int64 -> int, numpy.bool_ -> bool, ...
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (bool, int)):
        return value
    if type(value).__name__ in ("NAType", "NaTType"):
        return None
    return str(value)


def print_json(out: Mapping[str, Any], keys: Sequence[str]) -> None:
    """Print ``out`` as one strict JSON object on stdout (and nothing else), its keys exactly
    ``keys`` in that order: the documented, stable key set of a command's ``--json``."""
    print(json.dumps({k: json_value(out[k]) for k in keys}, indent=2, allow_nan=False))

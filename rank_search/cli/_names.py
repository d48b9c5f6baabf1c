"""The built-in names the CLI checks before it imports torch or ray, and "did you mean" hints.

The registries (``rank_search.models.MODELS``, ...) import torch; a bad name must be refused in
well under a second, so the CLI checks it against this static table instead.
``tests/cli/test_fast_cli.py`` keeps the table equal to the registries.
"""
from __future__ import annotations

import difflib
import os
from typing import Iterable

from ..errors import RankSearchError

#: kind -> the names registered in the package's registry (sorted), for kinds whose registry imports torch.
BUILTIN: dict[str, tuple[str, ...]] = {
    "models": ("lenet5", "lenet5_wide", "resnet110", "resnet18", "resnet20", "resnet32", "resnet44", "resnet50",
               "resnet56", "vgg16_cifar"),
    "datasets": ("cifar10", "cifar100", "digits", "imagefolder", "mnist5k", "synthetic"),
    "methods": ("deeptwist", "elrt", "factorized", "full", "lrpet", "nested", "posthoc", "trp"),
    "schemes": ("channel", "spatial", "tiled", "tucker2"),
    "countings": ("all", "trp"),
}


def space_names() -> list[str]:
    """The shipped search spaces (``search_spaces`` reads a folder listing: no torch)."""
    from search_spaces import list_spaces

    return list_spaces()


def did_you_mean(value: str, names: Iterable[str]) -> str:
    """``; did you mean 'x'?`` for the closest of ``names`` to ``value``, or ``""``."""
    close = difflib.get_close_matches(value, list(names), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def unknown_name(kind: str, value: str, names: Iterable[str], *, more: str = "") -> str:
    """The one-line message for an unknown ``kind`` (singular) ``value``: the valid names, then
    ``more`` (e.g. `` or a path to a .yaml file``), then the closest name. It starts as the
    registries' own message (``unknown KIND 'x'; valid choices: ...``)."""
    names = sorted(names)
    return f"unknown {kind} {value!r}; valid choices: {', '.join(names)}{more}{did_you_mean(value, names)}"


def check_name(kind: str, value: str, names: Iterable[str], *, more: str = "") -> str:
    """``value`` when it is one of ``names``; else a ``RankSearchError`` (:func:`unknown_name`)."""
    names = list(names)
    if value not in names:
        raise RankSearchError(unknown_name(kind, value, names, more=more))
    return value


def check_model(name: str) -> str:
    """A built-in model name or your own ``package.module:builder`` (imported later, with torch)."""
    if not isinstance(name, str) or ":" in name:
        return name
    return check_name("model", name, BUILTIN["models"], more="; or your own builder as package.module:function")


def check_space(name_or_path: str) -> str:
    """A shipped space name or a ``.yaml`` file that exists (its content is checked later)."""
    if name_or_path.endswith((".yaml", ".yml")) or os.path.sep in name_or_path:
        check_file(name_or_path, what="--space")
        return name_or_path
    return check_name("search space", name_or_path, space_names(), more=" or a path to a .yaml file")


def check_file(path: str, *, what: str) -> str:
    """``path`` names an existing file; else a one-line ``RankSearchError``."""
    if not os.path.exists(path):
        raise RankSearchError(f"{what} {path!r} does not exist")
    if os.path.isdir(path):
        raise RankSearchError(f"{what} {path!r} is a folder; give a file")
    return path


def is_plan_path(spec) -> bool:
    """Whether a rank spec names a plan file (``.yaml``/``.yml``), as ``methods.base.is_plan_file``."""
    return isinstance(spec, str) and spec.strip().lower().endswith((".yaml", ".yml"))


def check_rank_spec(spec) -> None:
    """A uniform rank spec (``ratio:0.5``, ``8``, ...) parses, or a plan file exists; mappings (a
    trial's groups or budget) are checked where they are built."""
    if not isinstance(spec, (str, int, float)):
        return
    if is_plan_path(spec):
        check_file(spec.strip(), what="rank plan file")
        return
    from ..decomp.policies import parse_rank_policy

    parse_rank_policy(spec)


__all__ = ["BUILTIN", "check_file", "check_model", "check_name", "check_rank_spec", "check_space", "did_you_mean",
           "is_plan_path", "space_names", "unknown_name"]

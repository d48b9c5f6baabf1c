"""Search spaces: the shipped named spaces (``spaces/*.yaml``) and user YAML files.

No torch or ray here; checking a space against the models and methods is the launcher's job.
"""
from __future__ import annotations

import os

from rank_search._registry import Registry

from ._sampler import RANK_PREFIX, SPACE_PREFIX, SpaceSampler
from ._space import GROUPINGS, Dim, SearchSpace, SpaceError, load_space_file, parse_dim, space_from_mapping

_DIR = os.path.join(os.path.dirname(__file__), "spaces")

SPACES: Registry[str] = Registry("search space")
for _file in sorted(os.listdir(_DIR)):
    if _file.endswith(".yaml"):
        SPACES.add(_file[: -len(".yaml")], os.path.join(_DIR, _file))


def list_spaces() -> list[str]:
    return SPACES.names()


def get_space(name_or_path: str) -> SearchSpace:
    """A shipped space by name, or a user space from a ``.yaml`` path."""
    if name_or_path.endswith((".yaml", ".yml")) or os.path.sep in name_or_path:
        return load_space_file(name_or_path)
    if name_or_path not in SPACES:
        raise SpaceError(f"unknown search space {name_or_path!r}; valid choices: {', '.join(SPACES.names())} "
                         "or a path to a .yaml file")
    return load_space_file(SPACES.get(name_or_path))


__all__ = [
    "GROUPINGS", "RANK_PREFIX", "SPACES", "SPACE_PREFIX", "Dim", "SearchSpace", "SpaceError", "SpaceSampler",
    "get_space", "list_spaces", "load_space_file", "parse_dim", "space_from_mapping",
]

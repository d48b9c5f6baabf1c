"""Search spaces: the shipped named spaces (``spaces/*.yaml``), user YAML files, and the trial
codec (a space <-> the flat config of one trial).

No torch or ray here; checking a space against the models and methods is the launcher's job.
"""
from __future__ import annotations

import os

from rank_search.registry import Registry
from rank_search.schema import RANK_PREFIX, SPACE_PREFIX

from ._codec import (DENSE_KEY, NESTED_KEY, PLAN_PREFIX, PROFILE_KEY, BudgetTarget, GroupRanks, PlanRanks, SpaceSampler,
                     TrialSpec, decode_trial, encode_point, latency_batch_size, reference_constants)
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
    "DENSE_KEY", "GROUPINGS", "NESTED_KEY", "PLAN_PREFIX", "PROFILE_KEY", "RANK_PREFIX", "SPACES", "SPACE_PREFIX", "BudgetTarget", "Dim",
    "GroupRanks", "PlanRanks", "SearchSpace", "SpaceError", "SpaceSampler", "TrialSpec", "decode_trial", "encode_point", "get_space",
    "latency_batch_size", "list_spaces", "load_space_file", "parse_dim", "reference_constants", "space_from_mapping",
]

"""A seeded generator of malformed inputs for the property-style CLI tests: a valid nested
mapping with one value replaced, one key removed or one unknown key added; and ``no_training``,
the fixture that stops an accepted input's run before its first epoch."""
from __future__ import annotations

import copy
import random

import pytest


def _keys(node, prefix=()):
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*prefix, key)
            yield from _keys(value, (*prefix, key))


def mutated(valid: dict, bad_values: list, rng: random.Random) -> tuple[dict, str]:
    """A deep copy of ``valid`` with one change drawn by ``rng``, and a line saying which."""
    data = copy.deepcopy(valid)
    path = rng.choice(list(_keys(data)))
    parent = data
    for key in path[:-1]:
        parent = parent[key]
    kind = rng.choice(["replace", "replace", "drop", "add"])
    if kind == "replace":
        parent[path[-1]] = rng.choice(bad_values)
    elif kind == "drop":
        del parent[path[-1]]
    else:
        parent[f"unknown_{rng.randrange(100)}"] = rng.choice(bad_values)
    return data, f"{kind} {'.'.join(path)}"


class ReachedTraining(Exception):
    """The input was accepted: the run was prepared and its first epoch was about to start."""


@pytest.fixture
def no_training(monkeypatch):
    def refuse(*args, **kwargs):
        raise ReachedTraining

    from rank_search.engine import Trainer

    monkeypatch.setattr(Trainer, "fit", refuse)

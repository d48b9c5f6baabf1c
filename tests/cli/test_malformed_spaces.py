"""Malformed search spaces through `rank-search launch` (issue 27), made by a seeded random
generator: a valid space with one value replaced, one key removed or one unknown key added. Each
is either refused (exit 2, one stderr line, no traceback, no experiment folder) or accepted up to
the point where Ray would start; nothing else escapes."""
from __future__ import annotations

import random
from pathlib import Path

import pytest
import yaml

from rank_search.cli import main

from _mutations import mutated

VALID = {
    "model": "lenet5", "dataset": "synthetic", "epochs": 1, "seed": 0,
    "methods": {"posthoc": {"init": "scratch"}},
    "ranks": {"grouping": "uniform", "ratio": {"float": [0.2, 0.8]}},
}
BAD_VALUES = [None, -1, 0, 10**30, 1e308 * 10, float("nan"), "abc", "", "x" * 5000, [], {}, [1, "a"],
              {"float": ["a", 1]}, {"float": [2, 1]}, {"int": [1.5, 2]}, True, "\n", "../..", [[[[[[]]]]]]]
CASES = 60


class ReachedRay(Exception):
    """Preflight accepted the space: the launch went on to start Ray (stopped here)."""


@pytest.fixture
def no_ray(monkeypatch):
    def refuse(*args, **kwargs):
        raise ReachedRay

    monkeypatch.setattr("rank_search.search.sweep.ray_session", refuse)


@pytest.mark.parametrize("seed", range(CASES))
def test_a_malformed_space_is_refused_in_one_line_or_accepted_whole(seed, tmp_path: Path, capsys, no_ray) -> None:
    space, what = mutated(VALID, BAD_VALUES, random.Random(seed))
    file = tmp_path / "space.yaml"
    file.write_text(yaml.safe_dump(space, allow_unicode=True))
    runs = tmp_path / "runs"
    try:
        code = main(["launch", "--space", str(file), "--num-samples", "1", "--storage", str(runs), "--name", "p"])
    except ReachedRay:  # a valid space after all: preflight let it through, before any folder
        assert not (runs / "p").exists(), f"{what}: an experiment folder was made before Ray started"
        return
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, (what, code, err[-5:])
    assert "Traceback" not in err[0], (what, err[0])
    assert not (runs / "p").exists(), f"{what}: refused, but an experiment folder was left"

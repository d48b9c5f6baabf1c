"""Space values of the wrong type or out of range are refused when the space is read, in one
line naming the key, before any folder or Ray (issue 27: they reached the code as tracebacks, or
ran a sweep that hung)."""
from __future__ import annotations

import pytest
import yaml

from search_spaces import space_from_mapping
from search_spaces._space import SpaceError

BASE = {"model": "lenet5", "dataset": "synthetic", "epochs": 1, "methods": {"factorized": {}},
        "ranks": {"grouping": "uniform", "ratio": 0.5}}
BUDGET = {**BASE, "ranks": {"allocation": "sensitivity", "target": {"float": [1.5, 4.0], "log": True}}}


@pytest.mark.parametrize("change, match", [
    ({"seed": "abc"}, r"seed must be an integer in \[0, 4294967295\].*got 'abc'"),
    ({"seed": -5}, r"seed must be an integer in \[0, 4294967295\].*got -5"),
    ({"seed": 2 ** 40}, r"seed must be an integer"),
    ({"seed": True}, r"seed must be an integer"),
    ({"data_root": ["a", "b"]}, r"data_root must be a folder path or URI, got \['a', 'b'\]"),
    ({"data_root": ""}, r"data_root must be a folder path or URI"),
    ({"latency_batch_size": 100_000_000}, r"latency_batch_size must be an integer in \[1, 4096\], got 100000000"),
    ({"latency_batch_size": 0}, r"latency_batch_size must be an integer in \[1, 4096\]"),
])
def test_bad_top_level_values_are_refused(change, match) -> None:
    with pytest.raises(SpaceError, match=match):
        space_from_mapping({**BASE, **change}, name="s")


@pytest.mark.parametrize("target", [float("nan"), float("inf"), {"float": [1.5, float("nan")]},
                                    {"float": [float("nan"), 4.0]}, [2.0, float("nan")]])
def test_a_target_that_is_not_a_finite_number_is_refused(target) -> None:
    with pytest.raises(SpaceError, match=r"ranks.target(:| must be) .*finite numbers"):
        space_from_mapping({**BUDGET, "ranks": {**BUDGET["ranks"], "target": target}}, name="s")


def test_good_values_still_load() -> None:
    space = space_from_mapping({**BUDGET, "seed": 7, "data_root": "data", "latency_batch_size": 64}, name="s")
    assert (space.seed, space.data_root, space.latency_batch_size) == (7, "data", 64)


def test_launch_refuses_them_in_one_line_before_any_folder(tmp_path, capsys) -> None:
    from rank_search.cli import main

    space = tmp_path / "bad.yaml"
    space.write_text(yaml.safe_dump({**BASE, "seed": -5}))
    assert main(["launch", "--space", str(space), "--storage", str(tmp_path / "runs"), "--name", "x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "seed must be an integer in [0, 4294967295]" in err[0], err
    assert not (tmp_path / "runs").exists()

"""Malformed `train --config` files (issue 27), made by a seeded random generator: a valid run
config with one value replaced, one key removed or one unknown key added. Each is either refused
(exit 2, one stderr line, no traceback, no output folder) or accepted, the run prepared in full
(model, plan, method), up to its first epoch; nothing else escapes."""
from __future__ import annotations

import random
from pathlib import Path

import pytest
import yaml

from rank_search.cli import main

from _mutations import ReachedTraining, mutated, no_training  # noqa: F401 (a fixture)

VALID = {"run": {"model": "lenet5", "dataset": "synthetic", "method": "posthoc", "scheme": "channel",
                 "ranks": "ratio:0.5", "epochs": 1, "seed": 0, "settings": {"train.lr": 0.05}}}
BAD_VALUES = [None, -1, 0, 10**30, float("inf"), float("nan"), "abc", "", "x" * 5000, [], {}, [1, "a"],
              True, "\n", "ratio:7", "energy:-1", "8,multiple=0", "../../nope.yaml", [[[[[[]]]]]]]
CASES = 60


@pytest.mark.parametrize("seed", range(CASES))
def test_a_malformed_config_is_refused_in_one_line_or_accepted_whole(seed, tmp_path: Path, capsys,
                                                                     no_training) -> None:
    config, what = mutated(VALID, BAD_VALUES, random.Random(seed))
    file = tmp_path / "config.yaml"
    file.write_text(yaml.safe_dump(config, allow_unicode=True))
    out = tmp_path / "out"
    try:
        code = main(["train", "--config", str(file), "--out", str(out)])
    except ReachedTraining:  # a valid config after all: nothing was written before training
        assert not out.exists(), f"{what}: an output folder was made before training"
        return
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, (what, code, err[-5:])
    assert "Traceback" not in err[0], (what, err[0])
    assert not out.exists(), f"{what}: refused, but an output folder was left"

"""Malformed rank plan files (`--ranks plan.yaml`, issue 27), through the two commands that read
one: `rank-search layers` and `rank-search train`. A seeded random generator makes a valid plan
with one value replaced, one key removed or one unknown key added; a few hostile files are written
by hand. Each is either refused (exit 2, one stderr line, no traceback, nothing left beside the
plan file) or accepted whole: `layers` prints the plan (exit 0), `train` prepares the run up to its
first epoch, with no output folder yet; nothing else escapes."""
from __future__ import annotations

import random
from pathlib import Path

import pytest
import yaml

from rank_search.cli import main

from _mutations import ReachedTraining, mutated, no_training  # noqa: F401 (a fixture)

# lenet5 on synthetic: features.0 (stem conv), features.3 (conv), classifier.1/.3/.5 (Linear).
VALID = {
    "scheme": "channel", "tiles": [2, 2], "force": False,
    "layers": {
        "features.0": 2,
        "features.3": {"scheme": "tucker2", "rank": [4, 3], "force": True},
        "classifier.1": {"scheme": "tiled", "rank": 8},
        "classifier.3": {"scheme": "tiled", "rank": 4, "tiles": [1, 2]},
        "classifier.5": "ratio:0.5",
    },
}
BAD_VALUES = [None, -1, 0, 10**30, float("inf"), float("nan"), -0.5, 2.5, "abc", "", "x" * 5000, [], {}, [1, "a"],
              [0, 0], [2, 2, 2], [10**30, 1], [float("nan"), 1], {"rank": 2}, {"a": {"b": {}}}, True, False, "\n",
              "ratio:7", "energy:-1", "8,multiple=0", "tiled", "tucker2", "spatial", "../../nope.yaml", [[[[[[]]]]]]]
CASES = 40
COMMANDS = {
    "layers": lambda plan, out: ["layers", "--model", "lenet5", "--dataset", "synthetic", "--ranks", plan],
    "train": lambda plan, out: ["train", "--model", "lenet5", "--dataset", "synthetic", "--method", "posthoc",
                                "--epochs", "2", "--ranks", plan, "--out", out],
}


def check(command: str, text: bytes, what: str, tmp_path: Path, capsys, *, may_accept: bool = True) -> None:
    """Run ``command`` on a plan file holding ``text``: a one-line refusal leaving nothing but
    the plan file, or (``may_accept``) the plan accepted whole."""
    plan = tmp_path / "plan.yaml"
    plan.write_bytes(text)
    out = tmp_path / "out"
    try:
        code = main(COMMANDS[command](str(plan), str(out)))
    except ReachedTraining:  # a valid plan after all: nothing was written before training
        assert may_accept, f"{what}: accepted"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["plan.yaml"], f"{what}: output made before training"
        return
    err = capsys.readouterr().err.strip().splitlines()
    assert "Traceback" not in "\n".join(err), (what, err[-5:])
    if code == 0 and command == "layers" and may_accept:  # accepted whole, the plan printed
        return
    assert code == 2 and len(err) == 1, (what, code, err[-5:])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan.yaml"], f"{what}: refused, but output was left"


@pytest.mark.parametrize("command", COMMANDS)
def test_the_valid_plan_is_accepted(command: str, tmp_path: Path, no_training) -> None:
    """The base of the mutations: accepted by both commands (else every case would be a refusal)."""
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump(VALID))
    if command == "layers":
        assert main(COMMANDS[command](str(plan), "")) == 0
    else:
        with pytest.raises(ReachedTraining):
            main(COMMANDS[command](str(plan), str(tmp_path / "out")))


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("seed", range(CASES))
def test_a_malformed_plan_is_refused_in_one_line_or_accepted_whole(seed, command, tmp_path: Path, capsys,
                                                                   no_training) -> None:
    plan, what = mutated(VALID, BAD_VALUES, random.Random(seed))
    check(command, yaml.safe_dump(plan, allow_unicode=True).encode(), what, tmp_path, capsys)


ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(8)
) + "layers: *i\n"
HOSTILE = {
    "alias bomb": ALIAS_BOMB,
    "10,000-deep list": "layers: " + "[" * 10_000 + "]" * 10_000 + "\n",
    "10,000-deep list as a rank": "features.3: " + "[" * 10_000 + "]" * 10_000 + "\n",
    "a self-referencing alias": "layers: &a {features.3: *a}\n",
    "empty file": "",
    "only a comment": "# nothing\n",
    "a list": "- features.3\n- 4\n",
    "a scalar": "4\n",
    "a string": "ratio:0.5\n",
    "a list key": "? [features.3]\n: 4\n",
    "an integer key": "3: 4\n",
    "a misspelt default": "schemes: tucker2\nlayers: {features.3: 4}\n",
    "a null key": "~: 4\n",
    "a python tag": "features.3: !!python/object/apply:os.system [echo]\n",
    "control characters": "features.3: \x00\x01\n",
    "not utf-8": b"features.3: \xff\xfe 4\n",
}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("name", HOSTILE)
def test_a_hostile_plan_file_is_refused_in_one_line(name: str, command: str, tmp_path: Path, capsys,
                                                    no_training) -> None:
    text = HOSTILE[name]
    check(command, text if isinstance(text, bytes) else text.encode(), name, tmp_path, capsys, may_accept=False)

"""YAML read with limits (issue 27): an alias bomb, a 10,000-deep list, an alias chain and a
self-referring alias are one line, exit 2, as a space, a `train --config`, a `--ranks` plan
file and a sweep record; what safe_load reads otherwise is read the same."""
from __future__ import annotations

import glob
import os

import pytest
import yaml

from rank_search import safe_yaml
from rank_search.cli import main

BOMB = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f'{c}: &{c} [{",".join(["*" + p] * 9)}]\n' for p, c in zip("abcdefgh", "bcdefghi"))
DEEP = "[" * 10000 + "]" * 10000
CHAIN = "a0: &a0 [1]\n" + "".join(f"a{i}: &a{i} [*a{i - 1}]\n" for i in range(1, 3000))
CYCLE = "a: &a [*a]\n"
DOCS = {"bomb": (BOMB, "expands its aliases to more than"), "deep": (DEEP, "nests deeper than 64 levels"),
        "chain": (CHAIN, "once its aliases are expanded"), "cycle": (CYCLE, "alias that refers to itself")}


@pytest.mark.parametrize("name", sorted(DOCS))
def test_each_limit_is_one_line_naming_the_document(name) -> None:
    text, expected = DOCS[name]
    with pytest.raises(safe_yaml.YAMLLimitError, match=expected) as err:
        safe_yaml.load(text, what="file 'x.yaml'")
    assert str(err.value).startswith("file 'x.yaml' ") and "\n" not in str(err.value)


def test_a_file_over_the_size_cap_is_refused_unread(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(safe_yaml, "MAX_BYTES", 100)
    path = tmp_path / "big.yaml"
    path.write_text("a: " + "x" * 200)
    with open(path) as fh, pytest.raises(safe_yaml.YAMLLimitError, match="larger than"):
        safe_yaml.load(fh)


SHIPPED = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "search_spaces", "spaces", "*.yaml")))


@pytest.mark.parametrize("text", ["", "5", "a: &x {b: 1, c: [1, 2]}\nd: *x\ne: [1.5, null, true, '2']\n",
                                  *[open(f).read() for f in SHIPPED]], ids=["empty", "int", "aliases", *SHIPPED])
def test_what_safe_load_reads_is_read_the_same(text) -> None:
    assert SHIPPED
    assert safe_yaml.load(text) == yaml.safe_load(text)
    with pytest.raises(yaml.YAMLError):
        safe_yaml.load("a: [1, 2")


def _argv(kind: str, file: str, tmp_path) -> list[str]:
    return {
        "space": ["launch", "--space", file, "--storage", str(tmp_path / "runs")],
        "config": ["train", "--config", file, "--out", str(tmp_path / "out")],
        "plan": ["train", "--model", "lenet5", "--dataset", "synthetic", "--method", "factorized", "--ranks", file,
                 "--out", str(tmp_path / "out")],
    }[kind]


@pytest.mark.parametrize("name", ["bomb", "deep"])
@pytest.mark.parametrize("kind", ["space", "config", "plan"])
def test_bombs_and_deep_documents_through_the_cli_are_one_line_exit_2(tmp_path, capsys, kind, name) -> None:
    file = tmp_path / f"{name}.yaml"
    file.write_text(DOCS[name][0])
    before = sorted(os.listdir(tmp_path))
    code = main(_argv(kind, str(file), tmp_path))
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert code == 2 and len(err) == 1, captured.err[-2000:]
    assert DOCS[name][1] in err[0] and f"{name}.yaml" in err[0]
    assert sorted(os.listdir(tmp_path)) == before, "something was left behind"


def test_a_bomb_in_a_sweep_record_is_one_line_exit_2(tmp_path, capsys) -> None:
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "rank_search_sweep.yaml").write_text(BOMB)
    assert main(["resume", str(exp)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "expands its aliases" in err[0] and "rank_search_sweep.yaml" in err[0]

"""The CLI as people script it: counting options, machine-readable output, listings, exit codes."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

import rank_search
from rank_search.cli import main

LENET_LAYERS = ["features.0", "features.3", "classifier.1", "classifier.3", "classifier.5"]


def _rows(out: str) -> dict[str, str]:
    lines = [line for line in out.splitlines()[1:] if line.strip()][:-1]
    return {(line.split()[1] if line.startswith("*") else line.split()[0]): line for line in lines}


def test_layers_with_the_trp_authors_counting(capsys) -> None:
    assert main(["layers", "--model", "resnet20", "--dataset", "synthetic", "--counting", "trp"]) == 0
    out = capsys.readouterr().out
    rows = _rows(out)
    marked = [name for name, line in rows.items() if line.startswith("*")]
    assert len(marked) == 16 and "conv1" not in marked and "layer2.0.conv1" not in marked
    assert rows["fc"].split()[-1] == "0"  # the classifier is not counted
    assert "MACs of the convolutions (the TRP authors' counting); 16 stride-1" in out
    assert main(["layers", "--model", "resnet20", "--dataset", "synthetic"]) == 0
    assert _rows(capsys.readouterr().out)["fc"].split()[-1] == "640"  # 64 x 10


# ---- --version, list ----

def test_version(capsys) -> None:
    from rank_search import __version__

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"rank-search {__version__}"


@pytest.mark.parametrize("kind,registry", [
    ("models", ("rank_search.models", "MODELS")), ("datasets", ("rank_search.data", "DATASETS")),
    ("methods", ("rank_search.methods", "METHODS")), ("schemes", ("rank_search.layers", "SCHEMES")),
    ("spaces", ("search_spaces", "SPACES")),
])
def test_list_prints_one_name_per_line(kind, registry, capsys) -> None:
    import importlib

    names = getattr(importlib.import_module(registry[0]), registry[1]).names()
    assert main(["list", kind]) == 0
    assert capsys.readouterr().out.splitlines() == names
    assert main(["list"]) == 0
    assert [line.split(" ", 1)[1] for line in capsys.readouterr().out.splitlines()
            if line.startswith(f"{kind} ")] == names
    assert main(["list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[kind] == names


def test_list_of_an_unknown_kind_is_one_line(capsys) -> None:
    assert main(["list", "gpus"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("rank-search list: error: ") and "models" in err[0]


# ---- --json ----

def test_layers_json(capsys) -> None:
    from rank_search.cli.layers import JSON_KEYS, LAYER_KEYS

    assert main(["layers", "--model", "lenet5", "--dataset", "synthetic", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert tuple(out) == JSON_KEYS
    assert (out["model"], out["dataset"], out["input_shape"], out["counting"]) == ("lenet5", "synthetic", [1, 8, 8],
                                                                                   "all")
    assert [e["name"] for e in out["layers"]] == LENET_LAYERS
    for entry in out["layers"]:
        assert tuple(entry) == LAYER_KEYS
    rows = {e["name"]: e for e in out["layers"]}
    assert rows["features.3"]["weight_shape"] == [16, 6, 5, 5] and rows["features.3"]["max_rank"]["tucker2"] == [16, 6]
    assert rows["classifier.1"]["max_rank"]["spatial"] is None  # the scheme does not apply
    assert [n for n, e in rows.items() if e["in_uniform_plan"]] == ["features.3", "classifier.1", "classifier.3"]
    assert [n for n, e in rows.items() if e["trp_decomposed"]] == ["features.3"]
    assert sum(e["macs"] for e in out["layers"]) == out["macs"] and isinstance(out["params"], int)
    assert main(["layers", "--model", "lenet5", "--dataset", "synthetic", "--json", "--counting", "trp"]) == 0
    trp = json.loads(capsys.readouterr().out)
    assert trp["counting"] == "trp" and trp["macs"] == sum(e["macs"] for e in out["layers"] if e["type"] == "Conv2d")


def test_export_json_and_a_copy_pasteable_hint(tmp_path, monkeypatch, capsys) -> None:
    from rank_search import schema
    from rank_search.cli.export import JSON_KEYS
    from rank_search.run import RunSpec

    from _sweeps import fake_sweep

    exp = fake_sweep(tmp_path, RunSpec(model="lenet5", dataset="synthetic", method="posthoc", ranks="ratio:0.5",
                                       epochs=2))
    monkeypatch.chdir(tmp_path)
    assert main(["export", "exp", "--weights", "--json", "--out", "best.yaml"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert tuple(out) == JSON_KEYS
    assert out["out"] == str(tmp_path / "best.yaml") and out["weights"] == str(tmp_path / "best.pt")
    assert (out["trial_id"], out["method"], out["pick"], out["experiment"]) == ("a", "posthoc", "knee", str(exp))
    assert out["metrics"] == yaml.safe_load((tmp_path / "best.yaml").read_text())["metrics"]
    assert type(out["metrics"][schema.COMPACT_MACS]) is int and out["metrics"][schema.EPOCHS] == 2
    assert out["retrain"] == "rank-search train --config best.yaml --out DIR"
    # the hint is the command as invoked: a venv path, or python -m
    monkeypatch.setattr(sys, "argv", [".venv/bin/rank-search", "export"])
    assert main(["export", "exp", "--overwrite", "--out", "best.yaml"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "re-train it with: .venv/bin/rank-search train --config " \
                                                       "best.yaml --out DIR"
    monkeypatch.setattr(sys, "argv", [str(Path(rank_search.__file__).parent / "__main__.py")])
    assert main(["export", "exp", "--overwrite", "--out", "my best.yaml"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (f"re-train it with: {sys.executable} -m rank_search train "
                                                        "--config 'my best.yaml' --out DIR")


# ---- flags: choices, defaults in the help, seeds, exit codes ----

def _help(*command: str) -> str:
    import contextlib
    import io

    import os
    from unittest import mock

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), mock.patch.dict(os.environ, {"COLUMNS": "1000"}):  # no wrapping
        assert main([*command, "--help"]) == 0
    return " ".join(buf.getvalue().split())


COMMANDS = ["train", "layers", "profile", "launch", "resume", "status", "export", "analyze", "deploy", "evaluate",
            "list"]


def _subparser(command: str):
    from rank_search.cli import build_parser

    return next(a for a in build_parser()._actions if a.dest == "command").choices[command]


def test_every_command_is_checked() -> None:
    from rank_search.cli import build_parser

    assert sorted(next(a for a in build_parser()._actions if a.dest == "command").choices) == sorted(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_flag_has_help_and_its_default(command: str) -> None:
    import argparse

    text = _help(command)
    for action in _subparser(command)._actions:
        if action.dest == "help":
            continue
        what = (command, action.option_strings or action.dest)
        assert action.help, what
        if not any(action.default is v for v in (None, False)):  # 0 and 0.0 are defaults to show too
            shown = ",".join(map(str, action.default)) if isinstance(action.default, (list, tuple)) else action.default
            assert f"default: {shown}" in text or f"(default {shown}" in text, what
        elif (action.option_strings and action.nargs != 0 and not action.required
              and not isinstance(action, argparse._StoreConstAction)):
            # a flag taking a value with no default says what happens without it
            assert any(word in action.help for word in ("default", "required", "deprecated alias")), what


def test_help_states_the_run_defaults_and_the_registries() -> None:
    import dataclasses

    from rank_search.methods import METHODS
    from rank_search.run import RunSpec

    defaults = {f.name: f.default for f in dataclasses.fields(RunSpec) if f.default is not dataclasses.MISSING}
    text = _help("train")
    assert f"training epochs (default: {defaults['epochs']}" in text
    assert f"(default: {defaults['seed']}, or the --config's)" in text
    assert "one of " + ", ".join(METHODS.names()) in text and "(default: mnist5k" in text
    assert "one of knee, max-accuracy, max-compression" in _help("export")


def _choice_flags() -> list[tuple[str, str, list[str]]]:
    """(command, flag, valid values) of every option with a fixed set of values."""
    found = []
    for command in COMMANDS:
        for action in _subparser(command)._actions:
            if action.choices is not None and action.option_strings:
                found.append((command, action.option_strings[0], sorted(map(str, action.choices))))
    return found


def test_the_fixed_value_flags_have_choices() -> None:
    flags = {(c, f) for c, f, _ in _choice_flags()}
    assert flags >= {("train", "--dataset"), ("train", "--method"), ("train", "--scheme"), ("layers", "--dataset"),
                     ("layers", "--counting"), ("profile", "--dataset"), ("profile", "--scheme"),
                     ("launch", "--searcher"), ("launch", "--scheduler"), ("export", "--pick"),
                     ("deploy", "--format"), ("deploy", "--pick"), ("evaluate", "--dataset")}


@pytest.mark.parametrize("command, flag, valid", _choice_flags(), ids=lambda v: v if isinstance(v, str) else "")
def test_a_bad_choice_exits_2_with_one_line_naming_the_value_and_the_choices(command, flag, valid, capsys) -> None:
    from rank_search.search import SCHEDULERS, SEARCHERS

    registries = {"--searcher": SEARCHERS, "--scheduler": SCHEDULERS}
    if flag in registries:  # the choices are the registry's
        assert valid == sorted(registries[flag])
    assert main([command, flag, "no-such-value"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"rank-search {command}: error: argument {flag}: "), err
    assert "'no-such-value'; valid choices: " + ", ".join(valid) in err[0], err


def test_fixed_value_flags_refuse_other_values_in_one_line(capsys) -> None:
    for argv, expected in [
        (["train", "--model", "lenet5", "--method", "magic", "--out", "o"], "unknown method 'magic'; valid choices:"),
        (["train", "--model", "lenet5", "--method", "full", "--scheme", "cp", "--out", "o"], "unknown scheme 'cp'"),
        (["layers", "--model", "lenet5", "--counting", "authors"],
         "unknown counting 'authors'; valid choices: all, trp"),
        (["export", "nowhere", "--pick", "best", "--out", "o.yaml"], "unknown pick 'best'; valid choices: knee"),
    ]:
        assert main(argv) == 2
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1 and expected in err[0], (argv, err)


def test_train_defaults_the_dataset_to_mnist5k() -> None:
    from rank_search.cli import build_parser
    from rank_search.cli.train import spec_from_args

    args = build_parser().parse_args(["train", "--model", "lenet5", "--method", "full", "--out", "o"])
    assert spec_from_args(args).dataset == "mnist5k"
    args = build_parser().parse_args(["train", "--model", "lenet5", "--method", "full", "--dataset", "digits",
                                      "--train-seed", "4", "--out", "o"])
    assert (spec_from_args(args).dataset, spec_from_args(args).seed) == ("digits", 4)


def test_launch_names_the_searcher_seed(capsys) -> None:
    from rank_search.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["launch", "--space", "demo", "--searcher-seed", "5"])
    assert (args.seed, args.deprecated_seed) == (5, None)
    args = parser.parse_args(["launch", "--space", "demo", "--seed", "4"])  # the deprecated alias still works
    assert args.deprecated_seed == 4
    assert "seed of the Optuna sampler" in _help("launch") and "deprecated alias of --searcher-seed" in _help("launch")


def test_a_diverged_train_has_its_own_exit_code(tmp_path, capsys) -> None:
    from rank_search.cli.train import EXIT_DIVERGED

    out = tmp_path / "out"
    code = main(["train", "--model", "lenet5", "--dataset", "synthetic", "--method", "full", "--epochs", "1",
                 "--set", "train.lr=1e6", "--out", str(out)])
    assert code == EXIT_DIVERGED == 3 and not out.exists()
    assert capsys.readouterr().err.splitlines()[-1].startswith("rank-search train: error: training diverged")


# ---- hints: the command as invoked, everywhere ----

VENV = ".venv/bin/rank-search"


def test_every_printed_hint_is_the_command_as_invoked(tmp_path, monkeypatch, capsys) -> None:
    from rank_search import schema
    from rank_search.cli.launch import _finish
    from rank_search.search.sweep import SweepOutcome

    from _experiments import hand_made

    exp = hand_made(tmp_path, trials={"a": "TERMINATED", "b": "RUNNING"})
    (exp / schema.DRIVER_FILE).write_text(json.dumps({"pid": 1, "ended": "2026-01-01T00:00:00"}))
    monkeypatch.setattr(sys, "argv", [VENV])
    # launch / resume at their end
    assert _finish(SweepOutcome(str(exp), False, {"TERMINATED": 1, "UNFINISHED": 1}, 2)) == 130
    assert f"\n  {VENV} resume {exp}\n" in capsys.readouterr().err
    assert _finish(SweepOutcome(str(exp), True, {"TERMINATED": 1, "ERROR": 1}, 2)) == 1
    assert f"retry them with: {VENV} resume {exp}\n" in capsys.readouterr().err
    assert _finish(SweepOutcome(str(exp), True, {"TERMINATED": 2}, 2)) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"next: {VENV} export {exp} --out best.yaml"
    # the library's hints: in status's text, and in an error of the search package
    assert main(["status", str(exp)]) == 0
    assert f"finish it with `{VENV} resume {exp}`" in capsys.readouterr().out
    assert main(["launch", "--space", "demo", "--storage", str(tmp_path), "--name", "exp"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and f"resume it with `{VENV} resume {exp}`" in err[0], err
    # run as `rank-search` (on PATH), the library's text is left as it is
    monkeypatch.setattr(sys, "argv", ["rank-search"])
    assert main(["status", str(exp)]) == 0
    assert f"finish it with `rank-search resume {exp}`" in capsys.readouterr().out


def test_no_printed_hint_spells_the_command_by_hand() -> None:
    """Every hint the CLI prints goes through ``_scripting.command`` (or ``as_invoked``): no
    string printed by rank_search/cli names ``rank-search COMMAND`` itself (``rank-search
    COMMAND:`` is the error prefix, not a hint)."""
    import ast
    import re

    import rank_search.cli as cli
    from rank_search.cli import build_parser

    commands = "|".join(next(a for a in build_parser()._actions if a.dest == "command").choices)
    hint = re.compile(rf"rank-search ({commands})\b(?!:)")
    found = []
    for path in sorted(Path(cli.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print":
                for part in ast.walk(node):
                    if isinstance(part, ast.Constant) and isinstance(part.value, str) and hint.search(part.value):
                        found.append(f"{path.name}:{part.lineno}: {part.value!r}")
    assert found == []

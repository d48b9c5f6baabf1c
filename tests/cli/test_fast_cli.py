"""The CLI answers without torch or ray: `--help`, `list`, `--version` and the refusal of bad
names, rank specs and missing paths (issue 28: a one-line error used to take 20-40 s)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from rank_search.cli import build_parser
from rank_search.cli import list as list_command
from rank_search.cli._names import BUILTIN, did_you_mean
from rank_search.decomp.policies import VALID_FORMS, parse_rank_policy
from rank_search.errors import RankSearchError

#: Runs the CLI's main, then reports which heavy packages it imported (last line of stderr).
PROBE = """
import sys
from rank_search.cli import main
rc = main(sys.argv[1:])
print(f"PROBE {rc} {'torch' in sys.modules} {'ray' in sys.modules}", file=sys.stderr)
"""


def _probe(args: list[str], cwd) -> tuple[int, bool, bool, str]:
    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, cwd=cwd,
                          timeout=120)
    *lines, last = done.stderr.strip().splitlines()
    _, rc, torch, ray = last.split()
    return int(rc), torch == "True", ray == "True", "\n".join(lines)


SUBCOMMANDS = tuple(build_parser().commands)

LIGHT = [
    (["--help"], 0, ""),
    (["--version"], 0, ""),
    *[([sub, "--help"], 0, "") for sub in SUBCOMMANDS],
    (["list"], 0, ""),
    *[(["list", kind], 0, "") for kind in list_command.KINDS],
    (["lauch"], 2, "did you mean 'launch'?"),
    (["list", "model"], 2, "did you mean 'models'?"),
    (["launch", "--space", "dmeo"], 2, "did you mean 'demo'?"),
    (["launch", "--space", "missing.yaml"], 2, "--space 'missing.yaml' does not exist"),
    (["launch", "--space", "demo", "--dense", "missing.pt"], 2, "--dense 'missing.pt' does not exist"),
    (["resume", "missing"], 2, "is not a rank-search experiment"),
    (["train", "--model", "lenet5", "--dataset", "synthetic", "--ranks", "25%", "--out", "out"], 2, "valid forms"),
    (["train", "--model", "lenet5", "--method", "trp", "--ranks", "0.3", "--out", "out"], 2, "ratio:0.3"),
    (["train", "--model", "lenet", "--method", "trp", "--out", "out"], 2, "did you mean 'lenet5'?"),
    (["train", "--model", "lenet5", "--method", "tpr", "--out", "out"], 2, "did you mean 'trp'?"),
    (["train", "--model", "lenet5", "--method", "trp", "--dataset", "mnist", "--out", "out"], 2,
     "did you mean 'mnist5k'?"),
    (["train", "--model", "lenet5", "--method", "trp", "--scheme", "tuker2", "--out", "out"], 2,
     "did you mean 'tucker2'?"),
    (["train", "--model", "lenet5", "--method", "trp", "--ranks", "plan.yaml", "--out", "out"], 2,
     "rank plan file 'plan.yaml' does not exist"),
    (["train", "--model", "lenet5", "--method", "trp", "--init", "w.pt", "--out", "out"], 2, "--init 'w.pt'"),
    (["train", "--model", "lenet5", "--method", "trp", "--out", "no/such/out"], 2, "parent folder of --out"),
    (["layers", "--model", "resnt20"], 2, "did you mean 'resnet20'?"),
    (["layers", "--model", "lenet5", "--ranks", "ratio:2"], 2, "valid forms"),
    (["profile", "--model", "lenet5", "--dense", "w.pt", "--out", "p"], 2, "--dense 'w.pt' does not exist"),
    (["evaluate", "m.onnx", "--dataset", "digits"], 2, "model file 'm.onnx' does not exist"),
    (["deploy", "m.pt", "--format", "onnx", "--out", "m.onnx"], 2, "neither a compact.pt file"),
    (["status", "missing"], 2, "does not exist"),
    (["export", "missing", "--out", "x.yaml"], 2, "does not exist"),
    (["analyze", "missing", "--out", "r"], 2, "does not exist"),
]


@pytest.mark.parametrize("args,code,message", LIGHT, ids=[" ".join(a) for a, _, _ in LIGHT])
def test_answers_without_torch_or_ray(tmp_path, args, code, message) -> None:
    rc, torch, ray, stderr = _probe(args, tmp_path)
    assert (rc, torch, ray) == (code, False, False), stderr
    if code:
        assert message in stderr and len(stderr.splitlines()) == 1, stderr


@pytest.mark.parametrize("kind", sorted(BUILTIN))
def test_static_names_equal_the_registries(kind) -> None:
    if kind == "countings":
        from rank_search.cost import COUNTINGS

        assert sorted(BUILTIN[kind]) == sorted(COUNTINGS)
    else:
        assert list(BUILTIN[kind]) == list_command.registered_names(kind)


def test_list_prints_every_registered_name(capsys) -> None:
    from rank_search.cli import main

    assert main(["list"]) == 0
    lines = set(capsys.readouterr().out.splitlines())
    for kind in list_command.KINDS:
        assert {f"{kind} {n}" for n in list_command.registered_names(kind)} <= lines


def test_did_you_mean_only_for_close_names() -> None:
    assert did_you_mean("lauch", SUBCOMMANDS) == "; did you mean 'launch'?"
    assert did_you_mean("zzz", SUBCOMMANDS) == ""


@pytest.mark.parametrize("spec", ["25%", "0.3", "ratio:abc", "foo:1", "ratio:1.5", "energy:0", "value:-1", "0",
                                  "fixed:2.5", "ratio:0.5,multiple=x", "ratio:0.5,multiple=0", "", 1.5, 0, True])
def test_every_rank_spec_error_lists_the_valid_forms(spec) -> None:
    with pytest.raises(RankSearchError, match=r"^bad rank spec .*; valid forms: ") as err:
        parse_rank_policy(spec)
    assert str(err.value).endswith(VALID_FORMS)


def test_valid_forms_parse() -> None:
    """Each example the error names is itself a valid spec."""
    for example in ("8", "fixed:8", "ratio:0.5", "energy:0.9", "value:0.05", "ratio:0.5,multiple=8"):
        assert example.split(",")[0].split(":")[0] in VALID_FORMS
        parse_rank_policy(example)

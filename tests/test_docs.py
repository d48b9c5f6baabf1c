"""The documents stay true to the code: links resolve, quoted commands parse, sizes stay small.

Every relative link in README.md, docs/ and benchmarks/RESULTS.md must name an existing file (and,
for a markdown target, an existing heading). Every quoted command that runs `rank-search SUB`,
`python -m rank_search SUB`, a benchmark script or `make TARGET` must name a real sub-command,
script or target, with flags that its `--help` lists; a whole command in a fenced block must also
parse. benchmarks/history/ is a record of old runs and is not checked.
"""
from __future__ import annotations

import ast
import contextlib
import functools
import io
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rank_search.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
DOCS = sorted([README, RESULTS, *(ROOT / "docs").rglob("*.md")])
README_MAX_BYTES = 10_000
RESULTS_MAX_BYTES = 20_000

FENCE = re.compile(r"^[ \t]*```([^\n`]*)\n(.*?)^[ \t]*```", re.S | re.M)
INLINE = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FLAG = re.compile(r"^--[A-Za-z0-9][A-Za-z0-9-]*")
SHELL_LANGS = {"", "bash", "sh", "shell", "console"}
SHELL_BUILTINS = {"source", "cd", "export"}
WRAPPER = re.compile(r"(/usr/bin/)?time|-[a-z]|env|[A-Z_]+=\S*")


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


# -- quoted commands --------------------------------------------------------------------------

def _fenced_commands(text: str) -> list[str]:
    """Shell lines of the fenced blocks: `\\` continuations joined, `$ ` prompts honoured."""
    out = []
    for lang, body in FENCE.findall(text):
        if lang.strip().lower() not in SHELL_LANGS:
            continue
        lines = body.replace("\\\n", " ").splitlines()
        prompted = [line for line in lines if line.lstrip().startswith("$ ")]
        for line in prompted or lines:
            line = line.strip().removeprefix("$ ").strip()
            if line and not line.startswith("#"):
                out.append(line)
    return out


def _inline_commands(text: str) -> list[str]:
    without_fences = FENCE.sub("", text)
    return [m.strip() for m in INLINE.findall(without_fences)]


def _tokens(command: str) -> list[str]:
    command = re.split(r"\s#\s|\s#$", command)[0]  # a trailing comment
    command = re.split(r"\s(?:\|\||&&|\||;)\s", command)[0]  # the first command of a pipeline
    try:
        return shlex.split(command)
    except ValueError:  # unbalanced quotes in prose-like inline code
        return command.split()


def _invocations(command: str) -> list[tuple[str, str | None, list[str]]]:
    """(kind, name, arguments) for each program this project ships that the command runs:
    kind ``cli`` (name = sub-command), ``script`` (name = benchmarks/X.py) or ``make``."""
    tokens = _tokens(command)
    found = []
    for i, token in enumerate(tokens):
        if not all(WRAPPER.fullmatch(t) for t in tokens[:i]):
            break  # only the command word itself, after wrappers such as `/usr/bin/time -v`
        rest = tokens[i + 1:]
        if token in ("rank-search", ".venv/bin/rank-search"):
            found.append(("cli", rest[0] if rest else None, rest[1:]))
        elif token.endswith("python") or token.endswith("python3"):
            if rest[:2] == ["-m", "rank_search"]:
                found.append(("cli", rest[2] if len(rest) > 2 else None, rest[3:]))
            elif rest and re.fullmatch(r"benchmarks/[\w/]+\.py", rest[0]):
                found.append(("script", rest[0], rest[1:]))
        elif token == "make":
            found.append(("make", rest[0] if rest and not rest[0].startswith("-") else None, rest[1:]))
    return found


def _quoted() -> list[tuple[str, str, bool]]:
    """(document, command, whole) for every quoted command; whole = from a fenced block."""
    out = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        out += [(_rel(doc), c, True) for c in _fenced_commands(text)]
        out += [(_rel(doc), c, False) for c in _inline_commands(text)]
    return out


QUOTED = _quoted()
CLI = [(d, c, w) for d, c, w in QUOTED if any(k == "cli" for k, _, _ in _invocations(c))]
SCRIPTS = sorted({n for _, c, _ in QUOTED for k, n, _ in _invocations(c) if k == "script"})
MAKE = [(d, c) for d, c, _ in QUOTED if any(k == "make" for k, _, _ in _invocations(c))]


def _flags(args: list[str]) -> list[str]:
    return [FLAG.match(a).group(0) for a in args if FLAG.match(a)]


@functools.cache
def _help(argv: tuple[str, ...]) -> tuple[int, str]:
    """The exit code and output of the in-process parser on ``argv`` (stdout and stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            build_parser().parse_args(list(argv))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 0
    return code, out.getvalue() + err.getvalue()


@functools.cache
def _subcommands() -> frozenset[str]:
    code, text = _help(("--help",))
    assert code == 0, text
    usage_choices = re.search(r"\{([a-z,-]+)\}", text)
    if usage_choices:
        return frozenset(usage_choices.group(1).split(","))
    listed = re.search(r"positional arguments:\n\s+COMMAND\n(.*?)\n\n", text, re.S)
    assert listed, text
    return frozenset(re.findall(r"^ {4}([a-z][a-z-]*)\s", listed.group(1), re.M))


@functools.cache
def _subcommand_flags(sub: str) -> frozenset[str]:
    code, text = _help((sub, "--help"))
    assert code == 0, text
    # the invocation column of the options list (two spaces in), not flags the prose mentions
    options = text.split("\noptions:\n", 1)[1]
    invocations = re.findall(r"^  (-\S.*?)(?:\s{2,}|$)", options, re.M)
    return frozenset(f for inv in invocations for f in re.findall(r"--[A-Za-z0-9][A-Za-z0-9-]*", inv))


def test_the_documents_quote_commands_at_all() -> None:
    # guards the extraction: a regex that stopped matching would make every check below vacuous
    assert len(CLI) >= 40 and len(SCRIPTS) >= 8 and len(MAKE) >= 3
    assert {"train", "launch", "deploy"} <= _subcommands()


@pytest.mark.parametrize("doc, command, whole", CLI, ids=[f"{d}: {c[:60]}" for d, c, _ in CLI])
def test_quoted_rank_search_commands_parse(doc: str, command: str, whole: bool) -> None:
    for kind, sub, args in _invocations(command):
        if kind != "cli" or sub is None or sub.startswith("-") and not args:
            continue  # `rank-search --version`, or a bare `rank-search`
        if sub.startswith("-"):
            assert sub in ("--version", "--help", "-h"), f"{doc}: `{command}`: unknown option {sub!r}"
            continue
        assert sub in _subcommands(), f"{doc}: `{command}`: no sub-command {sub!r}"
        unknown = sorted(set(_flags(args)) - _subcommand_flags(sub))
        assert not unknown, f"{doc}: `{command}`: `rank-search {sub} --help` has no {unknown}"
        if whole:
            code, text = _help((sub, *args))
            assert code == 0, f"{doc}: `{command}` does not parse: {text.strip()}"


@functools.cache
def _script_flags_from_source(script: str) -> frozenset[str]:
    """The `--flags` of every `add_argument(...)` call in the script, read without running it."""
    tree = ast.parse((ROOT / script).read_text(encoding="utf-8"))
    return frozenset(
        arg.value for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "add_argument"
        for arg in node.args if isinstance(arg, ast.Constant) and str(arg.value).startswith("--")
    ) | {"--help"}


def _script_flags_from_help(script: str) -> frozenset[str]:
    done = subprocess.run([sys.executable, script, "--help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, f"{script} --help failed: {done.stderr[-1000:]}"
    return frozenset(re.findall(r"(?<![\w-])--[A-Za-z0-9][A-Za-z0-9-]*", done.stdout))


@pytest.mark.parametrize("script", SCRIPTS)
def test_quoted_benchmark_commands_use_flags_the_script_accepts(script: str) -> None:
    assert (ROOT / script).is_file(), f"{script} is quoted but does not exist"
    accepted = _script_flags_from_source(script)
    for doc, command, _ in QUOTED:
        for kind, name, args in _invocations(command):
            if kind == "script" and name == script:
                unknown = sorted(set(_flags(args)) - accepted)
                assert not unknown, f"{doc}: `{command}`: {script} has no argument {unknown}"


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS)
def test_a_scripts_help_lists_the_flags_read_from_its_source(script: str) -> None:
    # the fast test above reads the flags from the source (each --help imports torch: 10-17 s on a
    # loaded machine); this runs `--help` and checks that it lists every flag read there
    missing = _script_flags_from_source(script) - _script_flags_from_help(script)
    assert not missing, f"{script} --help does not list {sorted(missing)}"


def _make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    return set(re.findall(r"^([A-Za-z0-9_.-]+)\s*:(?!=)", text, re.M))


def test_quoted_make_targets_exist() -> None:
    targets = _make_targets()
    assert {"demo", "test"} <= targets
    for doc, command in MAKE:
        for kind, target, _ in _invocations(command):
            if kind == "make" and target is not None and "=" not in target:
                assert target in targets, f"{doc}: `{command}`: the Makefile has no target {target!r}"


def _cli_doc_sections() -> dict[tuple[str, ...], str]:
    """docs/cli.md's "Flags per command" sections: the sub-commands a heading names -> its text."""
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    part = text.split("## Flags per command", 1)[1].split("\n## ", 1)[0]
    sections = re.split(r"^### (.+)$", part, flags=re.M)[1:]
    return {tuple(re.findall(r"`([a-z-]+)`", head)): body for head, body in zip(sections[::2], sections[1::2])}


def _program(command: str) -> str | None:
    tokens = _tokens(command)
    return next((t for t in tokens if not WRAPPER.fullmatch(t)), None)


def test_fenced_commands_name_programs_that_exist() -> None:
    # `.venv/bin/X` must be installed by `make install`; anything else must be on PATH
    venv_bin = ROOT / ".venv" / "bin" if (ROOT / ".venv" / "bin").is_dir() else Path(sys.executable).parent
    for doc in DOCS:
        for command in _fenced_commands(doc.read_text(encoding="utf-8")):
            program = _program(command)
            if program is None or program in SHELL_BUILTINS:
                continue
            if program.startswith(".venv/bin/"):
                assert (venv_bin / program.removeprefix(".venv/bin/")).exists(), f"{_rel(doc)}: `{command}`"
            else:
                assert shutil.which(program), f"{_rel(doc)}: `{command}`: {program!r} is not a program here"


def test_cli_doc_lists_every_flag_of_every_sub_command_and_no_other() -> None:
    sections = _cli_doc_sections()
    documented: dict[str, set[str]] = {sub: set() for sub in _subcommands()}
    for subs, body in sections.items():
        assert set(subs) <= _subcommands(), f"docs/cli.md: a section for {subs}"
        for code in INLINE.findall(body):
            tokens = code.split()
            owners = [tokens[0]] if tokens and tokens[0] in subs else list(subs)
            for flag in _flags(tokens):
                for sub in owners:
                    assert flag in _subcommand_flags(sub), f"docs/cli.md: `{code}`: {sub} has no {flag}"
                    documented[sub].add(flag)
    for sub in _subcommands():
        missing = sorted(_subcommand_flags(sub) - documented[sub] - {"--help"})
        assert not missing, f"docs/cli.md does not document `{sub}` {missing}"


def test_inline_sub_command_flags_exist() -> None:
    # prose such as `export --weights` or `status --json`: the sub-command takes that flag
    checked = 0
    for doc in DOCS:
        for code in _inline_commands(doc.read_text(encoding="utf-8")):
            tokens = code.split()
            if len(tokens) > 1 and tokens[0] in _subcommands() and tokens[1].startswith("--"):
                unknown = sorted(set(_flags(tokens)) - _subcommand_flags(tokens[0]))
                assert not unknown, f"{_rel(doc)}: `{code}`: {tokens[0]} has no {unknown}"
                checked += 1
    assert checked >= 10


# -- links ------------------------------------------------------------------------------------

def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


@functools.cache
def _anchors(path: Path) -> frozenset[str]:
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    out = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*$", text, re.M):
        slug = _slug(heading)
        n = seen.get(slug, 0)
        out.add(slug if n == 0 else f"{slug}-{n}")
        seen[slug] = n + 1
    return frozenset(out)


def _links() -> list[tuple[Path, str]]:
    out = []
    for doc in DOCS:
        text = FENCE.sub("", doc.read_text(encoding="utf-8"))
        out += [(doc, target) for target in LINK.findall(text)]
    return out


LINKS = _links()


def test_the_documents_link_at_all() -> None:
    assert len([t for _, t in LINKS if not re.match(r"[a-z]+:", t)]) >= 20


@pytest.mark.parametrize("doc, target", LINKS, ids=[f"{_rel(d)} -> {t}" for d, t in LINKS])
def test_relative_links_resolve(doc: Path, target: str) -> None:
    if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
        return
    path, _, anchor = target.partition("#")
    dest = (doc.parent / path).resolve() if path else doc
    assert dest.exists(), f"{_rel(doc)}: link to {target!r}: {dest} does not exist"
    assert ROOT in dest.parents or dest == ROOT, f"{_rel(doc)}: link to {target!r} leaves the repository"
    if anchor and dest.suffix == ".md":
        assert anchor in _anchors(dest), f"{_rel(doc)}: link to {target!r}: no such heading in {dest.name}"


# -- sizes and promises -----------------------------------------------------------------------

def test_readme_and_results_stay_short() -> None:
    assert README.stat().st_size <= README_MAX_BYTES, f"README.md is {README.stat().st_size} bytes"
    assert RESULTS.stat().st_size <= RESULTS_MAX_BYTES, f"RESULTS.md is {RESULTS.stat().st_size} bytes"


def test_readme_says_once_up_front_how_commands_run() -> None:
    text = README.read_text(encoding="utf-8")
    first_block = text.index("```bash")
    assert "make demo" in text[first_block:first_block + 400] and "make test" in text[first_block:first_block + 400]
    quick_start = text.index("## Quick start")
    assert ".venv/bin/rank-search" in text[:quick_start] and "source .venv/bin/activate" in text[:quick_start]
    # no bare `rank-search SUB` a reader would paste into a shell without the venv on PATH
    for doc in DOCS:
        for command in _fenced_commands(doc.read_text(encoding="utf-8")):
            first = _tokens(command)[0] if _tokens(command) else ""
            assert first != "rank-search", f"{_rel(doc)}: `{command}` needs .venv/bin/ (or the activated venv)"


def test_resume_states_its_trust_boundary_in_help_readme_and_cli_doc() -> None:
    # moved here from tests/search/test_hardening.py: resume's help, the README and docs/cli.md
    # all say that resume unpickles and whose experiments it may resume
    code, text = _help(("resume", "--help"))
    assert code == 0
    text = " ".join(text.split())
    assert "pickle" in text and "only experiments that you or your cluster wrote" in text
    for doc in (README, ROOT / "docs" / "cli.md"):
        prose = " ".join(doc.read_text(encoding="utf-8").split())
        assert "unpickling runs code" in prose and "only experiments that you or your cluster wrote" in prose, doc

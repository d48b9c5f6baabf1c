"""Docstrings state contracts (STYLE.md, 2026-12-06): short module docstrings, no benchmark figures.

Every module under the local packages is parsed with ``ast`` (nothing is imported). The story of
how a heuristic was found and every measured figure belong in ``docs/`` and
``benchmarks/RESULTS.md``, where a rerun updates them; a docstring quoting them goes stale.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("rank_search", "analysis", "search_spaces")
MAX_MODULE_LINES = 25

_N = r"(?:\d+|one|two|three|four|five|six|seven|eight|nine|ten)"
# name -> a pattern of a benchmark figure; each is checked below against figures that docstrings
# once quoted and against contract sentences it must let through
FIGURES = {
    "a pointer to RESULTS.md": r"RESULTS\.md",
    "a seed count": rf"\bseeds? (?:of )?{_N}\b|\b{_N} seeds\b",
    "a timing": r"\b(?:make )?demo\b[^.]{0,80}?\b\d+(?:\.\d+)? ?(?:min|minutes|s|seconds)\b"
                r"|\b\d+(?:\.\d+)? ?(?:s|min) wall\b",
    "a range of percentages": r"\d+(?:\.\d+)?-\d+(?:\.\d+)?%",
    "a log hypervolume": r"\blog HV\b",
    "a tally of runs": r"\b\d+ of (?:the )?\d+\b",
    "a result on a model": r"\bon (?:resnet|vgg|lenet|mobilenet)\w*\b",
    "a range of ratios": r"\b\d+(?:\.\d+)?-\d+(?:\.\d+)?x\b",
    "an accuracy at a ratio": r"\b0\.\d{2,3}(?:-0\.\d{2,3})?\b[^.\n]{0,25}?\b\d+(?:\.\d+)?x\b"
                              r"|\b0\.\d{2,3}(?:-0\.\d{2,3})? validation accuracy",
}

# figures the refine sampler's docstrings quoted before they moved to docs/refine.md
QUOTED = [
    "on resnet20 (benchmarks/RESULTS.md) the floor alone kept every parent within 5 pt",
    "where a uniform grid still found 65-86% models",
    "left 8-16x untried",
    "(on resnet20, 7 of the 20 refinements of 5 seeds re-ran the 2x target)",
    "(on ``demo`` at 10 seeds the draws gave it to ``trp``",
    "at 0.60-0.96 validation accuracy",
    "and the draw gave it ``trp`` (0.810 at 10x)",
    "on resnet20 it kept more accuracy than the profile's at 6.5-13x",
    "which gave it to ``deeptwist`` on one seed of three",
    "the demo's profile took 28 s wall without, 19-21 s with it",
    "log HV above the grid on 9 of 10",
]
CONTRACTS = [
    "``seed`` makes the search reproducible; the same seed and history give the same samples.",
    "``97.3%`` for accuracies, ``4.21x`` for ratios",
    "default ``value:0.05``; ``ratio:0.25`` gives fixed ranks",
    "the worst value pushed out by 10% of its range",
    "a target MACs compression in [2, 20], spaced 0.15 of the log range",
    "one of rank 16 costs what a dense layer costs",
]


def _modules() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py") if ".venv" not in p.parts)


def _docstrings(tree: ast.Module):
    """(name, docstring) of the module and every class and function in it."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=False)
            if doc:
                yield getattr(node, "name", "<module>"), doc


def _figures(text: str) -> list[str]:
    return [f"{kind}: {m.group(0)!r}" for kind, pat in FIGURES.items() for m in re.finditer(pat, text)]


def test_every_package_has_modules():
    assert all(any(p.parts[len(ROOT.parts)] == pkg for p in _modules()) for pkg in PACKAGES)


@pytest.mark.parametrize("text", QUOTED)
def test_the_patterns_catch_the_figures_docstrings_quoted(text):
    assert _figures(text)


@pytest.mark.parametrize("text", CONTRACTS)
def test_the_patterns_let_contracts_through(text):
    assert not _figures(text)


def test_no_module_docstring_is_longer_than_25_lines():
    long = {}
    for path in _modules():
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")), clean=False)
        if doc and len(doc.splitlines()) > MAX_MODULE_LINES:
            long[str(path.relative_to(ROOT))] = len(doc.splitlines())
    assert not long, f"module docstrings over {MAX_MODULE_LINES} lines (move the story to docs/): {long}"


def test_no_docstring_quotes_a_benchmark_figure():
    found = []
    for path in _modules():
        for name, doc in _docstrings(ast.parse(path.read_text(encoding="utf-8"))):
            found += [f"{path.relative_to(ROOT)}:{name}: {f}" for f in _figures(doc)]
    assert not found, "benchmark figures in docstrings (they belong in docs/ and RESULTS.md):\n" + "\n".join(found)

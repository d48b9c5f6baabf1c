"""Packaging metadata: current setuptools forms, no stale warning filters."""
from __future__ import annotations

import tomllib
from pathlib import Path

PYPROJECT = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text(encoding="utf-8"))


def test_license_is_an_spdx_expression() -> None:
    # a {text = ...} table is deprecated by setuptools (a warning on every install, an error from 2027)
    assert PYPROJECT["project"]["license"] == "Apache-2.0"
    assert any(req.startswith("setuptools>=77") for req in PYPROJECT["build-system"]["requires"])


def test_no_warning_filter_for_tensorly() -> None:
    # tensorly warns no more (decomp.tucker uses tl.backend_context); a filter would hide new warnings
    filters = PYPROJECT["tool"]["pytest"]["ini_options"].get("filterwarnings", [])
    assert not [f for f in filters if "tensorly" in f]

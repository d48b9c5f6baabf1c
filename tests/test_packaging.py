"""Packaging metadata: current setuptools forms, no stale warning filters."""
from __future__ import annotations

import email.parser
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.licenses import canonicalize_license_expression
from packaging.requirements import Requirement

PYPROJECT = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text(encoding="utf-8"))


def test_setuptools_builds_the_metadata_with_a_license_expression_and_no_warning(tmp_path) -> None:
    # What pip meets: setuptools reads pyproject.toml and writes the core metadata. A deprecated
    # form (a {text = ...} license table, an old setuptools) warns on every install; -W error fails
    # on it. The license must come out as a PEP 639 License-Expression that packaging accepts.
    root = Path(__file__).resolve().parents[1]
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(root / name, tmp_path / name)
    build = "from setuptools import build_meta; print(build_meta.prepare_metadata_for_build_wheel('.'))"
    done = subprocess.run([sys.executable, "-W", "error", "-c", build], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    dist_info = done.stdout.strip().splitlines()[-1]
    metadata = email.parser.Parser().parsestr((tmp_path / dist_info / "METADATA").read_text(encoding="utf-8"))
    assert tuple(int(x) for x in metadata["Metadata-Version"].split(".")) >= (2, 4)
    assert metadata.get_all("License") is None, "a free-text License field instead of an SPDX expression"
    expression = metadata["License-Expression"]
    assert expression is not None
    assert canonicalize_license_expression(expression) == expression == "Apache-2.0"
    # an isolated build (pip's default) installs build-system.requires, not this venv's setuptools:
    # it must exclude every setuptools before 77, the first to read a license expression
    setuptools_req = next(Requirement(r) for r in PYPROJECT["build-system"]["requires"]
                          if Requirement(r).name == "setuptools")
    assert not setuptools_req.specifier.contains("76.9.9"), setuptools_req


def test_no_warning_filter_for_tensorly() -> None:
    # tensorly warns no more (decomp.tucker uses tl.backend_context); a filter would hide new warnings
    filters = PYPROJECT["tool"]["pytest"]["ini_options"].get("filterwarnings", [])
    assert not [f for f in filters if "tensorly" in f]

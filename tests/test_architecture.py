"""Import rules of the architecture (STYLE.md habit 2), checked by parsing the sources with ``ast``.

Nothing is imported: the rules hold for every file present, including folders that are still
empty or growing.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LOCAL_PACKAGES = ("rank_search", "analysis", "search_spaces")


def _module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _module_file(name: str, root: Path = ROOT) -> Path | None:
    """The source file of a local module, or None (external or missing)."""
    base = root.joinpath(*name.split("."))
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    return None


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST, *, module_level: bool) -> list[ast.stmt]:
    """Import statements; with ``module_level`` only those that run when the module is imported
    (not inside functions, not under ``if TYPE_CHECKING:``)."""
    found: list[ast.stmt] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
            return
        if module_level:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                return
            if isinstance(node, ast.If) and _is_type_checking(node.test):
                for child in node.orelse:
                    visit(child)
                return
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def imported_modules(path: Path, *, module_level: bool = False, root: Path = ROOT) -> set[str]:
    """Absolute names of the modules ``path`` imports (relative imports resolved; for
    ``from pkg import name`` both ``pkg`` and, when it is a local module, ``pkg.name``)."""
    name = _module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in _import_nodes(ast.parse(path.read_text(encoding="utf-8"), str(path)), module_level=module_level):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
            continue
        if node.level:
            base_parts = package.split(".") if package else []
            base_parts = base_parts[: len(base_parts) - (node.level - 1)]
            base = ".".join(base_parts + ([node.module] if node.module else []))
        else:
            base = node.module or ""
        out.add(base)
        for alias in node.names:
            if _module_file(f"{base}.{alias.name}", root) is not None:
                out.add(f"{base}.{alias.name}")
    return out


def _with_parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def import_closure(paths: list[Path], *, root: Path = ROOT) -> dict[str, str]:
    """External top-level packages imported when ``paths`` are imported: {package: via which module}.

    Local modules are followed through their module-level imports (and their parent packages).
    """
    external: dict[str, str] = {}
    seen: set[Path] = set()
    todo = list(paths)
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for mod in imported_modules(path, module_level=True, root=root):
            top = mod.split(".")[0]
            if top not in LOCAL_PACKAGES and _module_file(top, root) is None:
                external.setdefault(top, str(path.relative_to(root)))
                continue
            for parent in _with_parents(mod):
                f = _module_file(parent, root)
                if f is not None and f not in seen:
                    todo.append(f)
    return external


def _py_files(folder: str) -> list[Path]:
    base = ROOT / folder
    return sorted(base.rglob("*.py")) if base.is_dir() else []


def _direct_violations(files: list[Path], banned: set[str]) -> list[str]:
    """Imports of ``banned`` packages anywhere in ``files`` (function bodies included)."""
    bad = []
    for f in files:
        for mod in imported_modules(f):
            if mod.split(".")[0] in banned:
                bad.append(f"{f.relative_to(ROOT)} imports {mod}")
    return bad


def _closure_violations(files: list[Path], banned: set[str]) -> list[str]:
    bad = []
    for f in files:
        for pkg, via in import_closure([f]).items():
            if pkg in banned:
                bad.append(f"{f.relative_to(ROOT)} imports {pkg} (through {via}) when imported")
    return bad


# ---- the checker itself can fail ----

def test_checker_sees_every_kind_of_import(tmp_path: Path) -> None:
    pkg = tmp_path / "rank_search"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from .. import helper\n")
    (pkg / "helper.py").write_text("import numpy as np\nfrom torch import nn\n")
    (pkg / "lazy.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import ray\n"
        "def f():\n    import ray.tune\n"
        "try:\n    import yaml\nexcept ImportError:\n    pass\n"
        "from .sub import helper\n"
    )
    lazy = pkg / "lazy.py"
    assert imported_modules(lazy, root=tmp_path) == {"typing", "ray", "ray.tune", "yaml", "rank_search.sub"}
    assert imported_modules(lazy, module_level=True, root=tmp_path) == {"typing", "yaml", "rank_search.sub"}
    assert imported_modules(pkg / "sub" / "__init__.py", root=tmp_path) == {"rank_search", "rank_search.helper"}
    closure = import_closure([lazy], root=tmp_path)
    assert set(closure) == {"typing", "yaml", "numpy", "torch"}
    assert closure["torch"] == "rank_search/helper.py"


def test_the_package_is_where_the_rules_expect_it() -> None:
    assert _module_file("rank_search.schema") is not None
    assert len(_py_files("rank_search/engine")) >= 2 and len(_py_files("rank_search/layers")) >= 2


# ---- the rules ----

def test_analysis_never_imports_torch_or_ray() -> None:
    files = _py_files("analysis")  # may be empty while analysis is being written
    banned = {"torch", "ray", "torchvision"}
    assert _direct_violations(files, banned) == []
    assert _closure_violations(files, banned) == []


def test_schema_is_free_of_torch_and_ray() -> None:
    schema = ROOT / "rank_search" / "schema.py"
    assert _direct_violations([schema], {"torch", "ray"}) == []
    assert _closure_violations([schema], {"torch", "ray"}) == []


@pytest.mark.parametrize("folder", ["rank_search/engine", "rank_search/methods", "rank_search/layers",
                                    "rank_search/decomp"])
def test_core_never_imports_ray(folder: str) -> None:
    files = _py_files(folder)
    assert files
    assert _direct_violations(files, {"ray"}) == []
    assert _closure_violations(files, {"ray"}) == []


@pytest.mark.parametrize("module", ["rank_search/cli/__init__.py", "rank_search/cli/_common.py"])
def test_cli_top_does_not_import_torch(module: str) -> None:
    """``rank-search --help`` stays fast: torch is imported inside the sub-commands only."""
    path = ROOT / module
    top_level = {m.split(".")[0] for m in imported_modules(path, module_level=True)}
    assert "torch" not in top_level
    assert _closure_violations([path], {"torch", "torchvision"}) == []

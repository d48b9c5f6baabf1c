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


def _import_base(node: ast.ImportFrom, package: str) -> str:
    """The absolute module a ``from ... import`` names, relative levels resolved in ``package``."""
    if not node.level:
        return node.module or ""
    parts = package.split(".") if package else []
    parts = parts[: len(parts) - (node.level - 1)]
    return ".".join(parts + ([node.module] if node.module else []))


def _import_nodes(tree: ast.AST, *, module_level: bool, type_checking: bool = True) -> list[ast.stmt]:
    """Import statements; with ``module_level`` only those that run when the module is imported
    (not inside functions, not under ``if TYPE_CHECKING:``); without ``type_checking`` none under
    ``if TYPE_CHECKING:`` anywhere."""
    found: list[ast.stmt] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
            return
        if module_level and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            return
        if (module_level or not type_checking) and isinstance(node, ast.If) and _is_type_checking(node.test):
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
        base = _import_base(node, package)
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


@pytest.mark.parametrize("module", ["rank_search/cli/__init__.py", "rank_search/cli/_output.py",
                                    "rank_search/cli/_progress.py", "rank_search/cli/_pick.py"])
def test_cli_top_does_not_import_torch(module: str) -> None:
    """``rank-search --help`` stays fast: torch is imported inside the sub-commands only."""
    path = ROOT / module
    top_level = {m.split(".")[0] for m in imported_modules(path, module_level=True)}
    assert "torch" not in top_level
    assert _closure_violations([path], {"torch", "torchvision"}) == []


# ---- the internal import direction ----
# Data flows one way: decomp -> layers -> plan/surgery/cost -> engine -> methods -> run ->
# search -> cli. A module may import its own unit and any unit of a lower level, never one of a
# higher level (function bodies included: a lazy upward import is still an upward dependency).
# `analysis` reads results from disk and may import only the torch-free names and file layer.

LEVELS: dict[str, int] = {
    # foundation: torch-free names, errors, the registry, the file layer, `--set` parsing
    "rank_search": 0, "rank_search.errors": 0, "rank_search.schema": 0, "rank_search._registry": 0,
    "rank_search.registry": 0, "rank_search.safe_yaml": 0,
    "rank_search.storage": 0, "rank_search.overrides": 0,
    "rank_search.decomp": 1,
    "rank_search.layers": 2,
    # what is compressed and how much it costs; what is trained, on what
    "rank_search.suffix": 2,  # run a model from one layer on (torch.fx), for the profile
    "rank_search.plan": 3, "rank_search.surgery": 3, "rank_search.cost": 3, "rank_search.groups": 3,
    "rank_search.checkpoint": 3, "rank_search.models": 3, "rank_search.data": 3, "rank_search.weights": 3,
    "rank_search.allocation": 3,  # budget-driven rank allocation from a profile table
    "rank_search.latency": 3,  # measured forward-pass time (what MACs predict), for run and deploy
    "rank_search.layer_latency": 3,  # measured per-layer time, the latency budget's cost table
    "rank_search.tables": 3,  # the profile and layer latency tables and their files
    "rank_search.engine": 4,
    "rank_search.methods": 5,
    "rank_search.run": 6, "rank_search.profile": 6,
    "rank_search.deploy": 6,  # compact checkpoints -> ONNX / torch.export files, and their measurement
    "search_spaces": 7, "rank_search.search": 7,
    "rank_search.cli": 8, "rank_search.__main__": 8,
}
ANALYSIS_MAY_IMPORT = ("rank_search", "rank_search.schema", "rank_search.errors", "rank_search.storage")


def _unit(module: str) -> str | None:
    """The architectural unit of a local module (``rank_search.search.sweep`` -> ``rank_search.search``)."""
    parts = module.split(".")
    if parts[0] in ("analysis", "search_spaces"):
        return parts[0]
    if parts[0] != "rank_search":
        return None
    return "rank_search" if len(parts) == 1 else f"rank_search.{parts[1]}"


def direction_violations(files: list[Path], *, root: Path = ROOT, levels: dict[str, int] = LEVELS) -> list[str]:
    """Imports that go up the flow (or leave ``analysis`` for anything but the torch-free names)."""
    bad = []
    for f in files:
        source = _unit(_module_name(f, root))
        for mod in sorted(imported_modules(f, root=root)):
            target = _unit(mod)
            if target is None or target == source:
                continue
            if source == "analysis":
                if target not in ANALYSIS_MAY_IMPORT:
                    bad.append(f"{f.relative_to(root)} imports {mod}: analysis reads only "
                               f"{', '.join(ANALYSIS_MAY_IMPORT[1:])}")
                continue
            if target == "analysis":
                if source not in ("rank_search.cli",):
                    bad.append(f"{f.relative_to(root)} imports {mod}: only the CLI uses analysis")
                continue
            if source not in levels or target not in levels:
                bad.append(f"{f.relative_to(root)} imports {mod}: unit {source if source not in levels else target} "
                           "has no level in LEVELS (add it where it belongs in the flow)")
            elif levels[target] > levels[source]:
                bad.append(f"{f.relative_to(root)} imports {mod}: {source} (level {levels[source]}) must not "
                           f"import {target} (level {levels[target]})")
    return bad


def _tree(tmp_path: Path, files: dict[str, str]) -> list[Path]:
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return sorted(tmp_path.rglob("*.py"))


def test_direction_checker_fails_on_an_upward_import(tmp_path: Path) -> None:
    files = _tree(tmp_path, {
        "rank_search/__init__.py": "",
        "rank_search/engine/__init__.py": "",
        "rank_search/engine/trainer.py": "def f():\n    from ..methods.base import Method\n",
        "rank_search/methods/__init__.py": "",
        "rank_search/methods/base.py": "from ..engine.trainer import f\n",
        "analysis/__init__.py": "from rank_search.schema import X\n",
        "analysis/ranks.py": "from rank_search.search import groups\n",
    })
    bad = direction_violations(files, root=tmp_path)
    assert bad == [
        "analysis/ranks.py imports rank_search.search: analysis reads only rank_search.schema, "
        "rank_search.errors, rank_search.storage",
        "rank_search/engine/trainer.py imports rank_search.methods.base: rank_search.engine (level 4) must "
        "not import rank_search.methods (level 5)",
    ]


def test_every_unit_has_a_level() -> None:
    units = {_unit(_module_name(f)) for folder in ("rank_search", "search_spaces") for f in _py_files(folder)}
    assert units - set(LEVELS) == set()


def test_imports_follow_the_flow() -> None:
    files = [f for folder in ("rank_search", "analysis", "search_spaces") for f in _py_files(folder)]
    assert len(files) > 50
    assert direction_violations(files) == []


def test_importing_the_engine_loads_no_method() -> None:
    closure_files = [ROOT / "rank_search" / "engine" / "__init__.py"]
    seen: set[str] = set()
    todo = list(closure_files)
    while todo:
        path = todo.pop()
        name = _module_name(path)
        if name in seen:
            continue
        seen.add(name)
        for mod in imported_modules(path, module_level=True):
            for parent in _with_parents(mod):
                f = _module_file(parent)
                if f is not None and _module_name(f) not in seen:
                    todo.append(f)
    assert not [m for m in seen if m.startswith(("rank_search.methods", "rank_search.run", "rank_search.search"))]


# ---- no import cycles ----
# A cycle hidden in a function body is still a cycle: the two modules cannot be understood,
# tested or moved apart. Two kinds of edge are not dependencies: an import under
# ``if TYPE_CHECKING:`` (never runs), and a package's ``__init__`` importing its own submodules
# (a package is made of its parts; importing a part always imports its package first).


def _runtime_import_nodes(tree: ast.AST) -> list[ast.stmt]:
    """Every import that can run (function bodies included), none under ``if TYPE_CHECKING:``."""
    return _import_nodes(tree, module_level=False, type_checking=False)


def import_graph(files: list[Path], *, root: Path = ROOT) -> dict[str, set[str]]:
    """{module: the local modules it imports at run time}, each import resolved to the deepest
    local module it names (``from pkg import mod`` -> ``pkg.mod``; ``from pkg import name`` -> ``pkg``)."""
    graph: dict[str, set[str]] = {}
    for f in files:
        name = _module_name(f, root)
        package = name if f.name == "__init__.py" else name.rpartition(".")[0]
        deps: set[str] = set()
        for node in _runtime_import_nodes(ast.parse(f.read_text(encoding="utf-8"), str(f))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = _import_base(node, package)
                targets = [f"{base}.{a.name}" if _module_file(f"{base}.{a.name}", root) else base for a in node.names]
            for target in targets:
                local = _module_file(target, root)
                if local is None:
                    continue
                dep = _module_name(local, root)
                own_part = f.name == "__init__.py" and dep.startswith(name + ".")
                if dep != name and not own_part:
                    deps.add(dep)
        graph[name] = deps
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected sets of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in graph:
                continue
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            part = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                part.append(w)
                if w == v:
                    break
            if len(part) > 1:
                cycles.append(sorted(part))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return sorted(cycles)


def test_cycle_checker_sees_a_cycle_hidden_in_a_function(tmp_path: Path) -> None:
    files = _tree(tmp_path, {
        "rank_search/__init__.py": "",
        "rank_search/a.py": "def f():\n    from .b import g\n",
        "rank_search/b.py": "from rank_search import a\n",
        "rank_search/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import f\n",
        "rank_search/d.py": "from . import c\n",
        "rank_search/reg/__init__.py": "REG = {}\nfrom . import part\n",
        "rank_search/reg/part.py": "from rank_search.reg import REG\nfrom .. import a\n",
    })
    graph = import_graph(files, root=tmp_path)
    assert graph["rank_search.c"] == set() and graph["rank_search.reg"] == set()  # TYPE_CHECKING; own part
    assert graph["rank_search.reg.part"] == {"rank_search.reg", "rank_search.a"}
    assert import_cycles(graph) == [["rank_search.a", "rank_search.b"]]


def test_no_import_cycles() -> None:
    files = [f for folder in ("rank_search", "analysis", "search_spaces") for f in _py_files(folder)]
    assert import_cycles(import_graph(files)) == []


def test_search_spaces_use_only_public_rank_search_modules() -> None:
    bad = [f"{f.relative_to(ROOT)} imports {mod}" for f in _py_files("search_spaces")
           for mod in sorted(imported_modules(f)) if mod.startswith("rank_search") and "._" in f".{mod}"]
    assert bad == []

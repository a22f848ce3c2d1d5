"""The shape of the source tree: no import cycle between modules of attnrec, and no source file over 700 lines.

The import graph is read from the source with :mod:`ast`, so modules are never executed. Every ``import`` and
``from ... import`` counts wherever it stands: at module level, inside a function (a lazy import still ties the
two modules together) and under ``if TYPE_CHECKING:``. Relative imports are resolved against the importing
module's package. ``from pkg import name`` is an edge to the submodule ``pkg.name`` when there is one, else to
``pkg`` itself (its ``__init__``); the implicit import of a parent package that Python performs before a
submodule is not an edge (a package ``__init__`` that re-exports its children would otherwise form a cycle with
each of them).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "attnrec"
MAX_LINES = 700


def module_names(root: Path) -> dict[str, Path]:
    """Dotted module name -> file for every ``.py`` under ``root`` (a package folder); ``__init__`` names its package."""
    mods: dict[str, Path] = {}
    for f in sorted(root.rglob("*.py")):
        parts = f.relative_to(root.parent).with_suffix("").parts
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return mods


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the modules of the same top-level package it imports (see the module docstring)."""
    mods = module_names(root)
    top = root.name

    def owner(name: str) -> str | None:
        """The module that ``name`` (a dotted path, maybe ending in an attribute) lives in."""
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = package.split(".")
                    if node.level - 1 >= len(parts):
                        raise ValueError(f"{path}:{node.lineno}: relative import beyond the top package")
                    base = ".".join(parts[: len(parts) - (node.level - 1)])
                    source = f"{base}.{node.module}" if node.module else base
                else:
                    source = node.module or ""
                # `from pkg import sub` imports the submodule; `from pkg import name` the package itself
                targets = [
                    f"{source}.{a.name}" if f"{source}.{a.name}" in mods else source for a in node.names
                ]
            for target in targets:
                if target.split(".")[0] != top:
                    continue
                found = owner(target)
                if found is not None and found != mod:
                    graph[mod].add(found)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        work = [(start, iter(sorted(graph[start])))]
        while work:
            v, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[v])
                if low[v] == index[v]:
                    component = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        component.append(w)
                        if w == v:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return sorted(found)


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        f = root / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(text)
    return root / "pkg"


def test_cycle_finder_sees_lazy_relative_and_type_checking_imports(tmp_path: Path) -> None:
    pkg = _write(
        tmp_path,
        {
            "pkg/__init__.py": "from pkg.sub import api\n",
            "pkg/sub/__init__.py": "",
            "pkg/sub/api.py": "import os\nfrom pkg.leaf import x\n",
            "pkg/leaf.py": "x = 1\n",
            # a <-> b through a lazy import inside a function, written as a relative import
            "pkg/sub/a.py": "from pkg.sub import b\n",
            "pkg/sub/b.py": "def f():\n    from . import a\n    return a\n",
            # c -> d -> e -> c, the last edge only for the type checker
            "pkg/c.py": "import pkg.d\n",
            "pkg/d.py": "from .sub.e import E\n",
            "pkg/sub/e.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..c import C\n",
            # importing a package's own name from a child: child -> __init__ -> child
            "pkg/sub2/__init__.py": "from pkg.sub2.g import G\nVERSION = 1\n",
            "pkg/sub2/g.py": "from pkg.sub2 import VERSION\nclass G: ...\n",
        },
    )
    graph = import_graph(pkg)
    assert graph["pkg"] == {"pkg.sub.api"}
    assert graph["pkg.sub.api"] == {"pkg.leaf"}  # os is outside the package
    assert graph["pkg.sub.b"] == {"pkg.sub.a"}
    assert graph["pkg.d"] == {"pkg.sub.e"}
    assert cycles(graph) == [
        ["pkg.c", "pkg.d", "pkg.sub.e"],
        ["pkg.sub.a", "pkg.sub.b"],
        ["pkg.sub2", "pkg.sub2.g"],
    ]
    assert cycles({"x": {"y"}, "y": set(), "z": {"z"}}) == []


def test_no_import_cycle() -> None:
    found = cycles(import_graph(SRC))
    assert not found, "import cycles in src/attnrec:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_no_source_file_over_700_lines() -> None:
    long = {
        str(f.relative_to(SRC.parent)): n
        for f in sorted(SRC.rglob("*.py"))
        if (n := len(f.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"over {MAX_LINES} lines (split into a package, one concern a file): {long}"


@pytest.mark.parametrize("name", ["attnrec.data.schema", "attnrec.paths"])
def test_leaf_modules_import_no_other_attnrec_module_but_errors(name: str) -> None:
    assert import_graph(SRC)[name] <= {"attnrec.errors"}

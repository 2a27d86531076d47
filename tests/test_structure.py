"""The shape of the source tree: no import circle, no file over 400 lines, no ``utils.py``.

The import graph is read with :mod:`ast`, so imports inside functions (the "lazy" imports that
would hide a circle from Python's own import machinery) count as much as top-level ones.
``rd_components`` modules are named ``rd_components.<...>``; ``scripts/`` is on ``sys.path``
when its CLIs run, so its modules are named relative to it (``comparison.plots``, ``compare``).
An import names the module it reads: ``from pkg import name`` reads ``pkg.name`` when that is
a module, else ``pkg``. The parent packages Python also imports on the way are not edges
(every submodule would otherwise "import" the ``__init__`` that imports it).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: source folder -> the prefix its module names get (scripts/ is a sys.path entry, not a package)
ROOTS = {REPO / "rd_components": "rd_components", REPO / "scripts": ""}
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    """Module name -> file, for every ``.py`` under the source roots."""
    found = {}
    for root, prefix in ROOTS.items():
        for path in sorted(root.rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            name = ".".join(([prefix] if prefix else []) + parts)
            if name:
                found[name] = path
    return found


def _imported(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The modules of ``modules`` that module ``name`` (file ``path``) imports, anywhere in it."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()

    def known(candidate: str) -> str | None:
        # the nearest enclosing module we know: "a.b.c" (a class or function of a.b) -> "a.b"
        while candidate and candidate not in modules:
            candidate = candidate.rpartition(".")[0]
        return candidate or None

    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets.update(filter(None, (known(alias.name) for alias in node.names)))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package else []
                base = base[:len(base) - (node.level - 1)] if node.level > 1 else base
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                full = f"{source}.{alias.name}" if source else alias.name
                targets.add(full if full in modules else known(source) if source else None)
    targets.discard(None)
    targets.discard(name)
    return targets


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imported(name, path, modules) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_sees_lazy_and_relative_imports():
    graph = _graph()
    assert "rd_components.errors" in graph["rd_components.data.user_data"]
    assert "comparison.cells" in graph["comparison.grid"]
    assert "comparison" in graph["comparison.cells"]  # from . import REPO: the package's own name


def test_no_two_modules_import_each_other():
    graph = _graph()
    pairs = sorted({tuple(sorted((a, b))) for a, targets in graph.items() for b in targets if a in graph.get(b, ())})
    assert not pairs, f"modules importing each other: {pairs}"


def test_no_import_cycle():
    cycles = _cycles(_graph())
    assert not cycles, f"import cycles: {cycles}"


def test_errors_is_a_leaf():
    assert not {m for m in _graph()["rd_components.errors"] if m.startswith("rd_components")}


@pytest.mark.parametrize("root", sorted(ROOTS, key=str), ids=lambda p: p.name)
def test_no_source_file_over_400_lines(root):
    long = {str(p.relative_to(REPO)): n for p in root.rglob("*.py") if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"over {MAX_LINES} lines: {long}"


@pytest.mark.parametrize("root", sorted(ROOTS, key=str), ids=lambda p: p.name)
def test_no_utils_module(root):
    assert not list(root.rglob("utils.py"))

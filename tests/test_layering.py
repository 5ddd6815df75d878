"""The layers of the package, read from the source with `ast` (imports at the top of a module and
inside its functions alike): ufm is the core and imports nothing above it, deep never imports
figures, figures imports nothing that solves, and no two modules import each other in a circle.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("ufm", "deep", "proofs_checks", "figures", "benchmarks")
# Modules that solve (optimisation problems, their certificates, the sweeps and runs built on
# them): the figures draw what these wrote and import none of them.
SOLVING = (
    "ufm.solvers",
    "ufm.convex",
    "ufm.grouped",
    "ufm.problems",
    "ufm.certify",
    "ufm.prediction",
    "ufm.simulate",
    "ufm.sweeps",
    "proofs_checks",
    "deep",
)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def _modules() -> dict[str, Path]:
    return {
        _module_name(path): path
        for package in PACKAGES
        for path in sorted((REPO / package).rglob("*.py"))
    }


def _resolve(name: str) -> str | None:
    """The module of this repository that `name` imports (its longest known prefix)."""
    parts = name.split(".")
    while parts:
        if ".".join(parts) in _modules():
            return ".".join(parts)
        parts.pop()
    return None


def _targets(module: str, node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:  # a relative import, from the module's own package
            package = module.split(".")
            if _modules()[module].name != "__init__.py":
                package = package[:-1]
            package = package[: len(package) - node.level + 1]
            base = ".".join([*package, *([base] if base else [])])
        names = [f"{base}.{alias.name}" for alias in node.names] or [base]
    return [target for name in names if (target := _resolve(name)) and target != module]


@cache
def import_graph() -> dict[str, frozenset[str]]:
    """Module -> the modules of this repository it imports anywhere in its source."""
    graph = {}
    for module, path in _modules().items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        found: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                found.update(_targets(module, node))
        graph[module] = frozenset(found)
    return graph


def _in(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(f"{p}.") for p in packages)


def _edges(source: tuple[str, ...], target: tuple[str, ...]) -> list[str]:
    return sorted(
        f"{a} -> {b}"
        for a, imported in import_graph().items()
        if _in(a, source)
        for b in imported
        if _in(b, target)
    )


def test_the_graph_is_read() -> None:
    graph = import_graph()
    assert "ufm.runfolder" in graph["ufm.simulate"]
    assert "ufm.io" in graph["ufm.runfolder"]
    assert "deep.train" in graph["deep.table_plan"]  # imported inside a function


def test_ufm_imports_nothing_above_it() -> None:
    assert _edges(("ufm",), ("deep", "figures", "proofs_checks", "benchmarks")) == []


def test_deep_imports_no_figures() -> None:
    assert _edges(("deep",), ("figures",)) == []


def _closure(module: str) -> set[str]:
    seen, todo = set(), [module]
    while todo:
        for target in import_graph()[todo.pop()]:
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def test_figures_import_nothing_that_solves() -> None:
    """Directly or through another module: figures read run folders and draw."""
    reached = sorted(
        f"{module} -> {target}"
        for module in import_graph()
        if _in(module, ("figures",))
        for target in _closure(module)
        if _in(target, SOLVING)
    )
    assert reached == []


def _cycles(graph: dict[str, frozenset[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
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

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles() -> None:
    assert _cycles(import_graph()) == []


def test_a_cycle_is_found() -> None:
    graph = {"a": frozenset({"b"}), "b": frozenset({"c"}), "c": frozenset({"a"}), "d": frozenset()}
    assert _cycles(graph) == [["a", "b", "c"]]

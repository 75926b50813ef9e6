"""``model/`` imports in one direction: no module reaches itself again through its imports.

Every ``import`` counts, also those inside functions and under ``TYPE_CHECKING``: an import
deferred into a function hides a cycle from Python but not from the reader, and issue 28 found
one (decoding <-> sampling <-> diffusion <-> distill) held together that way.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

PACKAGE = Path("model")


def module_name(path: Path) -> str:
    parts = path.with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(path: Path) -> set[str]:
    """Every ``model...`` name a file imports, as written (``from a import b`` gives ``a.b``)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in names if name.split(".")[0] == "model"}


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules of ``model`` it imports (a name resolves to its longest module)."""
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}

    def resolve(name: str) -> str:
        while name not in modules:
            name = name.rpartition(".")[0]
        return name

    return {
        module: {resolve(name) for name in imported_names(path)} - {module}
        for module, path in modules.items()
    }


def cycle_through(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path of modules (first == last), or None when there is none."""
    state: dict[str, str] = {}  # "open" while on the current path, "done" after

    def visit(module: str, path: list[str]) -> list[str] | None:
        state[module] = "open"
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                return [*path[path.index(target) :], target]
            if target not in state and (found := visit(target, [*path, target])):
                return found
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state and (found := visit(module, [module])):
            return found
    return None


def test_model_has_no_import_cycle() -> None:
    graph = import_graph()
    assert "model.decoding" in graph and "model.distill.loop" in graph  # the graph is model/'s
    assert cycle_through(graph) is None, " -> ".join(cycle_through(graph) or [])


def test_the_cycle_finder_finds_a_cycle_hidden_in_a_function() -> None:
    """The check above can fail: the cycle issue 28 found, rebuilt in miniature."""
    graph = {
        "model.decoding": {"model.sampling"},  # imported inside get_engine
        "model.sampling": {"model.decoding", "model.diffusion"},
        "model.diffusion": set(),
    }
    assert cycle_through(graph) == ["model.decoding", "model.sampling", "model.decoding"]
    assert cycle_through({**graph, "model.decoding": set()}) is None

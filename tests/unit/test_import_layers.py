"""The house's import rules: three layers, arrows only down, and no import cycles.

- pyproject.toml's [tool.importlinter] contracts (also run by `make lint`): artsearch_tools (the tools: the
  `artsearch` command, model export, importers) > services > artsearch (the core); no service imports
  another.
- No import cycle inside any package: a cycle between two modules (even through imports inside functions)
  means the shared piece belongs in a module of its own, below both.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("artsearch", "artsearch_tools", "services")


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(*PACKAGES, include_external_packages=False, cache_dir=None)


def import_cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Every strongly connected set of modules with more than one member (Tarjan, iterative), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    cycles: list[list[str]] = []
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            module, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                elif child in on_stack:
                    low[module] = min(low[module], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[module])
            if low[module] == index[module]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == module:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
    return cycles


def test_no_import_cycles(graph: grimp.ImportGraph) -> None:
    cycles = import_cycles(graph)
    described = []
    for cycle in cycles:
        edges = [
            f"{a} -> {b}" for a in cycle for b in cycle if graph.direct_import_exists(importer=a, imported=b)
        ]
        described.append(f"{cycle}: {'; '.join(edges)}")
    assert not cycles, "import cycles:\n" + "\n".join(described)


def test_cycle_finder_finds_a_cycle() -> None:
    graph = grimp.ImportGraph()
    for module in ("p", "p.a", "p.b", "p.c", "p.d"):
        graph.add_module(module)
    graph.add_import(importer="p.a", imported="p.b")
    graph.add_import(importer="p.b", imported="p.c")
    graph.add_import(importer="p.c", imported="p.a")
    graph.add_import(importer="p.d", imported="p.a")
    assert import_cycles(graph) == [["p.a", "p.b", "p.c"]]


def test_each_layer_exists(graph: grimp.ImportGraph) -> None:
    # The contracts would hold vacuously if a package went missing from the graph.
    for package in PACKAGES:
        assert package in graph.modules
    for service in ("encoder", "search", "influence", "gateway"):
        assert f"services.{service}.backend_factory" in graph.modules, "each service's factory, same place"


def test_import_linter_contracts_are_kept() -> None:
    # The lint-imports of this interpreter's environment (as `make lint` runs it), in the repository root,
    # which it puts on sys.path.
    run = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports"), "--no-cache"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "2 kept, 0 broken" in run.stdout

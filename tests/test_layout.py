"""The layout of src/dataflow: no import cycles between its modules.

The graph is built from the source (``ast``), not by importing, so it covers every module of any
tree (packages other branches add included) and needs none of the optional dependencies.

What counts as an edge ``A -> B`` (``A`` runs or needs ``B``):

- every ``import`` and ``from ... import`` in ``A``, wherever it stands: at the top, inside
  functions and methods, and under ``if TYPE_CHECKING:``. An import inside a function still makes
  ``A`` depend on ``B`` (a cycle through it only waits for someone to move it to the top, and
  reads as one to whoever has to understand the two modules), and a type-only import still ties
  the two modules' designs together;
- relative imports are resolved against ``A``'s package; only modules under ``dataflow`` count;
- ``from P import name``: an edge to ``P.name`` when that is a module, and to ``P`` itself when
  ``name`` is not a module (``A`` needs ``P``'s namespace) or when ``P`` is not a package ``A``
  lives in (then importing it runs ``P/__init__.py``); ``import P.Q.R`` likewise runs every
  package on the way that ``A`` does not already live in.

A package ``A`` lives in is already being imported when ``A`` runs, so ``from . import codec``
inside ``dataflow/serialize.py`` is an edge to ``dataflow.codec``, not to ``dataflow``.
"""

from __future__ import annotations

import ast
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
TOP = "dataflow"


@dataclass(frozen=True)
class Edge:
    target: str
    line: int


def module_files(src: Path, top: str) -> dict[str, tuple[Path, bool]]:
    """Module name -> (file, is_package) for every ``.py`` under ``src/top``."""
    modules: dict[str, tuple[Path, bool]] = {}
    for path in sorted((src / top).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if "__pycache__" in parts:
            continue
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        modules[".".join(parts)] = (path, is_package)
    return modules


def import_graph(src: Path, top: str) -> dict[str, dict[str, Edge]]:
    """Module -> {imported module: the first import line that makes the edge}."""
    modules = module_files(src, top)
    return {
        name: module_edges(name, path, is_package, modules, top)
        for name, (path, is_package) in modules.items()
    }


def module_edges(
    name: str, path: Path, is_package: bool, modules: dict[str, tuple[Path, bool]], top: str
) -> dict[str, Edge]:
    package = name if is_package else name.rpartition(".")[0]
    lives_in = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
    lives_in.add(name)
    edges: dict[str, Edge] = {}

    def add(target: str, line: int) -> None:
        if target in modules and target not in lives_in and target not in edges:
            edges[target] = Edge(target, line)

    def add_packages_on_the_way(dotted: str, line: int) -> None:
        parts = dotted.split(".")
        for i in range(1, len(parts) + 1):
            add(".".join(parts[:i]), line)

    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add_packages_on_the_way(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                if node.level > 1:
                    base = base[: -(node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source != top and not source.startswith(top + "."):
                continue
            add_packages_on_the_way(source, node.lineno)  # the packages A is not inside run
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                if sub in modules:
                    add(sub, node.lineno)
                elif source in modules and source != name and source not in edges:
                    # a name from source's namespace: A needs source, even one A lives in
                    edges[source] = Edge(source, node.lineno)
    return edges


def find_cycles(graph: dict[str, dict[str, Edge]]) -> list[list[str]]:
    """One cycle (``[a, b, ..., a]``) per strongly connected component that has one."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0

    # Tarjan's algorithm, iterative (no recursion limit on deep trees)
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(graph[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(graph[child])))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))

    cycles = []
    for component in components:
        members = set(component)
        start = component[0]
        # the shortest way from start back to itself, within the component (breadth first)
        came_from: dict[str, str] = {}
        frontier = [start]
        last = None
        while last is None:
            following = []
            for node in frontier:
                if start in graph[node]:
                    last = node
                    break
                for child in graph[node]:
                    if child in members and child not in came_from and child != start:
                        came_from[child] = node
                        following.append(child)
            frontier = following
        path = [last]
        while path[-1] != start:
            path.append(came_from[path[-1]])
        cycles.append(path[::-1] + [start])
    return cycles


def describe(graph: dict[str, dict[str, Edge]], cycle: list[str]) -> str:
    modules = module_files(SRC, TOP)
    hops = []
    for a, b in zip(cycle, cycle[1:]):
        path = modules[a][0].relative_to(SRC.parent) if a in modules else a
        hops.append(f"  {a} -> {b}   ({path}:{graph[a][b].line})")
    return " -> ".join(cycle) + "\n" + "\n".join(hops)


def test_no_import_cycles_between_the_modules():
    graph = import_graph(SRC, TOP)
    cycles = find_cycles(graph)
    assert not cycles, "import cycles in src/dataflow:\n" + "\n".join(
        describe(graph, c) for c in cycles
    )


def test_the_graph_sees_the_package_imports():
    graph = import_graph(SRC, TOP)
    assert len(graph) > 20, sorted(graph)
    # the package's __init__ imports its modules; every module reaches dataflow.errors
    assert "dataflow.base" in graph["dataflow"]
    assert sum(len(edges) for edges in graph.values()) > len(graph)


def write_tree(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / TOP / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        # a cycle hidden in a function
        (
            {
                "__init__.py": "",
                "pkg/__init__.py": "",
                "pkg/a.py": "from .b import B\n",
                "pkg/b.py": "def f():\n    from .a import A\n",
            },
            [["dataflow.pkg.a", "dataflow.pkg.b", "dataflow.pkg.a"]],
        ),
        # a type-only import closes a cycle of three, through a package's __init__
        (
            {
                "__init__.py": "",
                "x.py": "import dataflow.sub\n",
                "sub/__init__.py": "from ..y import Y\n",
                "y.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .x import X\n",
            },
            [["dataflow.sub", "dataflow.y", "dataflow.x", "dataflow.sub"]],
        ),
        # a name from the top package's namespace is a dependency on its __init__
        (
            {
                "__init__.py": "from .codec import dumps\n",
                "codec.py": "from . import __version__\n",
            },
            [["dataflow", "dataflow.codec", "dataflow"]],
        ),
        # no cycle: a module imports its sibling through the package it lives in
        (
            {
                "__init__.py": "from .codec import dumps\nfrom .ser import save\n",
                "codec.py": "import numpy\n",
                "ser.py": "from . import codec\nfrom dataflow.codec import dumps\n",
            },
            [],
        ),
    ],
    ids=["in-a-function", "type-checking-via-init", "init-namespace", "no-cycle"],
)
def test_cycles_are_found_and_named(tmp_path: Path, files: dict[str, str], expected):
    write_tree(tmp_path, files)
    cycles = find_cycles(import_graph(tmp_path, TOP))

    # a cycle may be reported from any of its members: compare them rotated to the smallest
    def canonical(cycle: list[str]) -> list[str]:
        ring = cycle[:-1]
        i = ring.index(min(ring))
        ring = ring[i:] + ring[:i]
        return ring + ring[:1]

    assert [canonical(c) for c in cycles] == [canonical(c) for c in expected]

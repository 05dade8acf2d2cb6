"""The import graph keeps its layers (docs/architecture.md, "Layers"): no module of weft imports
one that imports it back, even for type checking only; the proxy's modules import only those
listed below them there; the platform-neutral packages do not use the local runtime; the proxy
uses no control-plane package; bench/ uses harness/, not tests/.

Imports are read from the source with ``ast``: every ``import`` and ``from ... import``, at module
level, inside functions and under ``if TYPE_CHECKING:``.
"""

from __future__ import annotations

import ast
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Import:
    """One import of ``target`` (a dotted name) by ``module``, at ``where`` (path:line)."""

    module: str
    target: str
    where: str


def module_name(path: Path) -> str:
    """``weft/proxy/http1.py`` → ``weft.proxy.http1``; a package's ``__init__.py`` → its name."""
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> Iterator[Import]:
    """Every name ``path`` imports, as a dotted name (``from a import b`` gives ``a.b``)."""
    module = module_name(path)
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    where = str(path.relative_to(REPO))
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, alias.name, f"{where}:{node.lineno}")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package[: len(package) - (node.level - 1)]
                base = ".".join([*parent, base] if base else parent)
            for alias in node.names:
                yield Import(module, f"{base}.{alias.name}", f"{where}:{node.lineno}")


def sources(directory: str) -> list[Path]:
    """The Python files under ``directory`` of the repository (generated code excluded)."""
    return sorted(p for p in (REPO / directory).rglob("*.py") if not p.name.endswith("_pb2.py"))


def weft_graph() -> dict[str, dict[str, str]]:
    """module → {imported weft module: where}; ``from a import b`` counts as importing ``a.b``
    when that is a module, else ``a``."""
    paths = sources("weft")
    modules = {module_name(p) for p in paths}
    graph: dict[str, dict[str, str]] = {m: {} for m in modules}
    for path in paths:
        for imp in imports_of(path):
            target = imp.target
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != imp.module:
                graph[imp.module].setdefault(target, imp.where)
    return graph


def cycles(graph: dict[str, dict[str, str]]) -> list[tuple[list[str], list[str]]]:
    """Each strongly connected component of the graph (sorted) with one cycle through it
    (``[a, b, ..., a]``)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    found = []
    for component in components:
        start = min(component)
        paths = {start: [start]}
        queue = [start]
        while queue:  # breadth first, inside the component, back to the start
            v = queue.pop(0)
            for w in sorted(graph[v]):
                if w == start:
                    queue = []
                    found.append(([*paths[v], start], sorted(component)))
                    break
                if w in component and w not in paths:
                    paths[w] = [*paths[v], w]
                    queue.append(w)
    return found


def describe(cycle: list[str], component: list[str], graph: dict[str, dict[str, str]]) -> str:
    """``a → b → a (a.py:3 imports b; b.py:7 imports a)``, and the other modules in the knot."""
    steps = "; ".join(f"{graph[a][b]} imports {b}" for a, b in itertools.pairwise(cycle))
    others = sorted(set(component) - set(cycle))
    more = f"; in a knot with {', '.join(others)}" if others else ""
    return f"{' → '.join(cycle)} ({steps}{more})"


def test_weft_has_no_import_cycles() -> None:
    graph = weft_graph()
    found = [describe(cycle, component, graph) for cycle, component in cycles(graph)]
    assert not found, "import cycles:\n" + "\n".join(found)


def forbidden(directories: list[str], prefixes: tuple[str, ...]) -> list[str]:
    """The imports in ``directories`` of anything under one of ``prefixes``."""
    return [
        f"{imp.where}: {imp.module} imports {imp.target}"
        for directory in directories
        for path in sources(directory)
        for imp in imports_of(path)
        if any(imp.target == p or imp.target.startswith(p + ".") for p in prefixes)
    ]


def test_platform_neutral_packages_do_not_use_the_local_runtime() -> None:
    found = forbidden(["weft/inject", "weft/k8s", "weft/controller", "weft/proxy"], ("weft.local",))
    assert not found, "\n".join(found)


def test_the_proxy_uses_no_control_plane_package() -> None:
    banned = ("weft.controller", "weft.cli", "weft.local", "weft.k8s")
    found = forbidden(["weft/proxy"], banned)
    assert not found, "\n".join(found)


def test_weft_does_not_import_its_tests_or_harness() -> None:
    found = forbidden(["weft"], ("tests", "harness", "bench"))
    assert not found, "\n".join(found)


def test_bench_uses_the_harness_not_the_tests() -> None:
    found = forbidden(["bench"], ("tests",))
    assert not found, "\n".join(found)


def documented_layers() -> dict[str, tuple[int, int]]:
    """weft/proxy module → (line, position) in docs/architecture.md's numbered "Layers" list."""
    text = (REPO / "docs" / "architecture.md").read_text()
    intro_and_list = text.split("### Layers\n", 1)[1].split("\n\n", 1)[0]
    lines = re.split(r"\n(?=\d+\. )", intro_and_list)[1:]
    order = {}
    for number, line in enumerate(lines):
        line = re.sub(r"\([^)]*\)", "", line)  # what the parentheses say is not a module
        for position, name in enumerate(re.findall(r"`([a-z0-9_/]+)`", line)):
            order["weft.proxy." + name.replace("/", ".")] = (number, position)
    return order


def test_the_proxy_keeps_the_documented_layers() -> None:
    order = documented_layers()
    graph = weft_graph()
    packages = {"weft.proxy", "weft.proxy.h2", "weft.proxy.tap"}
    modules = [m for m in graph if m.startswith("weft.proxy.") and m not in packages]
    unlisted = sorted(set(modules) - set(order))
    assert not unlisted, f"not in docs/architecture.md's Layers list: {unlisted}"
    upward = [
        f"{where}: {module} imports {target}, listed after it"
        for module in modules
        for target, where in graph[module].items()
        if target in order and order[target] >= order[module]
    ]
    assert not upward, "\n".join(upward)


def test_cycles_are_found_and_named() -> None:
    graph = {
        "a": {"b": "a.py:1"},
        "b": {"c": "b.py:2"},
        "c": {"a": "c.py:3", "d": "c.py:4"},
        "d": {},
    }
    assert cycles(graph) == [(["a", "b", "c", "a"], ["a", "b", "c"])]
    graph["b"]["a"] = "b.py:5"
    [(cycle, component)] = cycles(graph)
    assert describe(cycle, component, graph) == (
        "a → b → a (a.py:1 imports b; b.py:5 imports a; in a knot with c)"
    )

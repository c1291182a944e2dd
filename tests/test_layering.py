"""The layering of the packages, read from the source with ``ast`` (lazy imports included).

Platform (``project``, except its composition root) -> domain apps -> edge (``gateway``). A domain
app never imports the edge, the platform imports no app, and no two top-level packages import each
other, directly or round a longer circle.
"""

import ast
from collections import defaultdict
from collections.abc import Collection, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOMAIN = ("comments", "delivery", "reactions", "realtime", "sagas")
EDGE = "gateway"
# The composition root (these modules and the package's __init__, which loads Celery) wires everything
# together: it may import anything and nothing imports it.
COMPOSITION_ROOT = ("project.urls", "project.asgi", "project.celery", "project.settings")


def _layer(module: str) -> str | None:
    """The node of the package graph ``module`` belongs to (``None``: outside the application)."""
    top = module.split(".")[0]
    if top == "project":
        if module == "project" or any(module == root or module.startswith(root + ".") for root in COMPOSITION_ROOT):
            return "root"
        return "platform"
    if top in (*DOMAIN, EDGE):
        return top
    return None


def _import_nodes(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import in ``tree``, lazy ones included, except those under ``if TYPE_CHECKING:``."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from (n for child in node.orelse for n in _import_nodes(ast.Module([child], [])))
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        yield from _import_nodes(node)


def _modules() -> dict[str, Path]:
    modules = {}
    for package in ("project", *DOMAIN, EDGE):
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" not in path.parts:
                name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
                modules[name.removesuffix(".__init__")] = path
    return modules


def _imported_names(node: ast.Import | ast.ImportFrom, modules: Collection[str]) -> list[str]:
    """The modules ``node`` imports: ``from a import b`` is ``a.b`` when that is a module, else ``a``."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level == 0 and node.module:
        return [
            f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules else node.module
            for alias in node.names
        ]
    return []


def _imports() -> dict[str, set[tuple[str, str]]]:
    """Layer -> {(imported layer, "file:line")} for every import that crosses layers."""
    edges: dict[str, set[tuple[str, str]]] = defaultdict(set)
    modules = _modules()
    for module, path in modules.items():
        source = _layer(module)
        assert source is not None
        for node in _import_nodes(ast.parse(path.read_text(), str(path))):
            targets = _imported_names(node, modules)
            for target in {_layer(name) for name in targets} - {None, source}:
                if target == "platform" and any(_layer(name) == "root" for name in targets):
                    continue  # ``from project.celery import app``: counted as root
                edges[source].add((str(target), f"{path.relative_to(ROOT)}:{node.lineno}"))
    return edges


def test_no_domain_app_imports_the_edge() -> None:
    """comments, delivery, reactions, realtime and sagas never import gateway (the edge uses them)."""
    edges = _imports()
    offenders = sorted(where for app in DOMAIN for target, where in edges[app] if target == EDGE)
    assert offenders == [], f"domain apps import {EDGE}: {offenders}"


def test_the_platform_imports_no_app() -> None:
    """project/ (shared infrastructure) depends on no domain app and not on the edge."""
    offenders = sorted(where for target, where in _imports()["platform"] if target in (*DOMAIN, EDGE))
    assert offenders == [], f"the platform imports apps: {offenders}"


@pytest.mark.parametrize("layer", ["platform", *DOMAIN])
def test_only_the_composition_root_imports_it(layer) -> None:
    """Nothing below the composition root (project's urls, asgi, celery, settings) imports it."""
    offenders = sorted(where for target, where in _imports()[layer] if target == "root")
    assert offenders == [], f"{layer} imports the composition root: {offenders}"


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while (member := stack.pop()) != node:
                component.append(member)
            if component:
                found.append(sorted([node, *component]))

    for node in list(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_between_packages() -> None:
    """The platform, each domain app and the edge import each other in one direction only."""
    graph = {source: {target for target, _ in edges} for source, edges in _imports().items()}
    assert _cycles(graph) == []


def test_no_import_cycle_between_modules() -> None:
    """No module imports one that (perhaps through others) imports it back, lazily or not."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        imported = (
            name for node in _import_nodes(ast.parse(path.read_text())) for name in _imported_names(node, modules)
        )
        graph[module] = {name for name in imported if name in modules and name != module}
    assert _cycles(graph) == []

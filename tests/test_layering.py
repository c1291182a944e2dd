"""The layering of the packages, read from the source with ``ast`` (lazy imports included).

Platform (``project``, except its composition root) -> domain apps -> edge (``gateway``). A domain
app never imports the edge, the platform imports no app, and no two top-level packages import each
other, directly or round a longer circle.
"""

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOMAIN = ("comments", "delivery", "reactions", "realtime", "sagas")
EDGE = "gateway"
# The composition root wires everything together, so it may import anything and nothing imports it.
COMPOSITION_ROOT = ("project.__init__", "project.urls", "project.asgi", "project.celery", "project.settings")


def _layer(module: str) -> str | None:
    """The node of the package graph ``module`` belongs to (``None``: outside the application)."""
    top = module.split(".")[0]
    if top == "project":
        if any(module == root or module.startswith(root + ".") for root in COMPOSITION_ROOT):
            return "root"
        return "platform"
    if top in (*DOMAIN, EDGE):
        return top
    return None


def _imports() -> dict[str, set[tuple[str, str]]]:
    """Layer -> {(imported layer, "file:line")} for every import that crosses layers."""
    edges: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for package in ("project", *DOMAIN, EDGE):
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            relative = path.relative_to(ROOT)
            source = _layer(".".join(relative.with_suffix("").parts))
            assert source is not None
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    targets = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    # ``from project import celery`` names the submodule as well as the package.
                    targets = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
                else:
                    continue
                for target in {_layer(name) for name in targets} - {None, source}:
                    if target == "platform" and any(_layer(name) == "root" for name in targets):
                        continue  # ``from project.celery import app``: counted as root below
                    edges[source].add((str(target), f"{relative}:{node.lineno}"))
    return edges


def test_no_domain_app_imports_the_edge():
    """comments, delivery, reactions, realtime and sagas never import gateway (the edge uses them)."""
    edges = _imports()
    offenders = sorted(where for app in DOMAIN for target, where in edges[app] if target == EDGE)
    assert offenders == [], f"domain apps import {EDGE}: {offenders}"


def test_the_platform_imports_no_app():
    """project/ (shared infrastructure) depends on no domain app and not on the edge."""
    offenders = sorted(where for target, where in _imports()["platform"] if target in (*DOMAIN, EDGE))
    assert offenders == [], f"the platform imports apps: {offenders}"

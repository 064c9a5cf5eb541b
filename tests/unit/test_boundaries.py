"""The package's boundaries, read from its import graph: who may import whom."""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import orderengine

PACKAGE = Path(orderengine.__file__).parent
CONSTRUCTION = {
    "orderengine.venues.factory",
    "orderengine.venues.chain",
    "orderengine.venues.simulated",
    "orderengine.venues.raydium",
    "orderengine.venues.meteora",
}
"""Modules that build venues or their chain, as opposed to the protocol and its values."""
ENGINE_STORES = {
    "orderengine.repository",
    "orderengine.key_store",
    "orderengine.shared_values",
    "orderengine.bucket_store",
    "orderengine.feed_store",
    "orderengine.watch_store",
}
"""The engine's stores on its database, which the simulated chain has its own of."""


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def imports() -> dict[str, set[str]]:
    """Each module of the package and the package modules it imports."""
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        imported: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
                imported.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
        graph[module_name(path)] = {name for name in imported if name.startswith("orderengine")}
    modules = set(graph)
    return {name: {i for i in imported if i in modules} for name, imported in graph.items()}


def reachable(start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for imported in imports()[todo.pop()] - seen:
            seen.add(imported)
            todo.append(imported)
    return seen


def importers(*targets: str) -> set[str]:
    return {name for name, imported in imports().items() if imported & set(targets)}


def test_the_graph_is_read_from_the_package() -> None:
    assert "orderengine.engine" in imports()
    assert "orderengine.repository" in imports()["orderengine.engine"]


def test_no_venue_reaches_the_engines_repository() -> None:
    venues = [name for name in imports() if name.startswith("orderengine.venues")]

    assert venues
    for venue in venues:
        assert not ENGINE_STORES & reachable(venue), venue


def test_only_the_composition_root_constructs_venues() -> None:
    outside = importers(*CONSTRUCTION) - {name for name in imports() if ".venues." in name}

    assert outside == {"orderengine.app"}


def test_only_the_app_imports_the_http_layer() -> None:
    """The handlers are reached through the route table.

    Only the app and the OpenAPI document (for the routes' types) import the table.
    """
    assert importers("orderengine.api") == {"orderengine.app", "orderengine.routes"}
    assert importers("orderengine.listings") == {"orderengine.app", "orderengine.routes"}
    assert importers("orderengine.stream") == {"orderengine.api", "orderengine.routes"}
    assert importers("orderengine.feed") == {"orderengine.routes"}
    assert importers("orderengine.sockets") == {"orderengine.stream", "orderengine.feed"}
    assert importers("orderengine.client_frames") == {"orderengine.sockets"}
    assert importers("orderengine.security") <= {"orderengine.app", "orderengine.routes"}
    assert importers("orderengine.routes") <= {"orderengine.app", "orderengine.openapi"}


def test_only_the_engine_runs_the_watchers() -> None:
    assert importers("orderengine.watchers") == {"orderengine.engine"}

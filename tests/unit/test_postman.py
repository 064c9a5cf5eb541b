"""The Postman collection: the OpenAPI document's operations exactly, with bodies that validate.

`postman_collection.json` is written by hand from the route table; these tests keep the two
from drifting apart.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from orderengine.domain import OrderRequest
from orderengine.listings import LISTABLE, ListingRequest
from orderengine.routes import ROUTES
from tests.recorded_traffic import OPENAPI, documents, problems

COLLECTION = Path(__file__).parent.parent.parent / "postman_collection.json"
SCHEMA = "https://schema.getpostman.com/json/collection/v2.1.0/collection.json"


def collection() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(COLLECTION.read_text())
    return loaded


def requests(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every request item, folders walked."""
    for item in items:
        if "request" in item:
            yield item
        yield from requests(item.get("item", []))


def operation(item: dict[str, Any]) -> tuple[str, str]:
    """The request's method and path, its `:name` variables written as OpenAPI's `{name}`."""
    parts = item["request"]["url"]["path"]
    path = "/" + "/".join(f"{{{part[1:]}}}" if part.startswith(":") else part for part in parts)
    return item["request"]["method"], path


def operations() -> set[tuple[str, str]]:
    """The document's operations a client sends; a preflight is a browser's alone."""
    return {
        (method.upper(), path)
        for path, methods in documents()[0]["paths"].items()
        for method in methods
        if method != "options"
    }


def body_of(item: dict[str, Any]) -> Any:
    return json.loads(item["request"]["body"]["raw"])


def test_it_is_a_postman_2_1_collection_with_the_base_url_and_key_variables() -> None:
    loaded = collection()
    variables = {variable["key"] for variable in loaded["variable"]}

    assert loaded["info"]["schema"] == SCHEMA
    assert {"baseUrl", "apiKey"} <= variables
    assert loaded["auth"] == {
        "type": "bearer",
        "bearer": [{"key": "token", "value": "{{apiKey}}", "type": "string"}],
    }
    for item in requests(loaded["item"]):
        assert item["request"]["url"]["raw"].startswith("{{baseUrl}}/"), item["name"]


def test_it_names_exactly_the_openapi_documents_operations() -> None:
    named = {operation(item) for item in requests(collection()["item"])}

    assert named == operations()


def test_the_open_operations_ask_for_no_key() -> None:
    open_requests = {
        operation(item)
        for item in requests(collection()["item"])
        if item["request"].get("auth") == {"type": "noauth"}
    }
    public = {
        (route.method, route.path) for route in ROUTES if route.public and route.method != "OPTIONS"
    }

    assert open_requests == public


def test_its_bodies_are_the_route_tables_examples_and_valid() -> None:
    items = [item for item in requests(collection()["item"]) if "body" in item["request"]]
    examples = [dict(body) for route in ROUTES for body in route.examples.values()]

    assert sorted(map(body_of, items), key=json.dumps) == sorted(examples, key=json.dumps)
    for item in items:
        method, path = operation(item)
        pointer = f"{OPENAPI}#/paths/{path.replace('/', '~1')}/{method.lower()}"
        pointer += "/requestBody/content/application~1json/schema"
        assert problems(pointer, body_of(item)) == [], item["name"]


def test_the_example_bodies_are_accepted_as_the_engine_reads_them() -> None:
    for route in ROUTES:
        for body in route.examples.values():
            if route.body is OrderRequest:
                OrderRequest.model_validate(body)
            else:
                assert route.body is ListingRequest
                ListingRequest.model_validate(body, context={LISTABLE: ["meteora", "raydium"]})


def test_it_describes_the_three_ways_into_a_socket_and_the_feed() -> None:
    folders = [item for item in collection()["item"] if "request" not in item]
    streams = next(folder for folder in folders if folder["name"] == "WebSocket streams")

    for way in (
        "/api/orders/execute?orderId={{orderId}}",
        "first message",
        "Upgrade: websocket",
        "/api/events",
        "/api/asyncapi.json",
    ):
        assert way in streams["description"]

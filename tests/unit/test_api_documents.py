"""The API's documents: valid by their specifications, and true to the routes the app serves.

The OpenAPI document is checked by `openapi-spec-validator`; the AsyncAPI document by the
AsyncAPI Initiative's JSON Schema of version 3.0.0 (kept in `tests/data/asyncapi/`), and each
of its message schemas by JSON Schema's own meta-schema. What the engine actually sends is
checked against both documents by every test client (`tests/recorded_traffic.py`).
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
from aiohttp import WSCloseCode, hdrs, web
from jsonschema import Draft7Validator, Draft202012Validator
from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

from orderengine import stream
from orderengine.answers import EVENT_MESSAGES
from orderengine.app import create_app
from orderengine.domain import EventDetails
from orderengine.routes import ROUTES
from orderengine.wire import EXECUTE, FEED
from tests.harness import fast_settings
from tests.recorded_traffic import documents

ASYNCAPI_SCHEMA = Path(__file__).parent.parent / "data" / "asyncapi" / "asyncapi-3.0.0.schema.json"
SOCKETS = {("GET", EXECUTE), ("GET", FEED)}
"""The routes the AsyncAPI document describes instead."""


def openapi_document() -> dict[str, Any]:
    return copy.deepcopy(documents()[0])


def asyncapi_document() -> dict[str, Any]:
    return copy.deepcopy(documents()[1])


def asyncapi_problems(document: dict[str, Any]) -> list[str]:
    schema = json.loads(ASYNCAPI_SCHEMA.read_text())
    return [error.message for error in Draft7Validator(schema).iter_errors(document)]


def served_routes() -> set[tuple[str, str]]:
    """Each (method, path) the app answers, HEAD (which every GET answers too) aside.

    The routes of any method (`*`) only refuse: a method a path does not take, a path the
    engine does not serve.
    """
    app = create_app(fast_settings("postgresql://localhost/unused"))
    return {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.method not in ("HEAD", hdrs.METH_ANY) and isinstance(route.resource, web.Resource)
    }


def documented_operations() -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, methods in openapi_document()["paths"].items()
        for method in methods
    }


def test_the_openapi_document_is_valid_openapi_3_1() -> None:
    document = openapi_document()

    validate(document)
    assert document["openapi"] == "3.1.0"


def test_the_openapi_validator_refuses_a_broken_document() -> None:
    document = openapi_document()
    document["paths"]["/api/orders"]["get"]["responses"]["200"] = {"content": {}}

    with pytest.raises(OpenAPIValidationError):
        validate(document)


def test_every_route_served_is_documented_and_every_operation_served() -> None:
    served = served_routes()
    documented = documented_operations()

    assert served - documented == SOCKETS
    assert documented <= served


def test_the_sockets_not_in_the_openapi_document_are_asyncapi_channels() -> None:
    addresses = {channel["address"] for channel in asyncapi_document()["channels"].values()}

    assert {path for _, path in SOCKETS} == addresses
    assert {(route.method, route.path) for route in ROUTES if route.socket} == SOCKETS


def test_every_path_parameter_is_declared() -> None:
    for path, methods in openapi_document()["paths"].items():
        for operation in methods.values():
            declared = {p["name"] for p in operation.get("parameters", ()) if p["in"] == "path"}
            assert declared == set(re.findall(r"\{([^}]+)\}", path)), path


def test_every_parameter_example_is_valid_by_its_own_schema() -> None:
    document = openapi_document()
    examples = [
        (parameter["name"], parameter["example"], parameter["schema"])
        for path in document["paths"].values()
        for operation in path.values()
        for parameter in operation.get("parameters", ())
        if "example" in parameter
    ]

    assert {name for name, _, _ in examples} >= {"status", "limit", "tokenIn", "amountIn"}
    for name, example, schema in examples:
        resolved = {**schema, "components": document["components"]}
        assert Draft202012Validator(resolved).is_valid(example), (name, example)


def test_every_api_route_but_the_description_needs_a_key_and_may_answer_401() -> None:
    """A preflight, which carries no key, is served without one: its OPTIONS takes either."""
    for path, methods in openapi_document()["paths"].items():
        for method, operation in methods.items():
            described = operation["tags"] == ["documentation"]
            keyed = path.startswith("/api/") and not described
            key: dict[str, list[str]] = {"bearerAuth": []}
            asked = [{}, key] if method == "options" else [key]
            assert operation["security"] == (asked if keyed else []), (method, path)
            assert ("401" in operation["responses"]) == keyed, (method, path)


def test_only_submitting_an_order_may_answer_429() -> None:
    limited = {
        (method, path)
        for path, methods in openapi_document()["paths"].items()
        for method, operation in methods.items()
        if "429" in operation["responses"]
    }

    assert limited == {("post", EXECUTE)}


def test_an_error_answer_names_the_codes_it_may_carry() -> None:
    answers = openapi_document()["paths"]["/api/orders/{order_id}"]["delete"]["responses"]
    conflict = answers["409"]["content"]["application/json"]["schema"]["allOf"][1]

    assert conflict["properties"]["error"]["properties"]["code"] == {
        "enum": ["order_not_cancellable"]
    }


def test_the_sockets_queries_allow_the_parameters_the_engine_ignores() -> None:
    """A page or a proxy may add a parameter (a cache buster, say): the sockets still open."""
    channels = asyncapi_document()["channels"]
    queries = [
        channel["bindings"]["ws"]["query"]
        for channel in channels.values()
        if "query" in channel.get("bindings", {}).get("ws", {})
    ]

    assert len(queries) == 3
    assert all(query.get("additionalProperties", True) is not False for query in queries)


def test_the_asyncapi_document_is_valid_asyncapi_3() -> None:
    document = asyncapi_document()

    assert document["asyncapi"] == "3.0.0"
    assert asyncapi_problems(document) == []


def test_the_asyncapi_schema_refuses_a_broken_document() -> None:
    document = asyncapi_document()
    document["channels"]["followOrder"]["messages"] = ["not a message"]

    assert asyncapi_problems(document) != []


def test_every_message_schema_is_a_valid_json_schema() -> None:
    document = asyncapi_document()
    schemas = [message["payload"] for message in document["components"]["messages"].values()]
    schemas += document["components"]["schemas"].values()

    assert schemas
    for schema in schemas:
        Draft202012Validator.check_schema(schema)
        Draft7Validator.check_schema(schema)


def test_every_message_reference_resolves() -> None:
    document = asyncapi_document()
    text = json.dumps(document)

    for reference in set(re.findall(r'"\$ref": "#/([^"]+)"', text)):
        node: Any = document
        for part in reference.split("/"):
            node = node[part]
        assert isinstance(node, dict), reference


def test_every_event_kind_has_its_message_on_both_streams() -> None:
    kinds = {kind.__name__ for kind in EventDetails.__subclasses__()}
    described = {base.__name__ for model in EVENT_MESSAGES for base in model.__mro__}
    messages = asyncapi_document()["components"]["messages"]

    assert kinds <= described
    for model in EVENT_MESSAGES:
        kind = model.__name__.removesuffix("Event")
        key = kind[:1].lower() + kind[1:]
        assert messages[key]["payload"] == {"$ref": f"#/components/schemas/{model.__name__}"}
        assert f"feed{kind}" in messages


def test_the_close_codes_are_the_ones_the_streams_use() -> None:
    channels = asyncapi_document()["channels"]
    codes = {int(code) for code in channels["followOrder"]["x-close-codes"]}

    feed_codes = {int(code) for code in channels["eventFeed"]["x-close-codes"]}

    assert codes == {
        WSCloseCode.OK,
        WSCloseCode.GOING_AWAY,
        WSCloseCode.PROTOCOL_ERROR,
        WSCloseCode.INVALID_TEXT,
        WSCloseCode.POLICY_VIOLATION,
        WSCloseCode.MESSAGE_TOO_BIG,
        WSCloseCode.TRY_AGAIN_LATER,
        stream.FELL_BEHIND,
    }
    assert feed_codes == codes - {WSCloseCode.OK, stream.FELL_BEHIND}
    assert channels["eventFeed"]["address"] == FEED

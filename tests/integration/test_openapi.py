"""The documents served live: as generated, open to all, shown by Swagger UI, and kept.

Schemathesis generates requests from the OpenAPI document and sends them to the real app:
no answer may be a 5xx, and every answer must be documented (status, media type, headers,
body schema). Its budget is fixed (`EXAMPLES`, derandomized, no example database), a few
seconds in all; Hypothesis runs in a thread of its own, as schemathesis calls the app with a
blocking client while the app serves on the test's event loop.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from orderengine import docs
from orderengine.routes import ROUTES
from tests.harness import UNKNOWN_ID, Client, StartApp
from tests.recorded_traffic import documents

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
"""No 5xx, and every answer as documented. Not "positive data acceptance": the schemas
cannot say which tokens exist, so a schema-valid order may still be a 422."""
EXAMPLES = {GenerationMode.POSITIVE: 12, GenerationMode.NEGATIVE: 6}
"""Examples per operation and mode: about 200 requests in all."""
KEY = "alice-key-0123456789"


async def test_the_documents_served_are_the_ones_generated(client: Client) -> None:
    described, streams = documents()

    openapi = await client.get("/api/openapi.json")
    asyncapi = await client.get("/api/asyncapi.json")

    assert openapi.status == asyncapi.status == 200
    assert await openapi.json() == json.loads(json.dumps(described))
    assert await asyncapi.json() == json.loads(json.dumps(streams))


async def test_the_docs_page_runs_swagger_ui_on_the_engines_own_files(client: Client) -> None:
    page = await client.get("/api/docs")
    html = await page.text()
    policy = page.headers["Content-Security-Policy"]
    loaded = re.findall(r'(?:src|href)="([^"]+)"', html)

    assert page.status == 200
    assert page.content_type == "text/html"
    assert "script-src 'self';" in policy
    assert "style-src 'self';" in policy
    assert "unsafe" not in policy
    assert "<script>" not in html
    assert loaded
    assert all(url.startswith("docs?file=") for url in loaded)
    for url in loaded:
        name = url.removeprefix("docs?file=")
        answer = await client.get(f"/api/{url}")
        assert answer.status == 200, name
        assert answer.content_type == docs.FILE_TYPES[name]
        assert len(await answer.read()) > 0


async def test_the_docs_script_reads_the_engines_document_and_calls_no_validator(
    client: Client,
) -> None:
    script = await (await client.get("/api/docs?file=docs.js")).text()
    bundle = await client.get("/api/docs?file=swagger-ui-bundle.js")

    assert 'url: "openapi.json"' in script
    assert "validatorUrl: null" in script
    assert bundle.headers["Cache-Control"] == docs.FILE_CACHE


async def test_a_file_the_page_does_not_load_is_not_served(client: Client) -> None:
    missing = await client.get("/api/docs?file=../../../etc/passwd")
    source_map = await client.get("/api/docs?file=swagger-ui-bundle.js.map")

    assert missing.status == source_map.status == 404
    assert (await missing.json())["error"]["code"] == "not_found"


async def test_the_description_is_open_while_keys_are_in_force(start_app: StartApp) -> None:
    keyed = await start_app(api_keys={"alice": KEY})
    paths = [
        "/api/openapi.json",
        "/api/asyncapi.json",
        "/api/docs",
        "/api/docs?file=swagger-ui-bundle.js",
    ]

    answers = [await keyed.get(path) for path in paths]
    refused = await keyed.get("/api/tokens")

    assert [answer.status for answer in answers] == [200] * len(paths)
    assert refused.status == 401


FRONT = "https://front.example"
TRIED = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


async def test_every_method_answered_is_documented_and_every_405_with_its_allow(
    start_app: StartApp,
) -> None:
    """Each path's `options` operation: the preflight, and the `Allow` of every 405 there.

    A socket's GET is the AsyncAPI document's.
    """
    client = await start_app(cors_origins=(FRONT,))
    for path, described in documents()[0]["paths"].items():
        target = path.replace("{order_id}", UNKNOWN_ID).replace("{file}", "console.js")
        refused = described["options"]["responses"]["405"]["headers"]["Allow"]["schema"]
        asking = {"Origin": FRONT, "Access-Control-Request-Method": "GET"}

        preflight = await client.options(target, headers=asking)
        answers = {method: await client.request(method, target) for method in TRIED}

        assert preflight.status == 204, path
        sockets = {route.method for route in ROUTES if route.path == path and route.socket}
        for method, answer in answers.items():
            if method in sockets:
                continue
            if answer.status == 405:
                assert answer.headers["Allow"] == refused["const"], (method, path)
            else:
                assert method.lower() in described, (method, path)
        assert answers["OPTIONS"].status == 405, path


def operations(described: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """Each operation of the document: its path, method and definition."""
    return [
        (path, method.upper(), definition)
        for path, methods in described["paths"].items()
        for method, definition in methods.items()
    ]


def modes(operation: dict[str, Any]) -> list[GenerationMode]:
    """Valid requests for every operation; invalid ones where there is something to get wrong."""
    takes = "parameters" in operation or "requestBody" in operation
    return (
        [GenerationMode.POSITIVE, GenerationMode.NEGATIVE] if takes else [GenerationMode.POSITIVE]
    )


def fuzz(base_url: str) -> int:
    """Run schemathesis on every operation of the document; how many cases it sent."""
    described = documents()[0]
    schema = schemathesis.openapi.from_dict(described)
    sent = 0
    for path, method, definition in operations(described):
        operation = schema[path][method]
        for mode in modes(definition):
            examples = EXAMPLES[mode]

            @settings(
                max_examples=examples,
                derandomize=True,
                database=None,
                deadline=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case: Case[Any]) -> None:
                nonlocal sent
                case.call_and_validate(base_url=base_url, checks=CHECKS)
                sent += 1

            run()
    return sent


async def test_schemathesis_finds_every_answer_documented_and_no_server_error(
    client: Client,
) -> None:
    base_url = str(client.make_url("")).rstrip("/")

    sent = await asyncio.to_thread(fuzz, base_url)

    assert sent >= len(documents()[0]["paths"]) * sum(EXAMPLES.values()) // 2

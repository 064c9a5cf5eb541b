"""What the suite's test clients receive, checked against the API's documents as it arrives.

Every test client the `start_app` fixture makes (`client_kwargs()`, in `tests/conftest.py`)
checks each HTTP answer against the OpenAPI document: the status must be one its operation
lists, in a media type it lists, and a JSON body must match that answer's schema. An answer
of no documented operation (a path the engine does not serve, a method a path does not
take, a CORS preflight) must be in the error shape when it is an error. Each text message a
socket receives must match one of the messages its AsyncAPI channel sends. A mismatch fails
the test that received it, naming what did not match, so the documents stay true to what
the whole suite sees.

Each check is also noted (`Checked`) in the lists of the `watching()` blocks open, so that
a test can show which answers and messages it covered.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from types import SimpleNamespace
from typing import Any

import aiohttp
from aiohttp import ClientWebSocketResponse, TraceConfig, TraceRequestEndParams, WSMsgType
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from yarl import URL

from orderengine import asyncapi, openapi
from orderengine.routes import ROUTES
from orderengine.wire import EXECUTE, FEED

OPENAPI = "urn:orderengine:openapi"
ASYNCAPI = "urn:orderengine:asyncapi"
ERROR_SHAPE = f"{OPENAPI}#/components/schemas/ErrorAnswer"
NO_BODY = frozenset({101, 204, 304})


@dataclass(frozen=True)
class Checked:
    """One answer or message that matched its document.

    `where` is `METHOD /path/template` for an HTTP answer (the path itself when no operation
    matched), or the AsyncAPI channel of a socket's message; `what` is the status, or the key
    of the message matched.
    """

    where: str
    what: str


_watchers: list[list[Checked]] = []


@contextmanager
def watching() -> Iterator[list[Checked]]:
    """The answers and messages checked while the block runs."""
    seen: list[Checked] = []
    _watchers.append(seen)
    try:
        yield seen
    finally:
        _watchers.remove(seen)


def _note(checked: Checked) -> None:
    for seen in _watchers:
        seen.append(checked)


@cache
def documents() -> tuple[dict[str, Any], dict[str, Any]]:
    """The OpenAPI and AsyncAPI documents, as the engine serves them."""
    return openapi.document(ROUTES), asyncapi.document()


@cache
def _registry() -> Registry[Any]:
    described, streams = documents()
    return Registry().with_resources(
        [
            (OPENAPI, Resource.from_contents(described, default_specification=DRAFT202012)),
            (ASYNCAPI, Resource.from_contents(streams, default_specification=DRAFT202012)),
        ]
    )


@cache
def _validator(pointer: str) -> Draft202012Validator:
    """A validator of the schema at `pointer` (a URI of a place in one of the documents)."""
    return Draft202012Validator(
        {"$ref": pointer},
        registry=_registry(),
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )


def _escaped(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def problems(pointer: str, instance: Any) -> list[str]:
    """Why `instance` does not match the schema at `pointer`; none when it does."""
    return [
        f"{'/'.join(map(str, error.absolute_path)) or '(top)'}: {error.message}"
        for error in _validator(pointer).iter_errors(instance)
    ]


@cache
def _resources() -> list[tuple[re.Pattern[str], str]]:
    """Each path the engine serves, as a pattern, in the order aiohttp tries them."""
    paths = dict.fromkeys(route.path for route in ROUTES)
    return [(re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", path) + "$"), path) for path in paths]


def operation_of(method: str, path: str) -> str | None:
    """The path template of the OpenAPI operation that answers `method path`, if any.

    As aiohttp routes: the first path that matches, then its route for the method. The
    socket's GETs have no operation: the AsyncAPI document describes them.
    """
    template = next((template for pattern, template in _resources() if pattern.match(path)), None)
    for route in ROUTES:
        if route.path == template and route.method == method and not route.socket:
            return template
    return None


def check_answer(method: str, path: str, status: int, media_type: str, body: bytes) -> Checked:
    """Check an HTTP answer against the OpenAPI document; what it matched."""
    template = operation_of(method, path)
    if template is None:
        return _check_undocumented(method, path, status, media_type, body)
    where = f"{method} {template}"
    described, _ = documents()
    responses = described["paths"][template][method.lower()]["responses"]
    assert str(status) in responses, f"{where} answered {status}, which it does not document"
    content = responses[str(status)].get("content")
    if content is not None and status not in NO_BODY and method != "HEAD":
        assert media_type in content, f"{where} answered {status} in {media_type}, not listed"
        if media_type == "application/json":
            pointer = f"{OPENAPI}#/paths/{_escaped(template)}/{method.lower()}/responses"
            pointer += f"/{status}/content/{_escaped(media_type)}/schema"
            found = problems(pointer, json.loads(body))
            assert not found, f"{where} {status} does not match its schema: {found}"
    checked = Checked(where, str(status))
    _note(checked)
    return checked


def _check_undocumented(
    method: str, path: str, status: int, media_type: str, body: bytes
) -> Checked:
    if status >= 400 and method != "HEAD":
        assert media_type == "application/json", f"{method} {path}: {status} in {media_type}"
        found = problems(ERROR_SHAPE, json.loads(body))
        assert not found, f"{method} {path} {status} is not in the error shape: {found}"
    checked = Checked(f"{method} {path}", str(status))
    _note(checked)
    return checked


def channel_of(url: URL) -> str:
    """The AsyncAPI channel a socket opened on `url` is on."""
    if url.path == FEED:
        return "eventFeed"
    assert url.path == EXECUTE, f"a socket on {url.path}, which no channel describes"
    return "followOrder" if "orderId" in url.query else "submitOnSocket"


@cache
def sent_on(channel: str) -> tuple[str, ...]:
    """The keys of the messages the engine sends on `channel`."""
    _, streams = documents()
    keys: dict[str, None] = {}
    for operation in streams["operations"].values():
        if operation["action"] == "send" and operation["channel"]["$ref"].endswith(channel):
            keys.update((ref["$ref"].rsplit("/", 1)[-1], None) for ref in operation["messages"])
    return tuple(keys)


def check_message(channel: str, message: Any) -> Checked:
    """Check a message the engine sent on `channel`; the key of the one it matched."""
    for key in sent_on(channel):
        if not problems(f"{ASYNCAPI}#/components/messages/{key}/payload", message):
            checked = Checked(channel, key)
            _note(checked)
            return checked
    raise AssertionError(f"a message on {channel} matches none it may send: {message}")


async def _on_request_end(
    session: aiohttp.ClientSession, context: SimpleNamespace, params: TraceRequestEndParams
) -> None:
    response = params.response
    if response.status in NO_BODY:
        return
    body = await response.read()
    check_answer(params.method, params.url.path, response.status, response.content_type, body)


class CheckedWebSocket(ClientWebSocketResponse[bool]):
    """A client's socket whose text messages are checked as they are received."""

    async def receive(self, *args: Any, **kwargs: Any) -> Any:
        message = await super().receive(*args, **kwargs)
        if message.type == WSMsgType.TEXT:
            check_message(channel_of(self._response.url), json.loads(message.data))
        return message


def client_kwargs() -> dict[str, Any]:
    """What a test client is made with so that all it receives is checked."""
    trace = TraceConfig()
    trace.on_request_end.append(_on_request_end)
    return {"trace_configs": [trace], "ws_response_class": CheckedWebSocket}

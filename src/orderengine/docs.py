"""The API's description, served: its OpenAPI and AsyncAPI documents, and Swagger UI.

Swagger UI's files come from the `swagger-ui-bundle-v2` package (Swagger UI 5, Apache-2.0; 5
is the first to read OpenAPI 3.1), installed with the engine: nothing is fetched from
elsewhere when the page loads, and it calls no validator on the internet. The page and the
script that starts Swagger UI are this package's own (`static/`): the page's
Content-Security-Policy runs scripts and styles from the engine only, so there is no inline
script to start it. The page loads its files from its own path (`/api/docs?file=NAME`), which
is open to all as the documents are, while keys are in force.

Part of the HTTP layer: only `routes.py` imports it.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from functools import cache
from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import Any

from aiohttp import web

DOCS_PATH = "/api/docs"
FILE_TYPES = {
    "swagger-ui-bundle.js": "application/javascript",
    "swagger-ui.css": "text/css",
    "index.css": "text/css",
    "favicon-32x32.png": "image/png",
    "favicon-16x16.png": "image/png",
    "docs.js": "application/javascript",
}
"""Every file the page loads, by name (`?file=NAME`), and its media type."""
OWN_FILES = frozenset({"docs.html", "docs.js"})
"""The files that are this package's own; the others are Swagger UI's."""
PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
"""The page's Content-Security-Policy: its own scripts and styles only; Swagger UI's
stylesheet draws its icons from `data:` images, and the page fetches the document."""
FILE_CACHE = "public, max-age=3600"
"""A file of the installed Swagger UI changes only with the engine's installation."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def swagger_ui_dir() -> Traversable:
    """Where the installed Swagger UI's files are: `vendor/swagger-ui-VERSION`."""
    vendor = files("swagger_ui_bundle") / "vendor"
    (found,) = (entry for entry in vendor.iterdir() if entry.name.startswith("swagger-ui-"))
    return found


@cache
def _file(name: str) -> bytes:
    folder = files("orderengine") / "static" if name in OWN_FILES else swagger_ui_dir()
    return (folder / name).read_bytes()


async def page(request: web.Request) -> web.Response:
    """Swagger UI on `/api/openapi.json`; with `?file=NAME`, a file it loads (else a 404)."""
    name = request.query.get("file")
    if name is None:
        return web.Response(
            body=_file("docs.html"),
            content_type="text/html",
            charset="utf-8",
            headers={"Content-Security-Policy": PAGE_POLICY},
        )
    media_type = FILE_TYPES.get(name)
    if media_type is None:
        raise web.HTTPNotFound(text="the docs page loads no file of that name")
    return web.Response(
        body=_file(name), content_type=media_type, headers={"Cache-Control": FILE_CACHE}
    )


def json_document(build: Callable[[], dict[str, Any]]) -> Handler:
    """A handler answering the document `build` makes, made once, on the first request."""

    @cache
    def body() -> bytes:
        return json.dumps(build()).encode()

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body(), content_type="application/json")

    return handler

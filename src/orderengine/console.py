"""The browser console, served: the page at `/` and the files it loads, `/console/NAME`.

The page places orders of every type (with a quote previewed first), cancels them, lists
tokens on the simulated venues, follows every order on the feed (`/api/events`) in a live
table with each order's timeline, and charts each pair's price on each venue. It is plain
HTML, CSS and ES modules from this package (`static/console/`), with no build step and
nothing fetched from elsewhere: the charts are drawn by uPlot 1.6.32 (MIT), vendored as
published in its npm package (`static/vendor/uplot-1.6.32/`, its licence beside it).

The page's Content-Security-Policy runs scripts and styles from the engine only, and lets
them connect to it alone (`fetch`, and the feed's socket on the same origin). The page and
its files are open to all while keys are in force, as the API's description is: the page
holds no data, and asks for a key before it calls the API. Whether to ask at once is written
into the page (`data-keys` on its root), so that a console with keys in force does not
start with a refused request.

Part of the HTTP layer: only `routes.py` imports it.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from aiohttp import web

from orderengine.keys import KEY_RING

CONSOLE_PATH = "/"
FILES_PATH = "/console/{file}"
UPLOT = "vendor/uplot-1.6.32"

FILES = {
    "console.css": ("console", "text/css"),
    "favicon.svg": ("console", "image/svg+xml"),
    "api.js": ("console", "text/javascript"),
    "app.js": ("console", "text/javascript"),
    "catalog.js": ("console", "text/javascript"),
    "chart.js": ("console", "text/javascript"),
    "dom.js": ("console", "text/javascript"),
    "feed.js": ("console", "text/javascript"),
    "form.js": ("console", "text/javascript"),
    "format.js": ("console", "text/javascript"),
    "listing.js": ("console", "text/javascript"),
    "orders.js": ("console", "text/javascript"),
    "table.js": ("console", "text/javascript"),
    "timeline.js": ("console", "text/javascript"),
    "uPlot.iife.min.js": (UPLOT, "text/javascript"),
    "uPlot.min.css": (UPLOT, "text/css"),
}
"""Every file the page loads, by name (`/console/NAME`): its folder in `static/`, its type."""
PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
"""Scripts, styles and the icon from the engine only; `fetch` and the socket to it alone."""
PAGE_CACHE = "no-store"
"""The page says whether keys are in force, which may change while the engine runs."""
FILE_CACHE = "public, max-age=3600"
"""A file changes only with the engine's installation."""
KEYS_MARK = "{{keys}}"
"""Where the page says whether the API needs a key: `required` or `open`."""


@cache
def _file(folder: str, name: str) -> bytes:
    return (files("orderengine") / "static" / folder / name).read_bytes()


@cache
def _page(keys_in_force: bool) -> bytes:
    html = _file("console", "index.html").decode()
    return html.replace(KEYS_MARK, "required" if keys_in_force else "open").encode()


async def page(request: web.Request) -> web.Response:
    """The console's page, saying whether the API needs a key."""
    return web.Response(
        body=_page(request.app[KEY_RING].in_force),
        content_type="text/html",
        charset="utf-8",
        headers={"Content-Security-Policy": PAGE_POLICY, "Cache-Control": PAGE_CACHE},
    )


async def file(request: web.Request) -> web.Response:
    """A file the page loads, by name; any other name is a 404."""
    found = FILES.get(request.match_info["file"])
    if found is None:
        raise web.HTTPNotFound(text="the console loads no file of that name")
    folder, media_type = found
    return web.Response(
        body=_file(folder, request.match_info["file"]),
        content_type=media_type,
        charset="utf-8",
        headers={"Cache-Control": FILE_CACHE},
    )

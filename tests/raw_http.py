"""HTTP spoken byte by byte: the real server on a real port, and a client that sends anything.

aiohttp's test client only sends well-formed requests, and its test server is not the one
`python -m orderengine` listens with. These helpers start the app behind the engine's own
listener (`EngineSite`: its connection cap, its answers to what the parser refuses) on a
free port, and talk to it over plain sockets: partial headers, trickled bodies, garbage.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from orderengine.app import create_app
from orderengine.server import EngineSite
from tests.harness import fast_settings

HOST = "127.0.0.1"
READ_LIMIT_S = 10.0


@dataclass(frozen=True)
class Answer:
    """One HTTP answer as it came over the wire."""

    status: int
    headers: dict[str, str]
    body: bytes
    version: str = "HTTP/1.1"
    """The status line's protocol."""

    def json(self) -> Any:
        return json.loads(self.body)


@contextlib.asynccontextmanager
async def serving(database_url: str, **overrides: Any) -> AsyncIterator[EngineSite]:
    """The app for these settings behind the engine's listener, on a free port."""
    settings = fast_settings(database_url, **overrides)
    runner = web.AppRunner(create_app(settings), access_log=None, shutdown_timeout=5)
    await runner.setup()
    try:
        site = EngineSite(runner, settings, host=HOST, port=0)
        await site.start()
        yield site
    finally:
        await runner.cleanup()


async def connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A new connection to the server on `port` (an `EngineSite`'s, or a test client's)."""
    return await asyncio.open_connection(HOST, port)


async def read_answer(reader: asyncio.StreamReader, limit_s: float = READ_LIMIT_S) -> Answer:
    """The next answer on the connection: status, headers, and a body of Content-Length."""
    async with asyncio.timeout(limit_s):
        head = await reader.readuntil(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in lines if line)
        }
        body = await reader.readexactly(int(headers.get("content-length", "0")))
    version, status = status_line.split()[:2]
    return Answer(int(status), headers, body, version)


async def exchange(port: int, request: bytes) -> Answer:
    """Send `request` on a new connection and read the one answer."""
    reader, writer = await connect(port)
    try:
        writer.write(request)
        await writer.drain()
        return await read_answer(reader)
    finally:
        writer.close()


async def closed_by_server(reader: asyncio.StreamReader, limit_s: float = READ_LIMIT_S) -> bytes:
    """Everything the server still sends before it closes the connection.

    Raises TimeoutError if the connection is still open after `limit_s`.
    """
    async with asyncio.timeout(limit_s):
        try:
            return await reader.read()
        except ConnectionResetError:
            return b""


def request_bytes(
    method: str,
    target: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> bytes:
    """An HTTP/1.1 request as bytes; Host and Content-Length are added."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {HOST}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body

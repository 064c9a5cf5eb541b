"""An HTTP JSON endpoint a live venue calls: timeouts, paced requests, retries, no secrets out.

Every request first takes a token from the endpoint's budget, so that quotes and status polls
stay under the provider's request limit. A refusal for load (429, or a 5xx for a request that
is safe to repeat) is retried with exponential backoff, waiting at least as long as the
answer's `Retry-After` asks. A request that may have taken effect (`send`: a
transaction sent) is retried only when the endpoint refused it outright (429); a timeout or a
lost connection then leaves its outcome unknown, for the caller to resolve.

An endpoint's URL may carry an API key (in its path or query), and so may its headers
(`x-api-key`), so no error or log line names more of it than its host.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import aiohttp
import structlog
from yarl import URL

from orderengine.errors import VenueError
from orderengine.limiter import Limiter

log = structlog.get_logger(__name__)

MAX_ANSWER_BYTES = 4 * 1024 * 1024
"""The longest answer read from an endpoint; the APIs' answers run to tens of KiB."""
MIN_SECRET = 8
"""Shorter parts of an address (`v1`, `swap`) are no secret, and would mangle any message."""
MAX_SAID = 200
"""The most characters of an endpoint's own error message an order's error quotes."""
MAX_RETRY_AFTER_S = 30.0
"""The longest wait a `Retry-After` is honoured for; a longer one is cut to this."""


class EndpointError(VenueError):
    """A request to a live venue's endpoint failed: no answer, or an error answer."""

    code = "venue_unavailable"

    def __init__(self, message: str, status: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.http_status = status
        self.body = body


class Endpoint:
    """One base URL, with its session, budget and retry policy."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        budget: Limiter,
        *,
        retries: int,
        backoff_s: float = 0.25,
        cap_s: float = 5.0,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self._session = session
        self._headers = dict(headers or {})
        self._url = URL(url)
        self._secrets = _secrets_of(self._url, self._headers)
        self._budget = budget
        self._retries = retries
        self._backoff_s = backoff_s
        self._cap_s = cap_s

    def _shown(self, said: str) -> str:
        """An endpoint's own words, as an order's error may carry them.

        Short, and with this endpoint's secrets (its URL's path and query, its headers'
        values) taken out, since some providers quote the request they refuse.
        """
        for secret in self._secrets:
            said = said.replace(secret, "…")
        return said if len(said) <= MAX_SAID else said[:MAX_SAID] + "…"

    @property
    def host(self) -> str:
        """What logs and errors call the endpoint: its host, never its path or query."""
        return self._url.host or "endpoint"

    async def get(self, path: str, params: Mapping[str, str]) -> Any:
        """The JSON answer to `GET base/path?params`; a read, so any failure is retried."""
        answer, _ = await self._request("GET", path, params=params, repeatable=True)
        return answer

    async def post(self, path: str, body: Any) -> Any:
        """The JSON answer to `POST base/path` with the JSON `body`, a request safe to repeat."""
        answer, _ = await self._request("POST", path, json=body, repeatable=True)
        return answer

    async def send(self, path: str, body: Any) -> tuple[Any, int]:
        """`POST` a request that may take effect: its JSON answer, and how many times it went.

        It goes again only after a 429 (the endpoint refused it); the count tells the caller
        whether an answer may be to a repeat of a request that took effect the first time.
        """
        return await self._request("POST", path, json=body, repeatable=False)

    async def _request(
        self, method: str, path: str, *, repeatable: bool, **options: Any
    ) -> tuple[Any, int]:
        url = self._url.joinpath(path).with_query(self._url.query) if path else self._url
        for attempt in range(self._retries + 1):
            await self._budget.acquire()
            try:
                # Never followed: a redirect would carry the headers (an API key) elsewhere.
                request = self._session.request(
                    method, url, headers=self._headers, allow_redirects=False, **options
                )
                async with request as response:
                    if response.status < HTTPStatus.MULTIPLE_CHOICES:
                        return await self._answer(response), attempt + 1
                    error = await self._refused(response)
                    wait = self._retry_wait(response, attempt, repeatable)
            except (aiohttp.ClientError, TimeoutError) as failure:
                error = EndpointError(f"{self.host}: {_described(failure)}")
                wait = self._backoff(attempt) if repeatable else None
            if wait is None or attempt == self._retries:
                raise error
            log.info("endpoint_retry", host=self.host, error=error.message, wait_s=round(wait, 3))
            await asyncio.sleep(wait)
        raise AssertionError("the loop returns or raises")

    async def _answer(self, response: aiohttp.ClientResponse) -> Any:
        """The JSON of a successful answer; one that is not JSON is an error, never retried."""
        try:
            return json.loads(await self._body(response))
        except ValueError as error:
            message = f"{self.host} answered {response.status} with a body that is not JSON"
            raise EndpointError(message, status=response.status) from error

    async def _body(self, response: aiohttp.ClientResponse) -> bytes:
        """The answer's body, read to `MAX_ANSWER_BYTES` at most: longer is an error.

        An endpoint broken or hostile could otherwise send the engine as much as it likes.
        """
        body = bytearray()
        async for chunk in response.content.iter_chunked(64 * 1024):
            body += chunk
            if len(body) > MAX_ANSWER_BYTES:
                raise EndpointError(
                    f"{self.host} answered with more than {MAX_ANSWER_BYTES} bytes",
                    status=response.status,
                )
        return bytes(body)

    async def _refused(self, response: aiohttp.ClientResponse) -> EndpointError:
        """The error an error answer stands for, with its JSON body when it has one."""
        try:
            body = json.loads(await self._body(response))
        except (ValueError, aiohttp.ClientError, EndpointError):
            body = None
        said = body.get("error") if isinstance(body, dict) else None
        detail = f": {self._shown(said)}" if isinstance(said, str) else ""
        message = f"{self.host} answered {response.status}{detail}"
        return EndpointError(message, status=response.status, body=body)

    def _retry_wait(
        self, response: aiohttp.ClientResponse, attempt: int, repeatable: bool
    ) -> float | None:
        """How long to wait before trying again, or None when trying again is wrong."""
        status = response.status
        if status != HTTPStatus.TOO_MANY_REQUESTS and not (repeatable and status >= 500):
            return None
        asked = _retry_after_s(response.headers.get("Retry-After"))
        return max(asked, self._backoff(attempt)) if asked is not None else self._backoff(attempt)

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with jitter: base × 2^attempt, capped, times 0.5–1."""
        ceiling: float = min(self._cap_s, self._backoff_s * 2**attempt)
        return ceiling * random.uniform(0.5, 1.0)


def _retry_after_s(value: str | None) -> float | None:
    """`Retry-After` in seconds (its delay-seconds form), capped; None when absent or a date."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def _described(failure: BaseException) -> str:
    """A failure, named without the URL some aiohttp errors print in full."""
    if isinstance(failure, TimeoutError | aiohttp.ServerTimeoutError):
        return "no answer in time"
    if isinstance(failure, aiohttp.ClientConnectorError):
        return f"cannot connect ({failure.os_error.strerror or type(failure.os_error).__name__})"
    return type(failure).__name__


def _secrets_of(url: URL, headers: Mapping[str, str]) -> list[str]:
    """What of an endpoint's address and headers may be a secret: never repeated in errors.

    Its path's segments and query's values (RPC providers put keys there), and its headers'
    values; the longest first, so that a secret within another is taken out with it.
    """
    parts = [*url.path.split("/"), *url.query.values(), *headers.values()]
    return sorted({part for part in parts if len(part) >= MIN_SECRET}, key=len, reverse=True)

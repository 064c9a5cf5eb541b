"""A live venue's HTTP endpoint: paced, retried when safe, and never naming its secret URL.

No network: aioresponses answers every request and records what was sent, so each test
counts the requests that went out. The endpoint's sleep is replaced by one that records the
wait asked for and returns at once, so that the waits are asserted without waiting.
"""

from __future__ import annotations

import traceback
from collections.abc import AsyncIterator, Iterator
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from aioresponses import aioresponses
from structlog.testing import capture_logs
from yarl import URL

from orderengine.venues import endpoint as endpoint_module
from orderengine.venues.endpoint import (
    MAX_ANSWER_BYTES,
    MAX_RETRY_AFTER_S,
    Endpoint,
    EndpointError,
)

API = "https://api.example.com/v1"
QUOTE = f"{API}/quote?inputMint=A"
SWAP = f"{API}/swap"
SECRET_RPC = "https://rpc.example.com/abc-secret-token?api-key=SECRET"
SECRETS = ("abc-secret-token", "SECRET", "api-key")


class CountingBudget:
    """A budget that never waits and counts the tokens taken."""

    def __init__(self) -> None:
        self.acquired = 0

    async def acquire(self) -> float:
        self.acquired += 1
        return 0.0


@pytest.fixture
def mocked() -> Iterator[Any]:
    with aioresponses() as responses:
        yield responses


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as opened:
        yield opened


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The seconds the endpoint slept for between attempts, in order; it sleeps not at all."""
    waited: list[float] = []

    async def sleep(seconds: float) -> None:
        waited.append(seconds)

    monkeypatch.setattr(endpoint_module, "asyncio", SimpleNamespace(sleep=sleep))
    return waited


@pytest.fixture
def budget() -> CountingBudget:
    return CountingBudget()


def answer(mocked: Any, method: str, url: str, **options: Any) -> None:
    """Answer the next `method url` once, with `options` (status, payload, headers, exception)."""
    mocked.add(url, method, **options)


def sent(mocked: Any, method: str, url: str) -> int:
    """How many `method url` requests reached the (mocked) network."""
    return len(mocked.requests.get((method, URL(url)), []))


def endpoint(
    session: aiohttp.ClientSession, budget: CountingBudget, url: str = API, retries: int = 3
) -> Endpoint:
    return Endpoint(session, url, budget, retries=retries)


async def test_a_redirect_is_not_followed(
    mocked: Any, session: aiohttp.ClientSession, waits: list[float], budget: CountingBudget
) -> None:
    """Followed, it would carry the endpoint's headers (an API key) to another host."""
    elsewhere = "https://elsewhere.example/steal"
    answer(mocked, "GET", QUOTE, status=307, headers={"Location": elsewhere})
    answer(mocked, "GET", elsewhere, payload={"outAmount": "42"})

    with pytest.raises(EndpointError):
        await endpoint(session, budget, retries=0).get("quote", {"inputMint": "A"})

    assert sent(mocked, "GET", elsewhere) == 0


async def test_an_answer_longer_than_the_engine_reads_is_an_error(
    mocked: Any, session: aiohttp.ClientSession, waits: list[float], budget: CountingBudget
) -> None:
    answer(mocked, "GET", QUOTE, body=b"[" + b"0," * (MAX_ANSWER_BYTES // 2) + b"0]")

    with pytest.raises(EndpointError) as refused:
        await endpoint(session, budget, retries=0).get("quote", {"inputMint": "A"})

    assert f"more than {MAX_ANSWER_BYTES} bytes" in refused.value.message


async def test_a_429_with_retry_after_is_retried_once_after_that_wait(
    mocked: Any, session: aiohttp.ClientSession, waits: list[float], budget: CountingBudget
) -> None:
    answer(mocked, "GET", QUOTE, status=429, headers={"Retry-After": "2"})
    answer(mocked, "GET", QUOTE, payload={"outAmount": "42"})

    result = await endpoint(session, budget).get("quote", {"inputMint": "A"})

    assert result == {"outAmount": "42"}
    assert sent(mocked, "GET", QUOTE) == 2
    assert waits == [2.0]


async def test_retry_after_is_honoured_over_a_shorter_backoff(
    mocked: Any, session: aiohttp.ClientSession, waits: list[float], budget: CountingBudget
) -> None:
    for seconds in ("7", "0.5"):
        answer(mocked, "POST", SWAP, status=429, headers={"Retry-After": seconds})
    answer(mocked, "POST", SWAP, payload={"ok": True})
    patient = Endpoint(session, API, budget, retries=3, backoff_s=0.01)

    assert await patient.post("swap", {"quote": 1}) == {"ok": True}

    assert waits == [7.0, 0.5]


async def test_a_retry_after_beyond_the_cap_is_cut_to_30_seconds(
    mocked: Any, session: aiohttp.ClientSession, waits: list[float], budget: CountingBudget
) -> None:
    answer(mocked, "GET", QUOTE, status=429, headers={"Retry-After": "3600"})
    answer(mocked, "GET", QUOTE, payload=[])

    assert await endpoint(session, budget).get("quote", {"inputMint": "A"}) == []

    assert MAX_RETRY_AFTER_S == 30.0
    assert waits == [30.0]


async def test_a_5xx_on_a_get_is_retried_after_a_backoff(
    mocked: Any, session: aiohttp.ClientSession, waits: list[float], budget: CountingBudget
) -> None:
    answer(mocked, "GET", QUOTE, status=503)
    answer(mocked, "GET", QUOTE, status=502)
    answer(mocked, "GET", QUOTE, payload={"outAmount": "1"})
    backing_off = Endpoint(session, API, budget, retries=3, backoff_s=1.0, cap_s=5.0)

    assert await backing_off.get("quote", {"inputMint": "A"}) == {"outAmount": "1"}

    assert sent(mocked, "GET", QUOTE) == 3
    first, second = waits
    assert 0.5 <= first <= 1.0
    assert 1.0 <= second <= 2.0


async def test_a_5xx_on_a_non_repeatable_post_is_not_retried(
    mocked: Any, session: aiohttp.ClientSession, waits: list[float], budget: CountingBudget
) -> None:
    answer(mocked, "POST", SWAP, status=503, payload={"error": "overloaded"})
    answer(mocked, "POST", SWAP, payload={"ok": True})

    with pytest.raises(EndpointError) as raised:
        await endpoint(session, budget).send("swap", {"tx": "..."})

    assert raised.value.http_status == 503
    assert raised.value.body == {"error": "overloaded"}
    assert raised.value.message == "api.example.com answered 503: overloaded"
    assert sent(mocked, "POST", SWAP) == 1
    assert waits == []


async def test_a_5xx_on_a_repeatable_post_is_retried(
    mocked: Any, session: aiohttp.ClientSession, waits: list[float], budget: CountingBudget
) -> None:
    answer(mocked, "POST", SWAP, status=500)
    answer(mocked, "POST", SWAP, payload={"ok": True})

    assert await endpoint(session, budget).post("swap", {"quote": 1}) == {"ok": True}

    assert sent(mocked, "POST", SWAP) == 2
    assert len(waits) == 1


async def test_a_429_on_a_non_repeatable_post_is_retried_as_it_was_refused_outright(
    mocked: Any, session: aiohttp.ClientSession, waits: list[float], budget: CountingBudget
) -> None:
    answer(mocked, "POST", SWAP, status=429, headers={"Retry-After": "1"})
    answer(mocked, "POST", SWAP, payload={"result": "signature"})

    result, sends = await endpoint(session, budget).send("swap", {"tx": "..."})

    assert result == {"result": "signature"}
    assert sends == 2, "the caller is told its answer is to a repeat"
    assert sent(mocked, "POST", SWAP) == 2
    assert waits == [1.0]


async def test_a_timeout_on_a_non_repeatable_post_is_raised_at_once_never_sent_twice(
    mocked: Any, session: aiohttp.ClientSession, waits: list[float], budget: CountingBudget
) -> None:
    answer(mocked, "POST", SWAP, exception=TimeoutError())
    answer(mocked, "POST", SWAP, payload={"result": "signature"})

    with pytest.raises(EndpointError) as raised:
        await endpoint(session, budget).send("swap", {"tx": "..."})

    assert raised.value.message == "api.example.com: no answer in time"
    assert raised.value.http_status is None
    assert sent(mocked, "POST", SWAP) == 1
    assert budget.acquired == 1
    assert waits == []


async def test_a_lost_connection_on_a_non_repeatable_post_is_raised_at_once(
    mocked: Any, session: aiohttp.ClientSession, waits: list[float], budget: CountingBudget
) -> None:
    answer(mocked, "POST", SWAP, exception=aiohttp.ServerDisconnectedError())
    answer(mocked, "POST", SWAP, payload={"result": "signature"})

    with pytest.raises(EndpointError, match="ServerDisconnectedError"):
        await endpoint(session, budget).send("swap", {"tx": "..."})

    assert sent(mocked, "POST", SWAP) == 1
    assert waits == []


async def test_a_timeout_on_a_get_is_retried(
    mocked: Any, session: aiohttp.ClientSession, waits: list[float], budget: CountingBudget
) -> None:
    answer(mocked, "GET", QUOTE, exception=TimeoutError())
    answer(mocked, "GET", QUOTE, payload={"outAmount": "3"})

    assert await endpoint(session, budget).get("quote", {"inputMint": "A"}) == {"outAmount": "3"}

    assert sent(mocked, "GET", QUOTE) == 2
    assert len(waits) == 1


async def test_retries_exhausted_raise_the_last_status(
    mocked: Any, session: aiohttp.ClientSession, waits: list[float], budget: CountingBudget
) -> None:
    for _ in range(3):
        answer(mocked, "GET", QUOTE, status=503)
    answer(mocked, "GET", QUOTE, payload={"never": "asked"})

    with pytest.raises(EndpointError) as raised:
        await endpoint(session, budget, retries=2).get("quote", {"inputMint": "A"})

    assert raised.value.http_status == 503
    assert raised.value.code == "venue_unavailable"
    assert raised.value.message == "api.example.com answered 503"
    assert sent(mocked, "GET", QUOTE) == 3
    assert len(waits) == 2


async def test_a_client_error_is_not_retried(
    mocked: Any, session: aiohttp.ClientSession, waits: list[float], budget: CountingBudget
) -> None:
    answer(mocked, "GET", QUOTE, status=400, payload={"error": "Could not find any route"})
    answer(mocked, "GET", QUOTE, payload={"never": "asked"})

    with pytest.raises(EndpointError) as raised:
        await endpoint(session, budget).get("quote", {"inputMint": "A"})

    assert raised.value.http_status == 400
    assert raised.value.message == "api.example.com answered 400: Could not find any route"
    assert sent(mocked, "GET", QUOTE) == 1
    assert waits == []


async def test_the_budget_is_taken_once_per_request_sent(
    mocked: Any, session: aiohttp.ClientSession, waits: list[float], budget: CountingBudget
) -> None:
    paced = endpoint(session, budget)
    answer(mocked, "GET", QUOTE, payload={"outAmount": "1"})

    await paced.get("quote", {"inputMint": "A"})

    assert budget.acquired == 1

    answer(mocked, "POST", SWAP, status=429)
    answer(mocked, "POST", SWAP, status=503)
    answer(mocked, "POST", SWAP, payload={"ok": True})

    await paced.post("swap", {"quote": 1})

    assert sent(mocked, "POST", SWAP) == 3
    assert budget.acquired == 1 + 3


def assert_secret_free(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


def described(error: BaseException) -> str:
    """Everything a log of the error would show: its message, repr and traceback chain."""
    return "\n".join([str(error), repr(error), *traceback.format_exception(error)])


async def test_a_secret_url_is_named_by_its_host_only_when_answers_fail(
    mocked: Any, session: aiohttp.ClientSession, waits: list[float], budget: CountingBudget
) -> None:
    for _ in range(3):
        answer(mocked, "POST", SECRET_RPC, status=500, payload={"error": "internal"})
    rpc = endpoint(session, budget, url=SECRET_RPC, retries=2)

    with capture_logs() as logs, pytest.raises(EndpointError) as raised:
        await rpc.post("", {"jsonrpc": "2.0", "id": 1, "method": "getHealth"})

    assert sent(mocked, "POST", SECRET_RPC) == 3
    assert raised.value.message == "rpc.example.com answered 500: internal"
    assert_secret_free(described(raised.value))
    assert [entry["event"] for entry in logs] == ["endpoint_retry", "endpoint_retry"]
    assert {entry["host"] for entry in logs} == {"rpc.example.com"}
    assert_secret_free(repr(logs))


async def test_a_secret_url_is_named_by_its_host_only_when_requests_fail(
    mocked: Any,
    session: aiohttp.ClientSession,
    waits: list[float],
    budget: CountingBudget,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # One timeout, then nothing registered: aioresponses fails the later requests with a
    # ClientConnectionError whose message holds the full URL, as aiohttp's own errors may.
    answer(mocked, "POST", SECRET_RPC, exception=TimeoutError())
    rpc = endpoint(session, budget, url=SECRET_RPC, retries=2)
    caplog.set_level("DEBUG")

    with capture_logs() as logs, pytest.raises(EndpointError) as raised:
        await rpc.post("", {"jsonrpc": "2.0", "id": 1, "method": "getSlot"})

    assert sent(mocked, "POST", SECRET_RPC) == 3
    assert raised.value.message == "rpc.example.com: ClientConnectionError"
    assert_secret_free(described(raised.value))
    assert [entry["error"] for entry in logs] == [
        "rpc.example.com: no answer in time",
        "rpc.example.com: ClientConnectionError",
    ]
    assert_secret_free(repr(logs))
    assert_secret_free(caplog.text)


async def test_a_query_in_the_base_url_goes_with_every_path(
    mocked: Any, session: aiohttp.ClientSession, budget: CountingBudget
) -> None:
    keyed = "https://quotes.example/swap/v1?api-key=K"
    answer(mocked, "GET", "https://quotes.example/swap/v1/quote?api-key=K&inputMint=A", payload=[1])

    assert await endpoint(session, budget, url=keyed).get("quote", {"inputMint": "A"}) == [1]


async def test_a_success_whose_body_is_not_json_is_an_endpoint_error_not_retried(
    mocked: Any, session: aiohttp.ClientSession, waits: list[float], budget: CountingBudget
) -> None:
    answer(mocked, "GET", QUOTE, status=200, body="<html>maintenance</html>")

    with pytest.raises(EndpointError, match="not JSON") as raised:
        await endpoint(session, budget).get("quote", {"inputMint": "A"})

    assert raised.value.http_status == 200
    assert sent(mocked, "GET", QUOTE) == 1
    assert waits == []


async def test_an_endpoint_quoting_its_secrets_back_has_them_taken_out(
    mocked: Any, session: aiohttp.ClientSession, waits: list[float], budget: CountingBudget
) -> None:
    url = "https://rpc.example.com/abc-secret-token?api-key=k3y-0123456789"
    echoed = f"no such plan for {url}, key k3y-0123456789; " + "x" * 500
    answer(mocked, "POST", url, status=401, payload={"error": echoed})
    rpc = Endpoint(session, url, budget, retries=0, headers={"x-api-key": "h3ader-0123456789"})

    with pytest.raises(EndpointError) as raised:
        await rpc.post("", {"method": "getHealth"})

    message = raised.value.message
    assert message.startswith("rpc.example.com answered 401: no such plan for")
    assert "abc-secret-token" not in message
    assert "k3y-0123456789" not in message
    assert len(message) < 300

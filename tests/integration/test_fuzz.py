"""The API fuzzed: whatever arrives, no 5xx, every error in the one shape, nothing made by refusals.

Hypothesis draws request bodies (orders with good and bad fields, any JSON, any bytes, in
any content coding), headers (content types, encodings, idempotency keys, handshakes and
origins), query strings and paths for the listings and the order, and first messages on a
socket; each is sent to the engine's own listener on a real port (`tests/raw_http.py`).
Runs are derandomized and bounded, so the suite stays deterministic and fast.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import zlib
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import aiohttp
import asyncpg
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from orderengine.server import EngineSite
from orderengine.tokens import TOKENS
from tests.raw_http import HOST, Answer, connect, exchange, read_answer, request_bytes, serving
from tests.streams import MARKET

FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# ---- what is drawn ----------------------------------------------------------------------------


def mostly(
    good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any], one_in: int = 4
) -> st.SearchStrategy[Any]:
    """`bad` once in `one_in` draws, else `good`: a request often gets past its first checks.

    Shrinking leads to `good`, so a failure is reduced to the one bad part that causes it.
    """
    return st.sampled_from([good] * (one_in - 1) + [bad]).flatmap(lambda chosen: chosen)


scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
any_json = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
symbols = st.sampled_from([*TOKENS, "sol", "Usdc", "ſol", "ＳＯＬ", "DOGE", "", "SOL "])
amounts = (
    st.sampled_from(
        ["1.5", "0.000000001", "1E-9", "1_000", "١", "１", " 1", "-1", "0", "10001", "1e400"]
    )
    | st.decimals(allow_nan=False, allow_infinity=False, places=12).map(str)
    | st.integers(min_value=-(10**40), max_value=10**40)
)
order_fields = {
    "type": mostly(st.just("market"), st.sampled_from(["limit", "sniper", "MARKET"]) | scalars),
    "tokenIn": mostly(st.sampled_from(["SOL", "sol"]), symbols | scalars),
    "tokenOut": mostly(st.sampled_from(["USDC", "usdt", "Bonk"]), symbols | scalars),
    "amountIn": mostly(st.sampled_from(["1.5", "0.000000001", "1E-7", "3"]), amounts | scalars),
    "slippageBps": mostly(st.integers(min_value=1, max_value=5000), scalars),
}
orders = (
    st.fixed_dictionaries(order_fields)
    | st.fixed_dictionaries({}, optional=order_fields)
    | st.fixed_dictionaries({**order_fields, "extra": any_json})
)


def _encode(value: Any) -> bytes:
    return json.dumps(value, default=str).encode()


bodies = mostly(
    orders.map(_encode),
    st.one_of(
        any_json.map(_encode),
        st.binary(max_size=300),
        st.integers(min_value=1, max_value=5000).map(lambda n: b"[" * n + b"]" * n),
        st.integers(min_value=1, max_value=3000).map(lambda n: b'{"a":' * n),
        orders.map(lambda order: _encode(order)[:-1] + b', "amountIn": "2"}'),
    ),
)
CODERS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress,
    "deflate": zlib.compress,
}
header_text = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=40)
content_types = mostly(
    st.sampled_from(["application/json", "application/json; charset=utf-8"]),
    st.sampled_from(["", "application/json; charset=latin-1", "text/plain", "text/html"])
    | header_text,
    one_in=8,
)
codings = mostly(
    st.sampled_from(["", "identity", "gzip", "deflate"]), st.just("br") | header_text, one_in=8
)
idempotency_keys = mostly(
    st.none() | st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), min_size=1),
    header_text,
    one_in=8,
)
handshakes = mostly(
    st.just({}),
    st.sampled_from(
        [
            {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13"},
            {"Connection": "Upgrade", "Upgrade": "websocket"},
        ]
    ),
    one_in=8,
)
websocket_keys = st.sampled_from(["dGhlIHNhbXBsZSBub25jZQ==", "bad", ""]) | header_text
origins = mostly(
    st.none(), st.sampled_from(["http://evil.example", "null"]) | header_text, one_in=8
)


@st.composite
def posts(draw: st.DrawFn) -> bytes:
    """A POST of the execute route with a drawn body, coding and headers."""
    coding = draw(codings)
    raw = draw(bodies)
    body = CODERS[coding](raw) if coding in CODERS else raw
    headers: dict[str, str] = {}
    if content_type := draw(content_types):
        headers["Content-Type"] = content_type
    if coding:
        headers["Content-Encoding"] = coding
    if (key := draw(idempotency_keys)) is not None:
        headers["Idempotency-Key"] = key
    if handshake := draw(handshakes):
        headers.update(handshake, **{"Sec-WebSocket-Key": draw(websocket_keys)})
    if (origin := draw(origins)) is not None:
        headers["Origin"] = origin
    return _request("POST", "/api/orders/execute", body, headers)


def _request(method: str, target: str, body: bytes, headers: dict[str, str]) -> bytes:
    head = [f"{method} {target} HTTP/1.1", f"Host: {HOST}", f"Content-Length: {len(body)}"]
    head += [f"{name}: {value}" for name, value in headers.items()]
    return "\r\n".join(head).encode("utf-8", "surrogateescape") + b"\r\n\r\n" + body


query_values = mostly(
    st.sampled_from(["0", "1", "50", "200", "pending", "confirmed"])
    | st.integers(min_value=0, max_value=2**63).map(str),
    st.text(max_size=30)
    | st.sampled_from(["²", "١٠", "99999999999999999999", "9223372036854775808", "-1"]),
)
raw_target_text = st.text(
    alphabet=st.characters(codec="latin-1", exclude_characters="\r\n \t"), max_size=60
)


@st.composite
def reads(draw: st.DrawFn) -> str:
    """A GET of the listing or of one order, with drawn query values or path.

    `x` is a parameter no route takes (a 422).
    """
    if draw(st.booleans()):
        names = draw(st.lists(st.sampled_from(["status", "limit", "cursor", "x"]), max_size=4))
        query = "&".join(f"{name}={quote(draw(query_values), safe='')}" for name in names)
        return f"/api/orders?{query}"
    if draw(st.booleans()):
        return "/api/orders/" + quote(draw(query_values | st.uuids().map(str)), safe="")
    return "/api/orders/" + draw(raw_target_text)


first_messages = mostly(
    orders.map(lambda order: _encode(order).decode()),
    st.one_of(
        st.text(max_size=200),
        st.binary(max_size=200),
        st.integers(min_value=1, max_value=5000).map(lambda n: "[" * n),
        st.integers(min_value=17_000, max_value=20_000).map(lambda n: "x" * n),
    ),
)

# ---- the engine under fuzz --------------------------------------------------------------------


@pytest.fixture
async def site(database_url: str) -> AsyncIterator[EngineSite]:
    async with serving(database_url, request_timeout_s=2.0) as site:
        yield site


@pytest.fixture
async def orders_table(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(database_url)
    yield connection
    await connection.close()


async def count(orders_table: asyncpg.Connection) -> int:
    total: int = await orders_table.fetchval("SELECT count(*) FROM orders")
    return total


def assert_answered_well(answer: Answer) -> None:
    event(f"status {answer.status}")
    assert answer.status < 500, answer.body
    if answer.status >= 400:
        body = answer.json()
        assert set(body) == {"error"}, body
        assert set(body["error"]) == {"code", "message", "details"}, body
        assert isinstance(body["error"]["message"], str)


@FUZZ
@given(request=posts())
async def test_any_post_is_answered_without_5xx_and_refusals_create_nothing(
    site: EngineSite, orders_table: asyncpg.Connection, request: bytes
) -> None:
    before = await count(orders_table)
    reader, writer = await connect(site.port)
    try:
        writer.write(request)
        answer = await read_answer(reader)
    finally:
        writer.close()

    assert_answered_well(answer)
    created = await count(orders_table) - before
    if answer.status in (201, 101):
        assert created == 1
    else:
        assert created == 0, answer


@FUZZ
@given(target=reads())
async def test_any_read_is_answered_without_5xx(site: EngineSite, target: str) -> None:
    answer = await exchange(site.port, _request("GET", target, b"", {}))

    assert_answered_well(answer)
    assert answer.status in (200, 400, 404, 422), answer


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@FUZZ
@given(message=first_messages)
async def test_any_first_socket_message_is_an_order_or_a_shaped_refusal(
    site: EngineSite,
    orders_table: asyncpg.Connection,
    session: aiohttp.ClientSession,
    message: str | bytes,
) -> None:
    before = await count(orders_table)
    async with session.ws_connect(f"http://{HOST}:{site.port}/api/orders/execute") as ws:
        if isinstance(message, bytes):
            await ws.send_bytes(message)
        else:
            await ws.send_str(message)
        reply = await ws.receive(timeout=5)
        event(f"reply {reply.type.name}")
        if reply.type == aiohttp.WSMsgType.TEXT:
            body = json.loads(reply.data)
            if "error" in body:
                assert set(body["error"]) == {"code", "message", "details"}
                assert body["error"]["code"] != "internal_error"
                closing = await ws.receive(timeout=5)
                assert closing.type == aiohttp.WSMsgType.CLOSE
                assert ws.close_code == 1008
            else:
                assert body["status"] == "pending"
        else:  # too large for a message: closed 1009 at once
            assert reply.type == aiohttp.WSMsgType.CLOSE
            assert ws.close_code == 1009

    await asyncio.sleep(0)
    created = await count(orders_table) - before
    assert created == (1 if reply.type == aiohttp.WSMsgType.TEXT and "error" not in body else 0)


@pytest.mark.parametrize("amount", [Decimal("1E-9"), Decimal("0.0000001")])
async def test_a_fuzzed_amount_that_is_accepted_is_written_plainly(
    site: EngineSite, amount: Decimal
) -> None:
    body = _encode({**MARKET, "amountIn": str(amount)})

    answer = await exchange(
        site.port,
        request_bytes("POST", "/api/orders/execute", body, {"Content-Type": "application/json"}),
    )

    assert answer.status == 201
    assert answer.json()["amountIn"] == format(amount, "f")

"""Bad input gets a clear error in one shape, changes nothing, and stops no one else.

Among it, every attack on the running engine found so far: JSON nested to the parser's
death, bodies in codings that are not what they claim, numbers in other scripts, pages of
other sites posting orders or opening sockets, handshakes that are not handshakes, amounts
no pool could fill. What the HTTP parser itself refuses, and slow or idle connections, are
in test_server_limits.py.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import re
import uuid
import zlib
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict

from orderengine.errors import DatabaseUnavailable
from orderengine.postgres import create_pool
from orderengine.routes import ROUTES, Route
from tests.harness import UNKNOWN_ID, Client, StartApp
from tests.raw_http import Answer, exchange, request_bytes, serving
from tests.streams import (
    MARKET,
    post_upgrade,
    read_until_closed,
    statuses,
    stream,
    submit,
    wait_terminal,
)

JSON = {"Content-Type": "application/json"}
ORDER = json.dumps(MARKET).encode()
WEBSOCKET = {
    "Connection": "Upgrade",
    "Upgrade": "websocket",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
}


def without(field: str) -> dict[str, Any]:
    return {key: value for key, value in MARKET.items() if key != field}


BAD_ORDERS: list[Any] = [
    without("tokenOut"),
    {**MARKET, "amountIn": True},
    {**MARKET, "tokenIn": "DOGE"},
    {**MARKET, "type": "limit"},
    {**MARKET, "slippageBps": "50"},
    {**MARKET, "amount": "1"},
    [MARKET],
]
"""A few bad orders of different kinds; every kind is in tests/unit/test_order_request.py."""


async def order_count(client: Client) -> int:
    listing = await (await client.get("/api/orders?limit=200")).json()
    return len(listing["orders"])


def error_of(body: Any) -> dict[str, Any]:
    assert set(body) == {"error"}
    error: dict[str, Any] = body["error"]
    assert {"code", "message", "details"} <= error.keys()
    assert isinstance(error["message"], str)
    return error


async def test_invalid_order_is_422_with_field_reasons_and_creates_nothing(
    client: Client,
) -> None:
    response = await client.post("/api/orders/execute", json={**MARKET, "tokenOut": "SOL"})

    assert response.status == 422
    error = error_of(await response.json())
    assert error["code"] == "invalid_order"
    assert error["details"] == [
        {"field": "tokenOut", "message": "tokenOut must differ from tokenIn", "type": "value_error"}
    ]
    assert await order_count(client) == 0


async def test_unreadable_json_is_400_and_creates_nothing(client: Client) -> None:
    response = await client.post(
        "/api/orders/execute", data=b"{nope", headers={"Content-Type": "application/json"}
    )

    assert response.status == 400
    assert error_of(await response.json())["code"] == "bad_request"
    assert await order_count(client) == 0


async def test_oversized_body_is_413_and_creates_nothing(client: Client) -> None:
    body = json.dumps({**MARKET, "padding": "x" * 100_000})

    response = await client.post(
        "/api/orders/execute", data=body, headers={"Content-Type": "application/json"}
    )

    assert response.status == 413
    error_of(await response.json())
    assert await order_count(client) == 0


NO_ORDER_IDS = [UNKNOWN_ID, "not-a-uuid", "1", f"{{{UNKNOWN_ID}}}", f"%7B{UNKNOWN_ID}%7D"]


async def test_unknown_or_malformed_order_is_404(client: Client, subtests: pytest.Subtests) -> None:
    """One engine answers every case: none of them finds an order, and a DELETE cancels none."""
    for method in ("GET", "DELETE"):
        for order_id in NO_ORDER_IDS:
            with subtests.test(f"{method}-{order_id}"):
                response = await client.request(method, f"/api/orders/{order_id}")

                assert response.status == 404
                assert error_of(await response.json())["code"] == "order_not_found"


async def test_websocket_for_an_unknown_order_is_refused_with_404(client: Client) -> None:
    response = await client.get(
        f"/api/orders/execute?orderId={uuid.uuid4()}",
        headers={
            "Connection": "Upgrade",
            "Upgrade": "websocket",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        },
    )

    assert response.status == 404
    assert error_of(await response.json())["code"] == "order_not_found"


async def test_invalid_first_socket_message_gets_an_error_and_close_1008(client: Client) -> None:
    async with client.ws_connect("/api/orders/execute") as ws:
        await ws.send_json(without("tokenIn"))
        messages = await read_until_closed(ws)

    assert ws.close_code == 1008
    assert [error_of(message)["code"] for message in messages] == ["invalid_order"]
    assert await order_count(client) == 0


async def test_pings_do_not_put_off_the_deadline_of_the_first_message(
    start_app: StartApp,
) -> None:
    client = await start_app(ws_first_message_timeout_s=0.5)
    async with client.ws_connect("/api/orders/execute") as ws:

        async def pinging() -> None:
            while not ws.closed:
                await ws.ping()
                await asyncio.sleep(0.05)

        pings = asyncio.create_task(pinging())
        try:
            messages = await read_until_closed(ws, limit_s=5)
        finally:
            pings.cancel()

    assert ws.close_code == 1008
    assert [error_of(message)["code"] for message in messages] == ["bad_request"]


BAD_LISTING_QUERIES = [
    "status=lost",
    "status=",
    "limit=0",
    "limit=999",
    "limit=ten",
    "limit=",
    "cursor=-1",
]


async def test_bad_listing_queries_are_400(client: Client, subtests: pytest.Subtests) -> None:
    for query in BAD_LISTING_QUERIES:
        with subtests.test(query):
            response = await client.get(f"/api/orders?{query}")

            assert response.status == 400
            error_of(await response.json())


async def test_a_bad_page_size_is_told_the_range_it_must_be_in(client: Client) -> None:
    response = await client.get("/api/orders?limit=-1")

    assert (
        error_of(await response.json())["message"] == "limit must be a whole number from 1 to 200"
    )


async def test_since_without_an_order_to_follow_is_400(client: Client) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect("/api/orders/execute?since=2")

    assert refused.value.status == 400


async def test_plain_get_on_the_execute_route_explains_itself(client: Client) -> None:
    response = await client.get("/api/orders/execute")

    assert response.status == 405
    assert response.headers["Allow"] == "POST"
    assert "must upgrade to a WebSocket" in error_of(await response.json())["message"]


@pytest.mark.parametrize("method", ["DELETE", "PUT", "PATCH"])
async def test_another_method_on_the_execute_route_is_405_naming_its_own(
    client: Client, method: str
) -> None:
    """`/api/orders/{order_id}` takes DELETE, but `execute` is no order's id."""
    response = await client.request(method, "/api/orders/execute")

    assert response.status == 405
    assert response.headers["Allow"] == "GET,POST"
    assert error_of(await response.json())["code"] == "method_not_allowed"


@pytest.mark.parametrize("path", ["/api/orders/execute", "/api/events"])
async def test_a_head_on_a_socket_path_is_405_as_its_allow_leaves_it_out(
    client: Client, path: str
) -> None:
    """A HEAD cannot open a socket: the path does not take it, and its 405s do not name it."""
    head = await client.head(path)
    put = await client.put(path)

    assert head.status == 405
    assert "HEAD" not in head.headers["Allow"].split(",")
    assert head.headers["Allow"] == put.headers["Allow"]


async def test_fields_are_read_by_their_camelcase_names_alone(client: Client) -> None:
    """The schemas name `tokenIn`; `token_in` is an unknown field, as in any other request."""
    snake = {"type": "market", "token_in": "SOL", "token_out": "USDC", "amount_in": "1"}
    listing = {"dex": "raydium", "token": "SNAKE", "quote_token": "SOL", "price": "1"}

    order = await client.post("/api/orders/execute", json=snake)
    quote = await client.get("/api/quotes", params=snake)
    listed = await client.post("/api/simulation/listings", json={**listing, "liquidity": "9"})

    assert [order.status, quote.status, listed.status] == [422, 422, 422]
    for answer, unknown in ((order, "token_in"), (quote, "token_in"), (listed, "quote_token")):
        reasons = {r["field"]: r["type"] for r in error_of(await answer.json())["details"]}
        assert reasons[unknown] == "extra_forbidden"
    assert await order_count(client) == 0


async def test_the_engine_keeps_serving_after_bad_input(client: Client) -> None:
    for bad in BAD_ORDERS:
        assert (await client.post("/api/orders/execute", json=bad)).status == 422
    for raw in (b"{nope", b"\xff\xfe", b'{"amountIn": NaN}', b"[" * 999 + b"]" * 999):
        assert (await client.post("/api/orders/execute", data=raw, headers=JSON)).status == 400

    events = await stream(client, await submit(client))

    assert statuses(events)[-1] == "confirmed"


async def test_reasons_name_the_problem(client: Client) -> None:
    response = await client.post(
        "/api/orders/execute", json={**MARKET, "type": "limit", "tokenIn": "DOGE"}
    )

    reasons = {r["field"]: r["message"] for r in error_of(await response.json())["details"]}
    assert reasons["limitPrice"] == "a limit order needs limitPrice"
    assert reasons["tokenIn"].startswith("unknown token 'DOGE'")


# ---- bodies the parser would choke on -------------------------------------------------------


DEEP = b"[" * 999 + b"]" * 999


async def test_json_nested_999_deep_is_400_and_creates_nothing(client: Client) -> None:
    response = await client.post("/api/orders/execute", data=DEEP, headers=JSON)

    assert response.status == 400
    error = error_of(await response.json())
    assert error["message"] == "request body nests arrays and objects more than 32 levels deep"
    assert await order_count(client) == 0


HUGE_EXPONENT = ORDER[:-1] + b', "limitPrice": 1e9999999999999999999}'
UNPARSABLE = pytest.mark.parametrize(
    "body", [DEEP, HUGE_EXPONENT], ids=["nested 999 deep", "a number no decimal holds"]
)


@UNPARSABLE
async def test_a_body_the_parser_refuses_posted_with_upgrade_is_400_before_upgrading(
    client: Client, body: bytes
) -> None:
    assert await post_upgrade(client, body) == (400, [])
    assert await order_count(client) == 0


@UNPARSABLE
async def test_a_body_the_parser_refuses_as_first_socket_message_is_refused_with_1008(
    client: Client, body: bytes
) -> None:
    async with client.ws_connect("/api/orders/execute") as ws:
        await ws.send_str(body.decode())
        messages = await read_until_closed(ws)

    assert ws.close_code == 1008
    assert [error_of(message)["code"] for message in messages] == ["bad_request"]
    assert await order_count(client) == 0


async def test_a_number_no_decimal_holds_is_400_and_creates_nothing(client: Client) -> None:
    response = await client.post("/api/orders/execute", data=HUGE_EXPONENT, headers=JSON)

    assert response.status == 400
    assert error_of(await response.json())["message"] == (
        "request body has a number out of range: 1e9999999999999999999"
    )
    assert await order_count(client) == 0


async def test_an_idempotency_key_given_twice_is_400_and_creates_nothing(client: Client) -> None:
    """A proxy keeping the other one would let the same order through twice."""
    headers = CIMultiDict([*JSON.items(), ("Idempotency-Key", "first"), ("Idempotency-Key", "b")])

    response = await client.post("/api/orders/execute", data=ORDER, headers=headers)

    assert response.status == 400
    assert error_of(await response.json())["message"] == (
        "the request gives Idempotency-Key more than once"
    )
    assert await order_count(client) == 0


PARAMETERS_GIVEN_TWICE = [
    ("/api/orders?limit=1&limit=2", "limit"),
    ("/api/orders?status=confirmed&status=failed", "status"),
    ("/api/orders?x=1&x=2", "a parameter"),
    (f"/api/orders/execute?orderId={UNKNOWN_ID}&orderId={UNKNOWN_ID}", "orderId"),
    ("/api/events?after=0&after=5", "after"),
]


async def test_a_query_parameter_given_twice_is_400_on_every_route(
    client: Client, subtests: pytest.Subtests
) -> None:
    for path, named in PARAMETERS_GIVEN_TWICE:
        with subtests.test(path):
            response = await client.get(path)

            assert response.status == 400
            message = error_of(await response.json())["message"]
            assert message == f"the query gives {named} more than once"


async def test_a_post_naming_an_order_to_follow_is_422_and_creates_nothing(
    client: Client,
) -> None:
    """Following is a GET's; the POST would have made a new order instead."""
    existing = await submit(client)
    target = f"/api/orders/execute?orderId={existing}&since=1"

    plain = await client.post(target, data=ORDER, headers=JSON)
    upgraded = await post_upgrade(client, ORDER, target)

    assert plain.status == 422
    error = error_of(await plain.json())
    assert error["code"] == "unknown_parameter"
    assert [reason["field"] for reason in error["details"]] == ["orderId", "since"]
    assert upgraded == (422, [])
    assert await order_count(client) == 1


HTTP_ROUTES: list[Route] = [route for route in ROUTES if not route.socket]


async def test_every_http_route_refuses_a_query_parameter_it_does_not_take(
    client: Client, subtests: pytest.Subtests
) -> None:
    """A misspelled `limit` or `cursor`, ignored, would answer another page than the one meant.

    One engine answers every route: refused, no request leaves anything for the next to see.
    """
    for route in HTTP_ROUTES:
        with subtests.test(route.operation_id):
            path = route.path.replace("{order_id}", UNKNOWN_ID).replace("{file}", "console.js")
            response = await client.request(route.method, path, params={"limt": "5"})

            assert response.status == 422
            error = error_of(await response.json())
            assert error["code"] == "unknown_parameter"
            assert error["details"] == [
                {
                    "field": "limt",
                    "message": "not a query parameter of this route",
                    "type": "extra_forbidden",
                }
            ]
            assert await order_count(client) == 0


async def test_parse_errors_are_told_in_our_words_with_where(client: Client) -> None:
    response = await client.post("/api/orders/execute", data=b"{nope", headers=JSON)

    error = error_of(await response.json())
    assert error["message"] == "request body is not valid JSON"
    assert error["details"] == {"line": 1, "column": 2}


async def test_a_field_given_twice_is_400_not_last_wins(client: Client) -> None:
    raw = ORDER[:-1] + b', "amountIn": "1000"}'

    response = await client.post("/api/orders/execute", data=raw, headers=JSON)

    assert response.status == 400
    assert "amountIn more than once" in error_of(await response.json())["message"]
    assert await order_count(client) == 0


LOOKALIKES = {
    "underscore": {"amountIn": "1_000"},
    "full-width digit": {"amountIn": "１"},
    "Arabic-Indic digit": {"amountIn": "١"},
    "space": {"amountIn": " 1"},
    "long s": {"tokenIn": "ſol"},
    "zero width": {"tokenOut": "usdc\u200b"},
}


async def test_lookalike_amounts_and_symbols_are_422(
    client: Client, subtests: pytest.Subtests
) -> None:
    for name, change in LOOKALIKES.items():
        with subtests.test(name):
            response = await client.post("/api/orders/execute", json={**MARKET, **change})

            assert response.status == 422
            assert error_of(await response.json())["details"][0]["field"] == next(iter(change))
            assert await order_count(client) == 0


# ---- content types and codings --------------------------------------------------------------


NOT_JSON: list[str | None] = [
    None,
    "text/plain",
    "text/plain; charset=utf-8",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/json; charset=latin-1",
    "application/jsonp",
    "application/octet-stream",
]


async def test_a_body_not_sent_as_json_is_415_and_creates_nothing(
    client: Client, subtests: pytest.Subtests
) -> None:
    for content_type in NOT_JSON:
        with subtests.test(str(content_type)):
            headers = {"Content-Type": content_type} if content_type else {}

            answer = await exchange(
                client_port(client), request_bytes("POST", "/api/orders/execute", ORDER, headers)
            )

            assert answer.status == 415
            assert error_of(answer.json())["code"] == "unsupported_media_type"
            assert await order_count(client) == 0


@pytest.mark.parametrize(
    "content_type", ["application/json; charset=utf-8", "Application/JSON; charset=UTF-8"]
)
async def test_json_with_its_charset_is_accepted(client: Client, content_type: str) -> None:
    response = await client.post(
        "/api/orders/execute", data=ORDER, headers={"Content-Type": content_type}
    )

    assert response.status == 201


COMPRESSED = {
    "gzip": ("gzip", gzip.compress(ORDER)),
    "x-gzip": ("x-gzip", gzip.compress(ORDER)),
    "deflate": ("deflate", zlib.compress(ORDER)),
    "raw deflate": ("deflate", zlib.compress(ORDER)[2:-4]),
    "identity": ("identity", ORDER),
}


async def test_a_compressed_order_is_accepted(client: Client, subtests: pytest.Subtests) -> None:
    """Each case adds its one order to those the cases before it left on the one engine."""
    for name, (coding, body) in COMPRESSED.items():
        with subtests.test(name):
            before = await order_count(client)

            response = await client.post(
                "/api/orders/execute", data=body, headers={**JSON, "Content-Encoding": coding}
            )

            assert response.status == 201, await response.text()
            assert await order_count(client) == before + 1


MISENCODED = {
    "not gzip": ("gzip", ORDER),
    "truncated gzip": ("gzip", gzip.compress(ORDER)[:-8]),
    "gzip with trailing bytes": ("gzip", gzip.compress(ORDER) + b"trailing"),
    "empty gzip": ("gzip", b""),
    "not deflate": ("deflate", ORDER),
}


async def test_a_body_that_is_not_what_its_encoding_says_is_400(
    client: Client, subtests: pytest.Subtests
) -> None:
    for name, (coding, body) in MISENCODED.items():
        with subtests.test(name):
            response = await client.post(
                "/api/orders/execute", data=body, headers={**JSON, "Content-Encoding": coding}
            )

            assert response.status == 400
            error = error_of(await response.json())
            assert error["message"] == "request body is not valid for its Content-Encoding"
            assert await order_count(client) == 0


UNDECODED = ["br", "zstd", "compress", "rot13", "gzip, gzip", "gzip, br"]


async def test_an_encoding_the_engine_does_not_decode_is_415(
    client: Client, subtests: pytest.Subtests
) -> None:
    for coding in UNDECODED:
        with subtests.test(coding):
            response = await client.post(
                "/api/orders/execute",
                data=gzip.compress(ORDER),
                headers={**JSON, "Content-Encoding": coding},
            )

            assert response.status == 415
            assert error_of(await response.json())["code"] == "unsupported_media_type"
            assert await order_count(client) == 0


async def test_a_gzip_bomb_stops_at_the_body_limit_once_decompressed(client: Client) -> None:
    bomb = gzip.compress(b'{"type": "market", "padding": "' + b" " * 50_000_000 + b'"}')
    assert len(bomb) < 100_000

    response = await client.post(
        "/api/orders/execute",
        data=bomb,
        headers={**JSON, "Content-Encoding": "gzip"},
    )

    assert response.status == 413
    assert error_of(await response.json())["code"] == "request_entity_too_large"
    assert await order_count(client) == 0


# ---- numbers in queries -------------------------------------------------------------------------


NOT_QUERY_NUMBERS = [
    "limit=²",
    "limit=١٠",
    "limit=99999999999999999999",
    "limit=+5",
    "limit= 5",
    "cursor=²",
    "cursor=٣",
    "cursor=9223372036854775808",
    "cursor=99999999999999999999999999",
    "cursor=1e3",
]


async def test_query_numbers_are_ascii_digits_within_their_column(
    client: Client, subtests: pytest.Subtests
) -> None:
    for query in NOT_QUERY_NUMBERS:
        with subtests.test(query):
            response = await client.get(f"/api/orders?{query}")

            assert response.status == 400
            error_of(await response.json())


async def test_the_largest_cursor_is_a_cursor(client: Client) -> None:
    response = await client.get("/api/orders?cursor=9223372036854775807")

    assert response.status == 200


NOT_SEQS = ["²", "٣", "2147483648", "99999999999999999999", "-1"]


async def test_a_socket_since_that_is_no_seq_is_400_before_upgrading(
    client: Client, subtests: pytest.Subtests
) -> None:
    """Each case follows an order of its own, submitted just before."""
    for since in NOT_SEQS:
        with subtests.test(since):
            order_id = await submit(client)

            response = await client.get(
                f"/api/orders/execute?orderId={order_id}&since={since}", headers=WEBSOCKET
            )

            assert response.status == 400
            assert "since" in error_of(await response.json())["message"]


# ---- handshakes ---------------------------------------------------------------------------------


def client_port(client: Client) -> int:
    assert client.server.port is not None
    return client.server.port


async def post_with_upgrade(client: Client, **changes: str) -> Answer:
    headers = {**WEBSOCKET, **JSON, **changes}
    return await exchange(
        client_port(client), request_bytes("POST", "/api/orders/execute", ORDER, headers)
    )


BAD_HANDSHAKES: list[dict[str, str]] = [
    {"Sec-WebSocket-Key": "not base64!"},
    {"Sec-WebSocket-Key": "c2hvcnQ="},
    {"Sec-WebSocket-Key": ""},
    {"Sec-WebSocket-Version": "8"},
    {"Sec-WebSocket-Version": "14"},
    {"Connection": "keep-alive"},
    {"Upgrade": "websocket, h2c"},
]
HANDSHAKE_IDS = ["key", "short key", "empty key", "version 8", "version 14", "no Connection", "two"]


async def test_a_post_with_a_bad_websocket_handshake_is_400_and_creates_nothing(
    client: Client, subtests: pytest.Subtests
) -> None:
    for name, bad in zip(HANDSHAKE_IDS, BAD_HANDSHAKES, strict=True):
        with subtests.test(name):
            answer = await post_with_upgrade(client, **bad)

            assert answer.status == 400
            assert error_of(answer.json())["message"].startswith("invalid WebSocket handshake")
            assert await order_count(client) == 0


async def test_a_get_with_a_bad_websocket_handshake_is_400(
    client: Client, subtests: pytest.Subtests
) -> None:
    for name, bad in zip(HANDSHAKE_IDS, BAD_HANDSHAKES, strict=True):
        with subtests.test(name):
            response = await client.get("/api/orders/execute", headers={**WEBSOCKET, **bad})

            assert response.status == 400
            message = error_of(await response.json())["message"]
            assert message.startswith("invalid WebSocket handshake")


@pytest.mark.parametrize("path", ["/api/orders/execute", "/api/events"])
async def test_a_handshake_of_another_version_is_told_the_version_spoken(
    client: Client, path: str
) -> None:
    response = await client.get(path, headers={**WEBSOCKET, "Sec-WebSocket-Version": "8"})

    assert response.status == 400
    assert response.headers["Sec-WebSocket-Version"] == "13"
    assert error_of(await response.json())["code"] == "bad_request"


@pytest.mark.parametrize("path", ["/api/orders/execute", "/api/events"])
async def test_a_head_is_no_websocket_handshake(client: Client, path: str) -> None:
    response = await client.head(path, headers=WEBSOCKET)

    assert response.status == 400
    assert await order_count(client) == 0


@pytest.mark.parametrize("path", ["/api/orders/execute", "/api/events"])
async def test_a_websocket_handshake_in_http_1_0_is_400(database_url: str, path: str) -> None:
    request = request_bytes("GET", path, headers=WEBSOCKET).replace(b"HTTP/1.1", b"HTTP/1.0", 1)
    async with serving(database_url) as site:
        answer = await exchange(site.port, request)

    assert answer.status == 400
    assert error_of(answer.json())["message"] == ("invalid WebSocket handshake: it needs HTTP/1.1")


async def test_a_post_with_a_valid_handshake_still_upgrades(client: Client) -> None:
    status, messages = await post_upgrade(client, ORDER)

    assert status == 101
    assert statuses(messages)[-1] == "confirmed"


# ---- origins ---------------------------------------------------------------------------------


FOREIGN = [
    "http://evil.example",
    "null",
    "https://127.0.0.1.evil.example",
    "file://",
    "http://xn--zz.example",  # punycode that does not decode
]


async def test_a_socket_opened_from_another_sites_page_is_403(
    client: Client, subtests: pytest.Subtests
) -> None:
    for origin in FOREIGN:
        with subtests.test(origin):
            response = await client.get(
                "/api/orders/execute", headers={**WEBSOCKET, "Origin": origin}
            )

            assert response.status == 403
            assert error_of(await response.json())["code"] == "forbidden_origin"


async def test_a_host_that_does_not_decode_makes_no_origin_the_engine_s_own(
    start_app: StartApp,
) -> None:
    client = await start_app(api_keys={"alice": "alice-key-0123456789"})
    own = f"http://127.0.0.1:{client_port(client)}"
    headers = {**WEBSOCKET, "Origin": own, "Host": "xn--zz.example"}

    response = await client.get("/api/orders/execute", headers=headers)

    assert response.status == 403
    assert error_of(await response.json())["code"] == "forbidden_origin"


async def test_a_foreign_page_cannot_send_an_order_as_a_first_message(client: Client) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect("/api/orders/execute", origin="http://evil.example")

    assert refused.value.status == 403
    assert await order_count(client) == 0


async def test_a_post_upgrade_from_a_foreign_origin_is_403_and_creates_nothing(
    client: Client,
) -> None:
    answer = await post_with_upgrade(client, Origin="http://evil.example")

    assert answer.status == 403
    assert error_of(answer.json())["code"] == "forbidden_origin"
    assert await order_count(client) == 0


async def test_sockets_from_the_engines_own_origin_or_from_no_page_are_served(
    client: Client,
) -> None:
    own = f"http://127.0.0.1:{client_port(client)}"
    for origin in (own, None):
        async with client.ws_connect("/api/orders/execute", origin=origin) as ws:
            await ws.send_json(MARKET)
            messages = await read_until_closed(ws)
        assert statuses(messages)[-1] == "confirmed"


async def test_an_origin_allowed_by_the_settings_is_served(start_app: StartApp) -> None:
    client = await start_app(allowed_origins=("https://trade.example",))

    async with client.ws_connect("/api/orders/execute", origin="https://trade.example") as ws:
        await ws.send_json(MARKET)
        messages = await read_until_closed(ws)

    assert statuses(messages)[-1] == "confirmed"
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await client.ws_connect("/api/orders/execute", origin="http://trade.example")


# ---- amounts ---------------------------------------------------------------------------------


NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")


def amounts_in(value: Any) -> list[str]:
    """Every string in `value` a client would read as a number."""
    if isinstance(value, dict):
        return [a for item in value.values() for a in amounts_in(item)]
    if isinstance(value, list):
        return [a for item in value for a in amounts_in(item)]
    if isinstance(value, str) and NUMBER.fullmatch(value):
        return [value]
    return []


async def test_amounts_leave_as_plain_decimals_never_with_an_exponent(client: Client) -> None:
    response = await client.post("/api/orders/execute", json={**MARKET, "amountIn": "1E-7"})
    assert response.status == 201
    assert (await response.json())["amountIn"] == "0.0000001"

    order = await wait_terminal(client, (await response.json())["orderId"])
    listing = await (await client.get("/api/orders")).json()

    assert order["status"] == "confirmed"
    assert order["amountIn"] == "0.0000001"
    found = amounts_in(order) + amounts_in(listing)
    assert "0.0000001" in found
    assert [amount for amount in found if "E" in amount.upper()] == []


async def test_an_amount_over_the_tokens_maximum_is_422_and_creates_nothing(
    client: Client,
) -> None:
    response = await client.post(
        "/api/orders/execute", json={**MARKET, "amountIn": "10000.000000001"}
    )

    assert response.status == 422
    [reason] = error_of(await response.json())["details"]
    assert reason == {
        "field": "amountIn",
        "message": "more than 10000 SOL, the most one order may sell",
        "type": "amount_too_large",
    }
    assert await order_count(client) == 0


async def test_the_maximum_amounts_are_a_setting(start_app: StartApp) -> None:
    client = await start_app(max_amounts={"SOL": Decimal("2")})

    over = await client.post("/api/orders/execute", json={**MARKET, "amountIn": "2.5"})

    assert over.status == 422
    assert await order_count(client) == 0
    assert (
        await client.post("/api/orders/execute", json={**MARKET, "amountIn": "2"})
    ).status == 201


async def test_the_maximum_amounts_apply_to_a_first_socket_message(start_app: StartApp) -> None:
    client = await start_app(max_amounts={"SOL": Decimal("2")})

    async with client.ws_connect("/api/orders/execute") as ws:
        await ws.send_json({**MARKET, "amountIn": "2.5"})
        refused = await read_until_closed(ws)

    assert [error_of(m)["code"] for m in refused] == ["invalid_order"]
    assert await order_count(client) == 0


async def test_a_swap_whose_price_impact_is_too_high_gets_no_quote(start_app: StartApp) -> None:
    client = await start_app(max_attempts=1)

    order = await wait_terminal(client, await submit(client, {**MARKET, "amountIn": "9000"}))

    assert order["status"] == "failed"
    [routing] = [event for event in order["events"] if event["status"] == "routing"]
    assert set(routing["unavailable"]) == {"raydium", "meteora"}
    for why in routing["unavailable"].values():
        assert why.startswith("price impact of ")
        assert why.endswith("% is over the 5% limit")


# ---- what errors say ------------------------------------------------------------------------


async def test_an_unreachable_database_is_named_without_the_drivers_words() -> None:
    with pytest.raises(DatabaseUnavailable) as caught:
        await create_pool("postgresql://nobody@127.0.0.1:1/none", 2, 1.0)

    assert caught.value.message == "database unavailable"


async def test_a_refusal_names_at_most_twenty_reasons_each_cut_short(client: Client) -> None:
    """Thousands of unknown keys or parameters must not make an answer many times their size."""
    keys = {f"{n:04d}" + "k" * 60: 1 for n in range(100)}
    body = json.dumps({**json.loads(ORDER), **keys}).encode()
    params = {f"p{n:04d}": "1" for n in range(200)}

    refused_body = await client.post("/api/orders/execute", data=body, headers=JSON)
    refused_query = await client.get("/health", params=params)

    for response in (refused_body, refused_query):
        assert response.status == 422
        reasons = error_of(await response.json())["details"]
        assert len(reasons) == 20
        assert all(len(reason["field"]) <= 40 for reason in reasons)
    assert await order_count(client) == 0

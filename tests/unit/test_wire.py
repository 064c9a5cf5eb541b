"""The wire format's readers and writers without a server: numbers, ids, bodies, origins.

What a client sends is read strictly (ASCII digits within their column, canonical ids,
bounded decompression, a real handshake from an allowed origin) and what the engine writes
is plain (amounts never in exponent notation).
"""

from __future__ import annotations

import gzip
import zlib
from decimal import Decimal
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from orderengine.errors import (
    BadRequest,
    BodyTooLarge,
    ForeignOrigin,
    OrderNotFound,
)
from orderengine.keys import SETTINGS
from orderengine.model import Amount, Model
from orderengine.settings import Settings
from orderengine.wire import (
    INT32_MAX,
    INT64_MAX,
    _decoded,
    non_negative,
    order_id,
    refuse_bad_upgrade,
    refuse_foreign_origin,
)

# ---- query numbers and ids ----------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["²", "١٢", "１２", "1_0", "+1", "-1", " 1", "1 ", "1\n", "", "0x1", "1e3", "1.0"]
)
def test_a_query_number_is_ascii_digits_only(text: str) -> None:
    with pytest.raises(BadRequest, match="must be a whole number from 0 to"):
        non_negative("limit", text, 50)


def test_a_query_number_is_bounded_by_its_column() -> None:
    assert non_negative("since", str(INT32_MAX), 0) == INT32_MAX
    with pytest.raises(BadRequest):
        non_negative("since", str(INT32_MAX + 1), 0)
    assert non_negative("cursor", str(INT64_MAX), 0, maximum=INT64_MAX) == INT64_MAX
    with pytest.raises(BadRequest):
        non_negative("cursor", str(INT64_MAX + 1), 0, maximum=INT64_MAX)
    with pytest.raises(BadRequest):
        non_negative("cursor", "9" * 5000, 0, maximum=INT64_MAX)


def test_an_absent_query_number_is_its_default() -> None:
    assert non_negative("limit", None, 50) == 50


CANONICAL = "0b1e4e3c-6f1a-4b3e-9a7d-3f0c2b1a9e8d"


@pytest.mark.parametrize(
    "text",
    [
        "{" + CANONICAL + "}",
        "urn:uuid:" + CANONICAL,
        CANONICAL.replace("-", ""),
        CANONICAL.replace("0", "０"),
        CANONICAL[:-1] + "_",
        " " + CANONICAL,
        "",
    ],
    ids=["braces", "urn", "no hyphens", "full-width zero", "underscore", "space", "empty"],
)
def test_an_order_id_is_a_canonical_uuid(text: str) -> None:
    with pytest.raises(OrderNotFound) as caught:
        order_id(text)

    assert text not in caught.value.message or not text


def test_a_canonical_uuid_in_either_case_is_an_order_id() -> None:
    assert order_id(CANONICAL.upper()) == order_id(CANONICAL)


# ---- plain amounts ----------------------------------------------------------------------------


class Priced(Model):
    amount: Amount


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("1E-9", "0.000000001"),
        ("1.0E+29", "100000000000000000000000000000"),
        ("0E-12", "0.000000000000"),
        ("1.50", "1.50"),
        ("150", "150"),
    ],
)
def test_amounts_are_written_without_exponents(value: str, written: str) -> None:
    priced = Priced(amount=Decimal(value))

    assert priced.model_dump(mode="json") == {"amount": written}
    assert priced.model_dump_json() == f'{{"amount":"{written}"}}'
    assert priced.model_dump() == {"amount": Decimal(value)}


# ---- bodies in a content coding -----------------------------------------------------------------


def test_a_decompression_bomb_stops_at_the_limit() -> None:
    bomb = gzip.compress(b"0" * 10_000_000)

    with pytest.raises(BodyTooLarge):
        _decoded(bomb, "gzip", 16_384)


def test_a_body_decompressing_to_exactly_the_limit_is_read() -> None:
    assert _decoded(gzip.compress(b"0" * 16_384), "gzip", 16_384) == b"0" * 16_384
    assert _decoded(zlib.compress(b"{}"), "deflate", 16_384) == b"{}"


@pytest.mark.parametrize(
    ("coding", "raw"),
    [
        ("gzip", b"not gzip"),
        ("gzip", gzip.compress(b"{}")[:-1]),
        ("gzip", gzip.compress(b"{}") * 2),
        ("deflate", b"not deflate"),
    ],
    ids=["not gzip", "truncated", "two members", "not deflate"],
)
def test_a_body_that_does_not_decode_is_400_in_our_words(coding: str, raw: bytes) -> None:
    with pytest.raises(BadRequest) as caught:
        _decoded(raw, coding, 16_384)

    assert caught.value.message == "request body is not valid for its Content-Encoding"


# ---- handshakes and origins -----------------------------------------------------------------

HANDSHAKE = {
    "Host": "127.0.0.1:8080",
    "Connection": "Upgrade",
    "Upgrade": "websocket",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
}


def request(headers: dict[str, str], **settings: Any) -> web.Request:
    app = web.Application()
    app[SETTINGS] = Settings(**settings)
    return make_mocked_request("GET", "/api/orders/execute", headers=headers, app=app)


def test_a_request_that_does_not_ask_to_upgrade_passes() -> None:
    refuse_bad_upgrade(request({"Host": "x", "Sec-WebSocket-Key": "junk", "Upgrade": "h2c"}))


def test_a_valid_handshake_without_an_origin_passes() -> None:
    refuse_bad_upgrade(request(HANDSHAKE))


@pytest.mark.parametrize(
    "origin",
    [
        "http://127.0.0.1:8080",
        "https://127.0.0.1:8080",
        "HTTP://127.0.0.1:8080",
        "http://127.0.0.1:8080/",
    ],
)
def test_the_engines_own_origin_passes(origin: str) -> None:
    refuse_foreign_origin(request({**HANDSHAKE, "Origin": origin}))


def test_an_origin_without_a_port_matches_a_host_without_one() -> None:
    refuse_foreign_origin(
        request({**HANDSHAKE, "Host": "engine.example", "Origin": "https://engine.example"})
    )


@pytest.mark.parametrize(
    "origin",
    [
        "http://127.0.0.1:8081",
        "http://127.0.0.1",
        "http://localhost:8080",
        "http://127.0.0.1:8080.evil.example",
        "http://127.0.0.1:8080/page",
        "null",
        "",
        "ws://127.0.0.1:8080",
        "http://[::1",
    ],
)
def test_any_other_origin_is_403(origin: str) -> None:
    with pytest.raises(ForeignOrigin):
        refuse_foreign_origin(request({**HANDSHAKE, "Origin": origin}))


def test_origins_allowed_by_the_settings_pass_exactly() -> None:
    allowed = {"allowed_origins": ("https://trade.example", "http://localhost:3000")}

    for origin in ("https://trade.example", "https://TRADE.example:443", "http://localhost:3000"):
        refuse_foreign_origin(request({**HANDSHAKE, "Origin": origin}, **allowed))
    for origin in ("http://trade.example", "https://trade.example:8443", "http://localhost"):
        with pytest.raises(ForeignOrigin):
            refuse_foreign_origin(request({**HANDSHAKE, "Origin": origin}, **allowed))

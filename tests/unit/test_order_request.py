"""Order validation without a database or an app: every bad order, against the model and the parser.

`OrderRequest` decides what a valid order is; `parse_order` turns a request body into one, or into
a `BadRequest` (unreadable JSON, a 400) or an `InvalidOrder` naming each bad field (a 422).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from orderengine import wire
from orderengine.domain import MAX_SLIPPAGE_BPS, OrderRequest
from orderengine.errors import BadRequest, InvalidOrder
from orderengine.tokens import TOKENS, Token, default_max_amounts
from orderengine.wire import parse_order
from tests.streams import MARKET

LIMIT = {**MARKET, "type": "limit", "limitPrice": "160"}
SNIPER = {**MARKET, "type": "sniper", "tokenOut": "NEWCOIN"}


def without(field: str) -> dict[str, Any]:
    return {key: value for key, value in MARKET.items() if key != field}


def encoded(body: Any) -> bytes:
    return json.dumps(body).encode()


INVALID_ORDERS: list[tuple[str, dict[str, Any], str, str]] = [
    # (case, order, the field named, the error type reported for it)
    ("missing tokenIn", without("tokenIn"), "tokenIn", "missing"),
    ("missing tokenOut", without("tokenOut"), "tokenOut", "missing"),
    ("missing amountIn", without("amountIn"), "amountIn", "missing"),
    ("missing type", without("type"), "type", "missing"),
    ("amount of the wrong type", {**MARKET, "amountIn": [1]}, "amountIn", "decimal_type"),
    ("amount as a boolean", {**MARKET, "amountIn": True}, "amountIn", "value_error"),
    ("amount that is not a number", {**MARKET, "amountIn": "lots"}, "amountIn", "decimal_parsing"),
    ("amount as null", {**MARKET, "amountIn": None}, "amountIn", "decimal_type"),
    ("negative amount", {**MARKET, "amountIn": "-1"}, "amountIn", "greater_than"),
    ("zero amount", {**MARKET, "amountIn": "0"}, "amountIn", "greater_than"),
    ("negative zero amount", {**MARKET, "amountIn": "-0.0"}, "amountIn", "greater_than"),
    ("infinite amount", {**MARKET, "amountIn": "Infinity"}, "amountIn", "decimal_parsing"),
    ("NaN amount", {**MARKET, "amountIn": "NaN"}, "amountIn", "decimal_parsing"),
    ("amount with underscores", {**MARKET, "amountIn": "1_000"}, "amountIn", "decimal_parsing"),
    ("amount with a leading zero", {**MARKET, "amountIn": "01.5"}, "amountIn", "decimal_parsing"),
    (
        "limit price with a leading zero",
        {**MARKET, "type": "limit", "limitPrice": "0150"},
        "limitPrice",
        "decimal_parsing",
    ),
    ("amount in full-width digits", {**MARKET, "amountIn": "１２"}, "amountIn", "decimal_parsing"),
    ("amount in Arabic-Indic digits", {**MARKET, "amountIn": "١٢"}, "amountIn", "decimal_parsing"),
    ("amount with spaces", {**MARKET, "amountIn": " 1 "}, "amountIn", "decimal_parsing"),
    ("amount with a plus sign", {**MARKET, "amountIn": "+1"}, "amountIn", "decimal_parsing"),
    ("amount with a bare point", {**MARKET, "amountIn": "1."}, "amountIn", "decimal_parsing"),
    ("amount in hexadecimal", {**MARKET, "amountIn": "0x10"}, "amountIn", "decimal_parsing"),
    ("empty amount", {**MARKET, "amountIn": ""}, "amountIn", "decimal_parsing"),
    (
        "more SOL than one order may sell",
        {**MARKET, "amountIn": "10000.000000001"},
        "amountIn",
        "amount_too_large",
    ),
    (
        "more BONK than one order may sell",
        {**MARKET, "tokenIn": "BONK", "amountIn": "1E+11"},
        "amountIn",
        "amount_too_large",
    ),
    (
        "more digits than an amount holds",
        {**MARKET, "amountIn": "1" * 31},
        "amountIn",
        "decimal_max_digits",
    ),
    (
        "amount whose trailing zeros make it more than 30 digits",
        {**MARKET, "amountIn": "0.1" + "0" * 40},
        "amountIn",
        "value_error",
    ),
    (
        "limit price whose trailing zeros make it more than 30 digits",
        {**MARKET, "type": "limit", "limitPrice": "150" + "0" * 28 + "E-28"},
        "limitPrice",
        "value_error",
    ),
    (
        "amount with a huge exponent",
        {**MARKET, "amountIn": "1E+40"},
        "amountIn",
        "decimal_max_digits",
    ),
    (
        "finer than SOL allows",
        {**MARKET, "amountIn": "1.0000000001"},
        "amountIn",
        "value_error",
    ),
    (
        "finer than BONK allows",
        {**MARKET, "tokenIn": "BONK", "amountIn": "1.000001"},
        "amountIn",
        "value_error",
    ),
    ("unknown token in", {**MARKET, "tokenIn": "DOGE"}, "tokenIn", "value_error"),
    ("unknown token out", {**MARKET, "tokenOut": "DOGE"}, "tokenOut", "value_error"),
    ("token with padding", {**MARKET, "tokenIn": " SOL"}, "tokenIn", "value_error"),
    (
        "token with a long s, which upper-cases to S",
        {**MARKET, "tokenIn": "ſol"},
        "tokenIn",
        "value_error",
    ),
    ("token with a Kelvin sign", {**MARKET, "tokenIn": "BON\u212a"}, "tokenIn", "value_error"),
    ("token in full-width letters", {**MARKET, "tokenOut": "ＵＳＤＣ"}, "tokenOut", "value_error"),
    ("empty token", {**MARKET, "tokenIn": ""}, "tokenIn", "string_too_short"),
    ("overlong token", {**MARKET, "tokenOut": "X" * 17}, "tokenOut", "string_too_long"),
    ("token that is not a string", {**MARKET, "tokenIn": 5}, "tokenIn", "string_type"),
    ("same token in and out", {**MARKET, "tokenOut": "SOL"}, "tokenOut", "value_error"),
    (
        "same token in and out, differing in case",
        {**MARKET, "tokenIn": "sol", "tokenOut": "Sol"},
        "tokenOut",
        "value_error",
    ),
    ("unknown order type", {**MARKET, "type": "stop"}, "type", "value_error"),
    ("order type in capitals", {**MARKET, "type": "MARKET"}, "type", "value_error"),
    ("order type null", {**MARKET, "type": None}, "type", "value_error"),
    (
        "limit order with no limit price",
        {**MARKET, "type": "limit"},
        "limitPrice",
        "missing_limit_price",
    ),
    (
        "market order with a limit price",
        {**MARKET, "limitPrice": "150"},
        "limitPrice",
        "not_for_market",
    ),
    (
        "market order with an expiry",
        {**MARKET, "expiresAt": "2099-01-01T00:00:00Z"},
        "expiresAt",
        "not_for_market",
    ),
    ("limit price of zero", {**LIMIT, "limitPrice": "0"}, "limitPrice", "greater_than"),
    (
        "limit price not in ASCII digits",
        {**LIMIT, "limitPrice": "1_60"},
        "limitPrice",
        "decimal_parsing",
    ),
    ("limit price infinite", {**LIMIT, "limitPrice": "Infinity"}, "limitPrice", "decimal_parsing"),
    ("expiry in the past", {**LIMIT, "expiresAt": "2020-01-01T00:00:00Z"}, "expiresAt", "expired"),
    (
        "expiry too far ahead",
        {**LIMIT, "expiresAt": "2999-01-01T00:00:00Z"},
        "expiresAt",
        "too_far_ahead",
    ),
    (
        "expiry that rounds up past the last time a date holds",
        {**LIMIT, "expiresAt": "9999-12-31T23:59:59.9999999Z"},
        "expiresAt",
        "too_far_ahead",
    ),
    (
        "expiry with no time zone",
        {**LIMIT, "expiresAt": "2099-01-01T00:00:00"},
        "expiresAt",
        "timezone_aware",
    ),
    (
        "expiry in seconds since 1970",
        {**LIMIT, "expiresAt": 1800000000},
        "expiresAt",
        "datetime_type",
    ),
    (
        "expiry in seconds since 1970, as text",
        {**LIMIT, "expiresAt": "1800000000"},
        "expiresAt",
        "datetime_type",
    ),
    (
        "expiry that is no time",
        {**LIMIT, "expiresAt": "tomorrow"},
        "expiresAt",
        "datetime_from_date_parsing",
    ),
    ("sniper token too short", {**SNIPER, "tokenOut": "N"}, "tokenOut", "value_error"),
    ("sniper token not ASCII", {**SNIPER, "tokenOut": "NEWCOİN"}, "tokenOut", "value_error"),
    ("sniper token with a dash", {**SNIPER, "tokenOut": "NEW-COIN"}, "tokenOut", "value_error"),
    (
        "limit order for an unlisted token",
        {**LIMIT, "tokenOut": "NOSUCHCOIN"},
        "tokenOut",
        "value_error",
    ),
    ("slippage of zero", {**MARKET, "slippageBps": 0}, "slippageBps", "greater_than_equal"),
    ("negative slippage", {**MARKET, "slippageBps": -1}, "slippageBps", "greater_than_equal"),
    (
        "slippage above 50%",
        {**MARKET, "slippageBps": MAX_SLIPPAGE_BPS + 1},
        "slippageBps",
        "less_than_equal",
    ),
    ("slippage as a string", {**MARKET, "slippageBps": "50"}, "slippageBps", "int_type"),
    ("slippage as a boolean", {**MARKET, "slippageBps": True}, "slippageBps", "int_type"),
    ("slippage as null", {**MARKET, "slippageBps": None}, "slippageBps", "int_type"),
    ("an unknown field", {**MARKET, "amount": "1"}, "amount", "extra_forbidden"),
    (
        "one field under both its names",
        {**MARKET, "amount_in": "2"},
        "amount_in",
        "extra_forbidden",
    ),
]
CASE_IDS = [case[0] for case in INVALID_ORDERS]


def reasons(error: InvalidOrder) -> list[dict[str, Any]]:
    """The details of a 422, checked for their shape."""
    details = error.details
    assert isinstance(details, list)
    for reason in details:
        assert set(reason) == {"field", "message", "type"}
        assert isinstance(reason["message"], str)
        assert reason["message"]
        assert not reason["message"].startswith("Value error")
    return details


def parse_invalid(raw: bytes | str, limits: dict[str, Decimal] | None = None) -> InvalidOrder:
    with pytest.raises(InvalidOrder) as caught:
        parse_order(raw, limits)
    assert caught.value.status == 422
    assert caught.value.code == "invalid_order"
    return caught.value


# ---- the model ----------------------------------------------------------------------------


@pytest.mark.parametrize(("case", "order", "field", "kind"), INVALID_ORDERS, ids=CASE_IDS)
def test_order_request_rejects_bad_order_naming_the_field(
    case: str, order: dict[str, Any], field: str, kind: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        OrderRequest.model_validate(order)

    found = {(str(e["loc"][0]), e["type"]) for e in caught.value.errors() if e["loc"]}
    assert (field, kind) in found


def test_order_request_accepts_python_names_in_code() -> None:
    order = OrderRequest(type="market", token_in="sol", token_out="usdc", amount_in=Decimal("2"))

    assert (order.token_in, order.token_out, order.amount_in) == ("SOL", "USDC", Decimal(2))


def test_order_request_is_immutable() -> None:
    order = OrderRequest.model_validate(MARKET)

    with pytest.raises(ValidationError):
        order.slippage_bps = 10  # type: ignore[misc]


# ---- the parser: bad orders ---------------------------------------------------------------


@pytest.mark.parametrize(("case", "order", "field", "kind"), INVALID_ORDERS, ids=CASE_IDS)
def test_parser_raises_invalid_order_naming_the_field(
    case: str, order: dict[str, Any], field: str, kind: str
) -> None:
    error = parse_invalid(encoded(order))

    assert error.message == "invalid order"
    assert {"field": field, "type": kind} in [
        {"field": r["field"], "type": r["type"]} for r in reasons(error)
    ]


@pytest.mark.parametrize("body", [[MARKET], "market", 1.5, None, True], ids=repr)
def test_parser_refuses_a_body_that_is_not_an_object(body: Any) -> None:
    error = parse_invalid(encoded(body))

    assert error.message == "an order must be a JSON object"
    assert error.details == []


def test_parser_reports_every_bad_field_at_once() -> None:
    order = {"type": "stop", "tokenIn": "DOGE", "amountIn": "-1", "slippageBps": 0}

    fields = {r["field"] for r in reasons(parse_invalid(encoded(order)))}

    assert fields == {"type", "tokenIn", "tokenOut", "amountIn", "slippageBps"}


def test_parser_reports_a_limit_orders_bad_fields_at_once() -> None:
    order = {**MARKET, "type": "limit", "amountIn": "-1", "expiresAt": "2020-01-01T00:00:00Z"}

    fields = {r["field"] for r in reasons(parse_invalid(encoded(order)))}

    assert fields == {"amountIn", "limitPrice", "expiresAt"}


def test_parser_reasons_name_the_problem_in_plain_words() -> None:
    order = {**MARKET, "type": "stop", "tokenIn": "DOGE", "tokenOut": "usdc"}

    messages = {r["field"]: r["message"] for r in reasons(parse_invalid(encoded(order)))}

    assert messages["type"] == "unknown order type 'stop'; the types are market, limit, sniper"
    assert messages["tokenIn"] == f"unknown token 'DOGE'; known: {', '.join(TOKENS)}"
    assert "tokenOut" not in messages


def test_parser_names_the_token_whose_decimals_are_exceeded() -> None:
    order = {**MARKET, "tokenIn": "usdc", "tokenOut": "SOL", "amountIn": "0.0000001"}

    messages = {r["field"]: r["message"] for r in reasons(parse_invalid(encoded(order)))}

    assert messages == {"amountIn": "more than 6 decimal places for USDC"}


def test_parser_rejects_an_amount_sent_as_a_json_number_finer_than_the_token() -> None:
    raw = b'{"type": "market", "tokenIn": "USDC", "tokenOut": "SOL", "amountIn": 0.0000001}'

    fields = [r["field"] for r in reasons(parse_invalid(raw))]

    assert fields == ["amountIn"]


def test_parser_rejects_slippage_sent_as_a_json_fraction() -> None:
    raw = encoded(MARKET).replace(b'"slippageBps": 100', b'"slippageBps": 100.0')

    fields = [r["field"] for r in reasons(parse_invalid(raw))]

    assert fields == ["slippageBps"]


@pytest.mark.parametrize(
    "amount", ["1.0000000000000000000000000001", "12345678901234567890.1234567891"]
)
def test_parser_rejects_a_long_amount_finer_than_the_token(amount: str) -> None:
    fields = [r["field"] for r in reasons(parse_invalid(encoded({**MARKET, "amountIn": amount})))]

    assert fields == ["amountIn"]


# ---- the parser: unreadable bodies --------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"{nope",
        b"",
        b"   ",
        b'{"type": "market",}',
        b'{"amountIn": NaN}',
        b'{"amountIn": Infinity}',
        b'{"amountIn": -Infinity}',
        b"\xff\xfe",
        b'{"tokenIn": "\xff"}',
    ],
    ids=repr,
)
def test_parser_raises_bad_request_for_unreadable_json(raw: bytes) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_order(raw)

    assert caught.value.status == 400
    assert caught.value.code == "bad_request"
    assert caught.value.message.startswith("request body is not valid JSON")
    assert "char" not in caught.value.message  # the parser's own words stay out
    assert "codec" not in caught.value.message


@pytest.mark.parametrize(
    "number",
    [
        "1e9999999999999999999",
        "1e-9999999999999999999",
        "0e9999999999999999999",
        "1.5E+99999999999999999999",
    ],
)
@pytest.mark.parametrize("field", ["amountIn", "limitPrice", "slippageBps", "unknown"])
def test_parser_refuses_a_number_no_decimal_holds_as_bad_request(number: str, field: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_order(f'{{"type": "market", "{field}": {number}}}'.encode())

    assert caught.value.status == 400
    assert caught.value.message == f"request body has a number out of range: {number}"


def test_parser_says_which_constant_json_does_not_allow() -> None:
    with pytest.raises(BadRequest, match="NaN is not a number JSON allows"):
        parse_order(b'{"amountIn": NaN}')


def test_parser_says_where_json_breaks_in_its_own_words() -> None:
    with pytest.raises(BadRequest) as caught:
        parse_order(b'{"type": "market",\n "tokenIn" "SOL"}')

    assert caught.value.message == "request body is not valid JSON"
    assert caught.value.details == {"line": 2, "column": 12}


@pytest.mark.parametrize(
    "raw",
    [
        "[" * 999 + "]" * 999,
        "[" * 100_000,
        '{"type": ' + "{" * 5000,
        '{"a": ' + '{"a": ' * 40 + "1" + "}" * 41,
    ],
    ids=["999 arrays", "100000 open arrays", "5000 open objects", "41 objects"],
)
def test_parser_refuses_json_nested_too_deep_without_recursing(raw: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_order(raw.encode())

    assert caught.value.message == "request body nests arrays and objects more than 32 levels deep"


def test_brackets_inside_strings_are_not_nesting() -> None:
    raw = encoded({**MARKET, "type": "[" * 100 + '\\"{' * 50})

    assert [r["field"] for r in reasons(parse_invalid(raw))] == ["type"]


@pytest.mark.parametrize(
    "raw",
    ["[" * 33 + '"' + '\\"' * 8000, "[" * 33 + '"' + '\\"' * 8000 + "\\", "[" * 33 + '"' * 9001],
    ids=["an unclosed string of escaped quotes", "ending in a lone backslash", "quotes"],
)
def test_nesting_is_judged_reading_each_string_once(raw: str) -> None:
    """A string with no closing quote is read to the end once, not again from each quote in it.

    Each string is one token from its opening quote: were a string that has no closing quote
    no token at all, the scan would try again from every quote inside it, in time that grows
    as the square of the body (the test cannot time it; it holds the property that rules it
    out).
    """
    string = raw.lstrip("[")
    token = wire._STRING_OR_BRACKET.match(string)

    assert token is not None
    assert token.end() == (2 if string.startswith('""') else len(string))
    with pytest.raises(BadRequest) as caught:
        parse_order(raw.encode())
    assert caught.value.message == "request body nests arrays and objects more than 32 levels deep"


def test_nesting_up_to_the_limit_is_read() -> None:
    raw = encoded({**MARKET, "note": [[[[[[[[[[1]]]]]]]]]]})

    assert [r["type"] for r in reasons(parse_invalid(raw))] == ["extra_forbidden"]


@pytest.mark.parametrize("key", ["amountIn", "tokenOut", "type"])
def test_parser_refuses_an_order_that_gives_a_field_twice(key: str) -> None:
    raw = b'{"type": "market", "tokenIn": "SOL", "tokenOut": "USDC", "amountIn": "1", '
    raw += f'"{key}": "2"}}'.encode()

    with pytest.raises(BadRequest) as caught:
        parse_order(raw)

    assert caught.value.message == f"request body gives {key} more than once in one object"


def test_a_repeated_key_that_is_no_field_is_not_echoed() -> None:
    with pytest.raises(BadRequest) as caught:
        parse_order(b'{"<script>": 1, "<script>": 2}')

    assert caught.value.message == "request body gives a key more than once in one object"


@pytest.mark.parametrize(
    "raw",
    ['{"a": 1}'.encode("utf-16"), '{"a": 1}'.encode("utf-32"), b"\xef\xbb\xbf{}"],
    ids=["utf-16", "utf-32", "utf-8 BOM"],
)
def test_json_must_be_utf8_without_a_byte_order_mark(raw: bytes) -> None:
    with pytest.raises(BadRequest):
        parse_order(raw)


def test_a_json_integer_of_thousands_of_digits_is_an_invalid_amount_not_a_crash() -> None:
    raw = b'{"type": "market", "tokenIn": "SOL", "tokenOut": "USDC", "amountIn": '
    error = parse_invalid(raw + b"9" * 5000 + b', "slippageBps": ' + b"9" * 5000 + b"}")

    assert {r["field"]: r["type"] for r in reasons(error)} == {
        "amountIn": "decimal_max_digits",
        "slippageBps": "int_type",
    }


# ---- the parser: good orders --------------------------------------------------------------


def test_parser_reads_a_complete_order() -> None:
    order = parse_order(encoded(MARKET))

    assert order == OrderRequest(
        type="market",
        token_in="SOL",
        token_out="USDC",
        amount_in=Decimal("1.5"),
        slippage_bps=100,
    )


def test_parser_reads_text_as_well_as_bytes() -> None:
    assert parse_order(json.dumps(MARKET)) == parse_order(encoded(MARKET))


def test_amount_sent_as_a_json_number_stays_an_exact_decimal() -> None:
    # 16 significant digits: a binary float would not hold them exactly.
    raw = (
        b'{"type": "market", "tokenIn": "BONK", "tokenOut": "USDC", "amountIn": 12345678901.12345}'
    )

    order = parse_order(raw)

    assert isinstance(order.amount_in, Decimal)
    assert order.amount_in == Decimal("12345678901.12345")
    assert Decimal(float(order.amount_in)) != order.amount_in


def test_amount_sent_as_a_json_integer_is_a_decimal() -> None:
    order = parse_order(b'{"type": "market", "tokenIn": "SOL", "tokenOut": "USDC", "amountIn": 3}')

    assert isinstance(order.amount_in, Decimal)
    assert order.amount_in == 3


def test_amount_with_trailing_zeros_beyond_the_token_decimals_is_accepted() -> None:
    order = parse_order(encoded({**MARKET, "tokenIn": "BONK", "amountIn": "2.50000000000"}))

    assert order.amount_in == Decimal("2.5")


@pytest.mark.parametrize(
    ("token_in", "token_out"), [("sol", "usdc"), ("Bonk", "jUp"), ("usdt", "SOL")]
)
def test_token_symbols_are_normalised_to_upper_case(token_in: str, token_out: str) -> None:
    order = parse_order(encoded({**MARKET, "tokenIn": token_in, "tokenOut": token_out}))

    assert (order.token_in, order.token_out) == (token_in.upper(), token_out.upper())


def test_slippage_defaults_to_50_bps() -> None:
    order = parse_order(encoded(without("slippageBps")))

    assert order.slippage_bps == 50


@pytest.mark.parametrize("slippage", [1, MAX_SLIPPAGE_BPS])
def test_slippage_at_either_bound_is_accepted(slippage: int) -> None:
    assert parse_order(encoded({**MARKET, "slippageBps": slippage})).slippage_bps == slippage


def _other_than(token: Token) -> str:
    return "SOL" if token.symbol != "SOL" else "USDC"


@pytest.mark.parametrize("token", TOKENS.values(), ids=lambda t: t.symbol)
def test_amount_at_exactly_the_token_decimals_is_accepted(token: Token) -> None:
    amount = f"1.{'0' * (token.decimals - 1)}1"
    order = {**MARKET, "tokenIn": token.symbol, "tokenOut": _other_than(token), "amountIn": amount}

    parsed = parse_order(encoded(order))

    assert parsed.amount_in == Decimal(amount)
    assert parsed.amount_in == 1 + token.unit


@pytest.mark.parametrize("token", TOKENS.values(), ids=lambda t: t.symbol)
def test_smallest_unit_of_each_token_is_accepted_and_anything_finer_is_not(token: Token) -> None:
    order = {**MARKET, "tokenIn": token.symbol, "tokenOut": _other_than(token)}

    assert parse_order(encoded({**order, "amountIn": str(token.unit)})).amount_in == token.unit
    finer = parse_invalid(encoded({**order, "amountIn": str(token.unit / 10)}))
    assert [r["message"] for r in reasons(finer)] == [
        f"more than {token.decimals} decimal places for {token.symbol}"
    ]


def test_decimal_limit_is_that_of_the_token_in_not_the_token_out() -> None:
    # USDC allows 6 decimals, SOL 9: the amount is of the token going in.
    order = parse_order(
        encoded({**MARKET, "tokenIn": "SOL", "tokenOut": "USDC", "amountIn": "0.000000001"})
    )

    assert order.amount_in == Decimal("0.000000001")


@pytest.mark.parametrize("token", TOKENS.values(), ids=lambda t: t.symbol)
def test_the_most_one_order_may_sell_is_accepted_and_one_unit_more_is_not(token: Token) -> None:
    order = {**MARKET, "tokenIn": token.symbol, "tokenOut": _other_than(token)}
    most = token.max_amount

    assert parse_order(encoded({**order, "amountIn": str(most)})).amount_in == most
    over = parse_invalid(encoded({**order, "amountIn": format(most + token.unit, "f")}))
    assert [(r["type"], r["message"]) for r in reasons(over)] == [
        (
            "amount_too_large",
            f"more than {format(most, 'f')} {token.symbol}, the most one order may sell",
        )
    ]


def test_the_largest_amounts_may_be_set_per_token() -> None:
    limits = {**default_max_amounts(), "SOL": Decimal("2")}

    assert parse_order(encoded({**MARKET, "amountIn": "2"}), limits).amount_in == 2
    over = parse_invalid(encoded({**MARKET, "amountIn": "2.000000001"}), limits)
    assert [r["message"] for r in reasons(over)] == ["more than 2 SOL, the most one order may sell"]


def test_a_29_digit_amount_finer_than_the_token_is_refused_not_rounded() -> None:
    # 28 digits is all a default Decimal context keeps: the check must not round first.
    amount = "1.0000000000000000000000000001"
    order = {**MARKET, "tokenIn": "USDC", "tokenOut": "SOL", "amountIn": amount}

    assert [r["field"] for r in reasons(parse_invalid(encoded(order)))] == ["amountIn"]


def test_an_amount_with_an_exponent_counts_its_decimals_exactly() -> None:
    assert parse_order(encoded({**MARKET, "amountIn": "15E-1"})).amount_in == Decimal("1.5")
    assert parse_order(encoded({**MARKET, "amountIn": "1E-9"})).amount_in == Decimal("1E-9")
    finer = parse_invalid(encoded({**MARKET, "amountIn": "1E-10"}))
    assert [r["message"] for r in reasons(finer)] == ["more than 9 decimal places for SOL"]


def test_an_unknown_type_is_quoted_back_no_longer_than_a_few_words() -> None:
    [reason] = reasons(parse_invalid(encoded({**MARKET, "type": "x" * 16_000})))

    assert reason["field"] == "type"
    assert len(reason["message"]) < 120
    assert reason["message"].startswith("unknown order type 'xxxx")


@pytest.mark.parametrize(
    ("given", "read"),
    [
        ("T00:00:00.123456001Z", "T00:00:00.123457+00:00"),
        ("T00:00:00.999999999+02:00", "T00:00:01+02:00"),
        ("T00:00:00.123456000Z", "T00:00:00.123456+00:00"),
        ("T00:00:00.123456Z", "T00:00:00.123456+00:00"),
        ("T00:00:00,123456789Z", "T00:00:00.123457+00:00"),
    ],
    ids=[
        "a nanosecond over",
        "into the next second",
        "zeros past the sixth digit",
        "microseconds",
        "a comma before the fraction",
    ],
)
def test_an_expiry_finer_than_a_microsecond_is_rounded_up_never_down(given: str, read: str) -> None:
    """A datetime holds microseconds; cut, the order could expire before the time asked."""
    day = (datetime.now(UTC) + timedelta(days=2)).date().isoformat()

    order = parse_order(encoded({**LIMIT, "expiresAt": day + given}), max_order_ttl_s=7 * 86400)

    assert order.expires_at == datetime.fromisoformat(day + read)

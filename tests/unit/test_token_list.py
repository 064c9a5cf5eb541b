"""A token list file: the tokens a live engine trades beyond the fixed ones."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from orderengine.tokens import TOKENS, read_token_list

WIF = {
    "symbol": "WIF",
    "mint": "EKpQGSJtjMFqKZ9KQanSqYXRcF8fBopzLHYxdM65zcjm",
    "decimals": 6,
    "usdPrice": "2.1",
    "maxAmount": "1000000",
}


def written(tmp_path: Path, entries: list[dict[str, Any]]) -> Path:
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps(entries))
    return path


def test_a_token_list_gives_each_token_its_mint_decimals_and_limits(tmp_path: Path) -> None:
    [wif] = read_token_list(written(tmp_path, [WIF]))

    assert (wif.symbol, wif.mint, wif.decimals) == ("WIF", WIF["mint"], 6)
    assert wif.usd_price == Decimal("2.1")
    assert wif.max_amount == Decimal(1_000_000)
    assert wif.unit == Decimal("0.000001")
    assert not wif.listed
    assert "WIF" not in TOKENS, "reading a list registers nothing"


def test_a_known_token_given_again_as_it_is_is_accepted(tmp_path: Path) -> None:
    usdc = TOKENS["USDC"]
    entry = {"symbol": "USDC", "mint": usdc.mint, "decimals": 6, "usdPrice": 1, "maxAmount": 5}

    [token] = read_token_list(written(tmp_path, [entry]))

    assert token.mint == usdc.mint


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"symbol": "USDC"}, "clashes"),
        ({"mint": TOKENS["SOL"].mint}, "clashes"),
    ],
    ids=["known-symbol-other-mint", "known-mint-other-symbol"],
)
def test_a_token_that_clashes_with_a_known_one_is_refused(
    tmp_path: Path, change: dict[str, Any], why: str
) -> None:
    with pytest.raises(ValueError, match=why):
        read_token_list(written(tmp_path, [WIF | change]))


@pytest.mark.parametrize(
    "change",
    [
        {"symbol": "wif!"},
        {"mint": "not-base58-0OIl"},
        {"mint": "So1111111111111111111111111111111"},
        {"decimals": 19},
        {"usdPrice": "0"},
        {"maxAmount": "-1"},
        {"maxAmount": "100000000000000000"},
        {"extra": True},
    ],
    ids=[
        "bad-symbol",
        "not-base58",
        "short-address",
        "too-many-decimals",
        "no-price",
        "negative-max",
        "over-u64",
        "unknown-field",
    ],
)
def test_a_bad_entry_is_refused(tmp_path: Path, change: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        read_token_list(written(tmp_path, [WIF | change]))

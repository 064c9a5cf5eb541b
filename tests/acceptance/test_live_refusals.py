"""`python -m orderengine` refuses to trade live without what live trading needs, and says why.

It names what is missing and never echoes a secret: the RPC URL's token stays out of its
output whatever it refuses.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orderengine.app import check_venues
from orderengine.repository import Repository
from tests.engine_process import refused_start

SECRET = "rpc-secret-token"
RPC_URL = f"https://rpc.example/{SECRET}?api-key={SECRET}"


async def refusal(database_url: str, **settings: object) -> str:
    """The output of a live engine started with `settings`, which must exit 1 on its own."""
    return await refused_start(database_url, {"venues": "live", **settings})


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"keypair": "/nowhere/keypair.json"}, ["ORDERENGINE_RPC_URL"]),
        ({"rpc_url": RPC_URL}, ["ORDERENGINE_KEYPAIR"]),
        ({}, ["ORDERENGINE_RPC_URL", "ORDERENGINE_KEYPAIR"]),
    ],
    ids=["no-rpc-url", "no-keypair", "neither"],
)
async def test_live_without_a_cluster_or_a_wallet_is_refused_by_name(
    database_url: str, settings: dict[str, object], named: list[str]
) -> None:
    output = await refusal(database_url, **settings)

    assert "invalid settings: ORDERENGINE_VENUES=live needs" in output
    assert all(name in output for name in named)
    assert SECRET not in output


async def test_live_with_a_keypair_file_that_is_not_there_is_refused(
    database_url: str, tmp_path: Path
) -> None:
    missing = tmp_path / "live-keypair.json"

    output = await refusal(database_url, rpc_url=RPC_URL, keypair=missing)

    assert f"no keypair file at {missing}" in output
    assert not missing.exists(), "a live engine never makes a wallet"
    assert SECRET not in output


async def test_live_on_a_database_of_simulated_orders_is_refused(
    database_url: str, tmp_path: Path
) -> None:
    """Its unfinished simulated orders would be sent to the cluster, with real funds."""
    repository = await Repository.connect(database_url, 2, 5.0)
    try:
        await check_venues(repository.shared, "simulated")  # as a simulated engine did before
    finally:
        await repository.close()

    output = await refusal(database_url, rpc_url=RPC_URL, keypair=tmp_path / "kp.json")

    assert "this database holds orders for simulated venues" in output
    assert "ORDERENGINE_VENUES" in output
    assert SECRET not in output

"""Live venues trade real funds: they start only with a cluster and a wallet named outright.

`Settings` reads `ORDERENGINE_*` variables; conftest removed any the shell exported, and
each test sets its own with monkeypatch, which restores the environment after it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from solders.keypair import Keypair

from orderengine.__main__ import manage_keys, settings_or_exit
from orderengine.settings import Settings
from orderengine.wallet import InvalidKeypair, load_keypair

RPC_URL = "https://rpc.example.com/secret-token?api-key=SECRET"


def refusal(**values: Any) -> str:
    with pytest.raises(ValidationError) as raised:
        Settings(**values)
    return str(raised.value)


def test_live_without_an_rpc_url_names_it() -> None:
    message = refusal(venues="live", keypair=Path("/wallets/engine.json"))

    assert "ORDERENGINE_RPC_URL" in message
    assert "ORDERENGINE_KEYPAIR" not in message


def test_live_without_a_keypair_named_names_it() -> None:
    message = refusal(venues="live", rpc_url=RPC_URL)

    assert "ORDERENGINE_KEYPAIR" in message
    assert "ORDERENGINE_RPC_URL" not in message


def test_live_with_the_default_keypair_path_named_outright_is_accepted() -> None:
    settings = Settings(venues="live", rpc_url=RPC_URL, keypair=Path(".data/keypair.json"))

    assert settings.keypair == Path(".data/keypair.json")


def test_live_without_either_names_both() -> None:
    message = refusal(venues="live")

    assert "ORDERENGINE_RPC_URL" in message
    assert "ORDERENGINE_KEYPAIR" in message


def test_live_with_both_from_the_environment_is_accepted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ORDERENGINE_VENUES", "live")
    monkeypatch.setenv("ORDERENGINE_RPC_URL", RPC_URL)
    monkeypatch.setenv("ORDERENGINE_KEYPAIR", "/wallets/engine.json")

    settings = Settings()

    assert settings.venues == "live"
    assert settings.keypair == Path("/wallets/engine.json")
    assert settings.rpc_url is not None
    assert settings.rpc_url.get_secret_value() == RPC_URL
    assert "secret-token" not in repr(settings)


def test_simulated_venues_need_neither() -> None:
    settings = Settings(venues="simulated")

    assert settings.rpc_url is None
    assert settings.keypair == Path(".data/keypair.json")
    assert Settings().venues == "simulated"


def test_a_live_engine_without_a_keypair_exits_naming_it_but_not_the_rpc_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ORDERENGINE_VENUES", "live")
    monkeypatch.setenv("ORDERENGINE_RPC_URL", "https://x/secret-token")

    with pytest.raises(SystemExit) as exited:
        settings_or_exit()

    message = exited.value.code
    assert isinstance(message, str)
    assert message.startswith("invalid settings: ")
    assert "ORDERENGINE_KEYPAIR" in message
    assert "ORDERENGINE_RPC_URL" not in message
    assert "secret-token" not in message


def test_a_bad_setting_exits_naming_it_without_its_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ORDERENGINE_PORT", "secret-token")

    with pytest.raises(SystemExit) as exited:
        settings_or_exit()

    message = exited.value.code
    assert isinstance(message, str)
    assert "ORDERENGINE_PORT:" in message
    assert "secret-token" not in message


def test_a_live_engine_with_its_settings_gets_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDERENGINE_VENUES", "live")
    monkeypatch.setenv("ORDERENGINE_RPC_URL", "https://x/secret-token")
    monkeypatch.setenv("ORDERENGINE_KEYPAIR", "/wallets/engine.json")

    assert settings_or_exit().venues == "live"


async def test_the_keys_command_exits_on_bad_settings_without_echoing_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A ValidationError's own text quotes the input, RPC URL included: it must not escape.
    monkeypatch.setenv("ORDERENGINE_VENUES", "live")
    monkeypatch.setenv("ORDERENGINE_RPC_URL", "https://x/secret-token")

    with pytest.raises(SystemExit) as exited:
        await manage_keys("list", None)

    message = exited.value.code
    assert isinstance(message, str)
    assert "ORDERENGINE_KEYPAIR" in message
    assert "secret-token" not in message


def test_a_missing_keypair_file_is_refused_not_created(tmp_path: Path) -> None:
    path = tmp_path / "wallet" / "keypair.json"

    with pytest.raises(InvalidKeypair, match="no keypair file"):
        load_keypair(path)

    assert not path.parent.exists()


def test_a_solana_cli_keypair_file_is_loaded(tmp_path: Path) -> None:
    keypair = Keypair.from_seed(bytes(range(32)))
    path = tmp_path / "id.json"
    path.write_text(json.dumps(list(bytes(keypair))))

    loaded = load_keypair(path)

    assert loaded == keypair
    assert loaded.pubkey() == keypair.pubkey()


def test_a_file_that_is_not_a_keypair_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "id.json"
    path.write_text(json.dumps([1, 2, 3]))

    with pytest.raises(InvalidKeypair, match="not a Solana keypair file"):
        load_keypair(path)

    assert json.loads(path.read_text()) == [1, 2, 3]

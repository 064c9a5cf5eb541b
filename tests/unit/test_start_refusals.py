"""A start that cannot go on ends with a sentence naming the cause, never a traceback.

Settings that cannot be parsed, paths the engine cannot use, and a database out of reach for
the keys command. `Settings` reads `ORDERENGINE_*` variables; conftest removed any the shell
exported, and each test sets its own with monkeypatch, which restores the environment after.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orderengine.__main__ import manage_keys, run, settings_or_exit
from orderengine.settings import Settings
from tests.engine_process import free_port


def exit_message(raised: pytest.ExceptionInfo[SystemExit]) -> str:
    message = raised.value.code
    assert isinstance(message, str), "the exit says why, rather than a bare status"
    return message


def settings_refusal(monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> str:
    """Why the settings are refused with `variable` set to `value`."""
    monkeypatch.setenv(variable, value)
    with pytest.raises(SystemExit) as exited:
        settings_or_exit()
    return exit_message(exited)


def test_a_json_setting_that_is_not_json_is_named_without_its_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    message = settings_refusal(monkeypatch, "ORDERENGINE_ALLOWED_ORIGINS", "https://secret.example")

    assert message.startswith("invalid settings: ORDERENGINE_ALLOWED_ORIGINS: not valid JSON")
    assert "secret" not in message


def test_a_database_url_set_but_blank_is_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDERENGINE_DATABASE_URL", " ")

    assert Settings().database_url is None


def test_a_keys_file_that_is_not_there_is_named(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    message = settings_refusal(monkeypatch, "ORDERENGINE_API_KEYS_FILE", str(tmp_path / "keys"))

    assert f"ORDERENGINE_API_KEYS_FILE: {tmp_path / 'keys'} is not a file" in message


def test_more_workers_than_an_engine_can_hold_are_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    message = settings_refusal(monkeypatch, "ORDERENGINE_CONCURRENCY", "100000000")

    assert "ORDERENGINE_CONCURRENCY: Input should be less than or equal to 10000" in message


def test_a_data_directory_the_embedded_server_cannot_use_is_named(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("ORDERENGINE_DATA_DIR", str(tmp_path / "a-file" / "postgres"))

    with pytest.raises(SystemExit) as exited:
        run()

    assert exit_message(exited).startswith(
        f"the embedded PostgreSQL cannot use ORDERENGINE_DATA_DIR={tmp_path / 'a-file'}/postgres: "
    )


async def test_the_keys_command_says_when_the_database_is_out_of_reach(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        "ORDERENGINE_DATABASE_URL",
        f"postgresql://postgres:secret-password@127.0.0.1:{free_port()}/orders",
    )
    monkeypatch.setenv("ORDERENGINE_DB_TIMEOUT_S", "2")

    with pytest.raises(SystemExit) as exited:
        await manage_keys("list", None)

    message = exit_message(exited)
    assert message.startswith("the database could not be reached at start (")
    assert "secret-password" not in message

"""Engine settings exported in a shell reach neither the tests nor the engines they start."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.engine_process import engine_environment
from tests.harness import is_engine_setting

ROOT = Path(__file__).resolve().parents[2]
REPORT_ENGINE_SETTINGS = (
    "import json, os, tests.conftest\n"
    "print(json.dumps(sorted(n for n in os.environ if n.endswith('DATABASE_URL')"
    " or n.startswith('ORDERENGINE_'))))"
)


def test_this_session_has_no_engine_setting() -> None:
    assert [name for name in os.environ if is_engine_setting(name)] == []


def test_importing_conftest_removes_exported_settings_but_not_the_test_database() -> None:
    exported = {
        **os.environ,
        "ORDERENGINE_PORT": "1",
        "ORDERENGINE_DATABASE_URL": "postgresql://nowhere/engine",
        "DATABASE_URL": "postgresql://nowhere/any",
        "TEST_DATABASE_URL": "postgresql://somewhere/tests",
    }
    result = subprocess.run(
        [sys.executable, "-c", REPORT_ENGINE_SETTINGS],
        env=exported,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(result.stdout) == ["TEST_DATABASE_URL"]


def test_an_engine_process_gets_only_the_settings_it_is_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ORDERENGINE_FAILURE_RATE", "0.9")
    monkeypatch.setenv("DATABASE_URL", "postgresql://nowhere/any")
    env = engine_environment("postgresql://here/db", 8123, {"seed": 3, "concurrency": None})
    assert {name: value for name, value in env.items() if is_engine_setting(name)} == {
        "ORDERENGINE_DATABASE_URL": "postgresql://here/db",
        "ORDERENGINE_HOST": "127.0.0.1",
        "ORDERENGINE_PORT": "8123",
        "ORDERENGINE_SEED": "3",
        "ORDERENGINE_LOG_FORMAT": "json",
        "ORDERENGINE_RATE_PER_MINUTE": "600000",
        "ORDERENGINE_RATE_BURST": "1000",
    }


def test_an_engine_on_a_data_directory_starts_the_embedded_server(tmp_path: Path) -> None:
    env = engine_environment(tmp_path / "postgres", 8123, {})
    assert env["ORDERENGINE_DATA_DIR"] == str(tmp_path / "postgres")
    assert "ORDERENGINE_DATABASE_URL" not in env

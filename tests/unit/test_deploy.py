"""The files of deploy/: they parse, agree with each other, and name only real settings.

The unit and the nginx site are checked by `systemd-analyze verify` and `nginx -t` where
those tools are installed and work (the tests skip otherwise), and read here as well: the
unit's keys, the address and timeouts of the site, and the environment file as systemd and
sh both read it.
"""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest

from orderengine.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
UNIT = DEPLOY / "orderengine.service"
ENVIRONMENT = DEPLOY / "orderengine.env.example"
SITE = DEPLOY / "nginx-orderengine.conf"
README_SECTION = "On one small VM"
"""The README's section on deploying, which points to deploy/README.md."""
INSTALL_DIR = "/opt/orderengine"
STATE_DIR = PurePosixPath("/var/lib/orderengine")
STOP_ROOM_S = 10.0
"""What the unit allows past the grace: closing the sockets, stopping the embedded server."""
SETTING = re.compile(r"\bORDERENGINE_[A-Z0-9_]+")
DURATION = re.compile(r"(\d+)\s*(ms|s|sec|m|min|h)?\s*")
SECONDS = {"ms": 0.001, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}
TOOL_LIMIT_S = 30.0


class UnitFile(configparser.ConfigParser):
    """A systemd unit read as an INI file, its keys' case kept."""

    def __init__(self, text: str) -> None:
        super().__init__(interpolation=None, comment_prefixes=("#", ";"))
        self.read_string(text)

    def optionxform(self, optionstr: str) -> str:
        return optionstr


def service() -> configparser.SectionProxy:
    return UnitFile(UNIT.read_text())["Service"]


def environment_file() -> dict[str, str]:
    """The file's settings as systemd reads them: `NAME=value` lines, `#` comments."""
    lines = ENVIRONMENT.read_text().splitlines()
    pairs = (line.partition("=") for line in lines if line.strip() and not line.startswith("#"))
    return {name: value for name, _, value in pairs}


def seconds(duration: str) -> float:
    """A systemd or nginx duration (`30s`, `1min 30s`, `1h`; a bare number is seconds)."""
    assert DURATION.fullmatch(duration.strip()), duration
    return sum(
        int(number) * SECONDS[unit or "s"] for number, unit in DURATION.findall(duration.strip())
    )


def directive(name: str) -> list[str]:
    """The values of every `name value;` line of the nginx site, comments left out."""
    lines = (line.partition("#")[0].strip() for line in SITE.read_text().splitlines())
    return [
        line[len(name) : -1].strip()
        for line in lines
        if line.startswith(f"{name} ") and line.endswith(";")
    ]


def readme_section() -> str | None:
    """The README's deploy section, up to the next heading as high as its own; None if absent."""
    heading = re.compile(rf"^(#+) {re.escape(README_SECTION)}\s*$", re.MULTILINE)
    text = (ROOT / "README.md").read_text()
    found = heading.search(text)
    if found is None:
        return None
    rest = text[found.end() :]
    following = re.search(rf"^#{{1,{len(found.group(1))}}} ", rest, re.MULTILINE)
    return rest[: following.start()] if following else rest


def test_the_unit_runs_the_engine_from_its_virtualenv_with_its_settings() -> None:
    unit = service()

    assert unit["ExecStart"] == f"{INSTALL_DIR}/.venv/bin/python -m orderengine"
    assert unit["WorkingDirectory"] == INSTALL_DIR
    assert unit["EnvironmentFile"] == "/etc/orderengine/orderengine.env"
    assert unit["User"] == "orderengine"
    assert unit["Restart"] == "on-failure"
    assert unit["KillSignal"] == "SIGTERM"
    assert unit["KillMode"] == "mixed"


def test_the_unit_is_hardened_and_writes_only_its_state_directory() -> None:
    unit = service()
    settings = environment_file()

    assert unit["NoNewPrivileges"] == "yes"
    assert unit["ProtectSystem"] == "strict"
    assert unit["PrivateTmp"] == "yes"
    assert unit["ProtectHome"] == "yes"
    assert unit["CapabilityBoundingSet"] == ""
    assert PurePosixPath("/var/lib", unit["StateDirectory"]) == STATE_DIR
    for name in ("ORDERENGINE_DATA_DIR", "ORDERENGINE_KEYPAIR"):
        assert PurePosixPath(settings[name]).is_relative_to(STATE_DIR), name


def test_the_unit_waits_for_the_engine_to_drain_before_killing_it() -> None:
    grace = float(environment_file()["ORDERENGINE_SHUTDOWN_GRACE_S"])
    default_grace = Settings.model_fields["shutdown_grace_s"].default

    assert seconds(service()["TimeoutStopSec"]) >= max(grace, default_grace) + STOP_ROOM_S


def test_the_environment_file_gives_valid_settings_for_a_site_behind_nginx(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in environment_file().items():
        monkeypatch.setenv(name, value)

    settings = Settings()

    assert settings.host == "127.0.0.1"
    assert settings.log_format == "json"
    assert settings.database_url is not None
    assert settings.database_url.startswith("postgresql://orderengine@/orderengine?")
    assert settings.database_url.endswith("?host=/run/postgresql")
    assert settings.data_dir.is_absolute()
    assert settings.keypair.is_absolute()
    assert settings.api_keys_file is None


def test_sh_reads_the_environment_file_as_systemd_does() -> None:
    """The `keys` command of deploy/README.md sources the file that systemd reads."""
    result = subprocess.run(
        ["sh", "-c", 'set -a && . "$1" && exec env', "sh", str(ENVIRONMENT)],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
        timeout=TOOL_LIMIT_S,
    )
    pairs = (line.partition("=") for line in result.stdout.splitlines())
    exported = {name: value for name, _, value in pairs}
    settings = environment_file()

    assert settings
    assert {name: exported.get(name) for name in settings} == settings


def test_the_site_proxies_to_the_engines_address_and_keeps_its_sockets_open() -> None:
    settings = environment_file()
    heartbeat_s = Settings.model_fields["ws_heartbeat_s"].default
    engine_keepalive_s = Settings.model_fields["keepalive_timeout_s"].default

    assert directive("server") == [f"{settings['ORDERENGINE_HOST']}:{settings['ORDERENGINE_PORT']}"]
    assert directive("proxy_pass") == ["http://orderengine"]
    assert directive("proxy_http_version") == ["1.1"]
    assert "Upgrade $http_upgrade" in directive("proxy_set_header")
    assert "Connection $connection_upgrade" in directive("proxy_set_header")
    assert "Host $http_host" in directive("proxy_set_header")
    assert seconds(directive("proxy_read_timeout")[0]) > 10 * heartbeat_s
    assert seconds(directive("proxy_send_timeout")[0]) > 10 * heartbeat_s
    assert seconds(directive("keepalive_timeout")[0]) < engine_keepalive_s


def test_the_site_serves_tls_and_sends_http_there() -> None:
    assert directive("listen") == ["80", "[::]:80", "443 ssl", "[::]:443 ssl"]
    assert directive("return") == ["301 https://$host$request_uri"]
    for name in ("ssl_certificate", "ssl_certificate_key"):
        (path,) = directive(name)
        assert path.startswith("/etc/letsencrypt/live/"), path


@pytest.mark.parametrize("path", sorted(DEPLOY.iterdir()), ids=lambda path: path.name)
def test_every_setting_a_deploy_file_names_exists(path: Path) -> None:
    names = set(SETTING.findall(path.read_text()))

    assert {name for name in names if not is_setting(name)} == set()


def test_every_setting_the_readmes_deploy_section_names_exists() -> None:
    section = readme_section()
    if section is None:
        pytest.skip(f"README.md has no section {README_SECTION!r}")

    names = set(SETTING.findall(section))

    assert {name for name in names if not is_setting(name)} == set()


def is_setting(name: str) -> bool:
    return name.removeprefix("ORDERENGINE_").lower() in Settings.model_fields


def systemd_analyze_works(directory: Path) -> bool:
    """Whether `systemd-analyze verify` runs here, on a unit that is surely valid."""
    if shutil.which("systemd-analyze") is None:
        return False
    probe = directory / "probe.service"
    probe.write_text(f"[Service]\nExecStart={sys.executable} -c pass\n")
    return verify(probe).returncode == 0


def verify(unit: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", "verify", str(unit)],
        capture_output=True,
        text=True,
        check=False,
        timeout=TOOL_LIMIT_S,
    )


def test_systemd_analyze_verifies_the_unit(tmp_path: Path) -> None:
    """The unit as installed, only the install directory moved to one where Python is.

    verify wants the ExecStart program to exist. A copy with a bad value shows that its
    complaints, which it prints without failing, are seen.
    """
    if not systemd_analyze_works(tmp_path):
        pytest.skip("systemd-analyze is not installed or cannot verify units here")
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.symlink_to(sys.executable)
    text = UNIT.read_text().replace(INSTALL_DIR, str(tmp_path))
    (tmp_path / "good").mkdir()
    (tmp_path / "bad").mkdir()
    good = tmp_path / "good" / UNIT.name
    bad = tmp_path / "bad" / UNIT.name
    good.write_text(text)
    bad.write_text(text.replace("KillMode=mixed", "KillMode=mixd"))

    verified = verify(good)
    refused = verify(bad)

    assert verified.returncode == 0, verified.stderr
    assert [line for line in verified.stderr.splitlines() if UNIT.name in line] == []
    assert [line for line in refused.stderr.splitlines() if UNIT.name in line] != []


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    certificate, key = directory / "fullchain.pem", directory / "privkey.pem"
    request = "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=orders.example.com"
    subprocess.run(
        [*request.split(), "-keyout", str(key), "-out", str(certificate)],
        capture_output=True,
        check=True,
        timeout=TOOL_LIMIT_S,
    )
    return certificate, key


@pytest.mark.skipif(
    shutil.which("nginx") is None or shutil.which("openssl") is None,
    reason="checking the site needs nginx and openssl, which are not installed",
)
def test_nginx_accepts_the_site(tmp_path: Path) -> None:
    """The site inside the smallest nginx.conf, with a certificate of the test's own."""
    certificate, key = self_signed_certificate(tmp_path)
    site = tmp_path / "orderengine.conf"
    site.write_text(
        SITE.read_text()
        .replace("/etc/letsencrypt/live/orders.example.com/fullchain.pem", str(certificate))
        .replace("/etc/letsencrypt/live/orders.example.com/privkey.pem", str(key))
    )
    temporary = "\n".join(
        f"    {kind}_temp_path {tmp_path / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    configuration = tmp_path / "nginx.conf"
    configuration.write_text(
        f"pid {tmp_path / 'nginx.pid'};\nevents {{}}\n"
        f"http {{\n    access_log off;\n{temporary}\n    include {site};\n}}\n"
    )

    checked = subprocess.run(
        ["nginx", "-t", "-q", "-e", "stderr", "-p", str(tmp_path), "-c", str(configuration)],
        capture_output=True,
        text=True,
        check=False,
        timeout=TOOL_LIMIT_S,
    )

    assert checked.returncode == 0, checked.stderr

"""Every knob of the engine, read from `ORDERENGINE_*` environment variables."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from orderengine.tokens import MaxAmounts, default_max_amounts
from orderengine.venues.values import Dex

JUPITER_LABELS: dict[Dex, str] = {"raydium": "Raydium", "meteora": "Meteora DLMM"}
"""What Jupiter's quote API calls each venue (its `dexes` parameter)."""


class Settings(BaseSettings):
    """Configuration; each field is documented in the README's settings table."""

    model_config = SettingsConfigDict(env_prefix="ORDERENGINE_", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("ORDERENGINE_DATABASE_URL", "DATABASE_URL"),
    )
    data_dir: Path = Path(".data/postgres")
    db_pool_size: int = Field(default=20, ge=2)
    db_timeout_s: float = Field(default=5.0, gt=0)

    concurrency: int = Field(default=10, ge=1, le=10_000)
    queue_limit: int = Field(default=1000, ge=1)
    intake_batch: int = Field(default=100, ge=1)
    rate_per_minute: float = Field(default=100, gt=0)
    rate_burst: int = Field(default=10, ge=1)
    max_attempts: int = Field(default=3, ge=1)
    retry_base_ms: int = Field(default=500, ge=0)
    retry_cap_ms: int = Field(default=10_000, ge=0)
    quote_timeout_s: float = Field(default=1.0, gt=0)
    shutdown_grace_s: float = Field(default=10.0, ge=0)

    sweep_s: float = Field(default=10.0, gt=0)
    lease_s: float = Field(default=10.0, gt=0)
    keypair: Path = Path(".data/keypair.json")
    blockhash_ttl_s: float = Field(default=60.0, ge=0)

    venues: Literal["simulated", "live"] = "simulated"
    token_list: Path | None = None
    rpc_url: SecretStr | None = None
    jupiter_url: str = "https://lite-api.jup.ag/swap/v1"
    jupiter_api_key: SecretStr | None = None
    jupiter_dexes: dict[Dex, str] = Field(default_factory=lambda: dict(JUPITER_LABELS))
    priority_fee_microlamports: int | None = Field(default=None, ge=0)
    priority_fee_max_lamports: int = Field(default=1_000_000, ge=0)
    live_poll_ms: float = Field(default=500, gt=0)
    live_timeout_s: float = Field(default=10.0, gt=0)
    live_requests_per_s: float = Field(default=10.0, gt=0)
    live_retries: int = Field(default=3, ge=0)

    order_ttl_s: float = Field(default=86_400, gt=0)
    max_order_ttl_s: float = Field(default=7 * 86_400, gt=0)
    price_poll_ms: float = Field(default=1_000, gt=0)
    price_event_bps: float = Field(default=50, ge=0)
    sniper_window_ms: float = Field(default=200, gt=0)
    demo_listing_s: float | None = Field(default=None, gt=0)

    pool_recovery_half_life_s: float = Field(default=30.0, ge=0)
    pool_sync_ms: float = Field(default=200, ge=0)
    latency_scale: float = Field(default=1.0, ge=0)
    failure_rate: float = Field(default=0.05, ge=0, le=1)
    price_volatility_bps: float = Field(default=5, ge=0)
    seed: int | None = None

    max_body_bytes: int = Field(default=16_384, ge=256)
    request_timeout_s: float = Field(default=10.0, gt=0)
    keepalive_timeout_s: float = Field(default=5.0, gt=0)
    max_connections: int | None = Field(default=None, ge=1)
    allowed_origins: tuple[str, ...] = ()
    max_amounts: MaxAmounts = Field(default_factory=default_max_amounts)
    max_price_impact_pct: Decimal = Field(default=Decimal(5), gt=0, le=100)
    ws_heartbeat_s: float = Field(default=20.0, gt=0)
    ws_buffer: int = Field(default=256, ge=8)
    ws_first_message_timeout_s: float = Field(default=10.0, gt=0)
    ws_idle_check_s: float = Field(default=5.0, gt=0)
    listen_reconnect_s: float = Field(default=1.0, gt=0)
    listen_check_s: float = Field(default=10.0, gt=0)

    api_keys: Annotated[dict[str, SecretStr], NoDecode] = Field(default_factory=dict)
    api_keys_file: Path | None = None
    admin_keys: Annotated[tuple[str, ...], NoDecode] = ()
    allow_anonymous: bool = False
    key_submit_per_minute: float = Field(default=600, gt=0)
    key_max_sockets: int = Field(default=256, ge=1)
    cors_origins: Annotated[tuple[str, ...], NoDecode] = ()
    stream_token_ttl_s: float = Field(default=3600, gt=0)

    log_format: Literal["json", "console"] = "console"
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @field_validator("database_url", mode="before")
    @classmethod
    def blank_is_unset(cls, value: object) -> object:
        """`ORDERENGINE_DATABASE_URL=` (set, but empty, as env files often leave it) is unset."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("api_keys_file")
    @classmethod
    def a_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"{value} is not a file")
        return value

    @field_validator("api_keys", mode="before")
    @classmethod
    def owner_key_pairs(cls, value: object) -> object:
        """`alice:KEY1,bob:KEY2`, as `ORDERENGINE_API_KEYS` gives them."""
        return parse_owner_keys(value.split(",")) if isinstance(value, str) else value

    @field_validator("admin_keys", "cors_origins", mode="before")
    @classmethod
    def comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(item.strip() for item in value.split(",") if item.strip())
        return value

    @model_validator(mode="after")
    def live_needs_a_cluster_and_a_wallet(self) -> Settings:
        """Live venues trade real funds: they need an endpoint and a keypair named outright."""
        if self.venues != "live":
            return self
        missing = []
        if self.rpc_url is None:
            missing.append("ORDERENGINE_RPC_URL (a Solana JSON-RPC endpoint)")
        if "keypair" not in self.model_fields_set:
            missing.append("ORDERENGINE_KEYPAIR (a Solana CLI keypair file)")
        if missing:
            raise ValueError(f"ORDERENGINE_VENUES=live needs {' and '.join(missing)}")
        return self

    def configured_keys(self) -> dict[str, str]:
        """Every key the settings give, by owner: `api_keys`, then the file's lines."""
        keys = {owner: key.get_secret_value() for owner, key in self.api_keys.items()}
        if self.api_keys_file is not None:
            lines = self.api_keys_file.read_text().splitlines()
            keys |= parse_owner_keys(line for line in lines if not line.startswith("#"))
        return keys


MIN_KEY_LENGTH = 16


def parse_owner_keys(items: Iterable[str]) -> dict[str, str]:
    """`owner:key` items (blank ones skipped) as a mapping; ValueError naming a bad one.

    A key is at least `MIN_KEY_LENGTH` characters and is never echoed; an owner has one key.
    """
    keys: dict[str, str] = {}
    for number, item in enumerate(items, start=1):
        if not item.strip():
            continue
        owner, colon, key = item.strip().partition(":")
        if not colon or not owner or len(key) < MIN_KEY_LENGTH:
            raise ValueError(
                f"key {number} is not owner:key with a key of {MIN_KEY_LENGTH} characters or more"
            )
        if owner in keys:
            raise ValueError(f"owner {owner!r} is given more than one key")
        keys[owner] = key
    return keys

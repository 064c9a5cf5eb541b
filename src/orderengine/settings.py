"""Every knob of the engine, read from `ORDERENGINE_*` environment variables."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from orderengine.tokens import MaxAmounts, default_max_amounts


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

    concurrency: int = Field(default=10, ge=1)
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

    order_ttl_s: float = Field(default=86_400, gt=0)
    max_order_ttl_s: float = Field(default=7 * 86_400, gt=0)
    price_poll_ms: float = Field(default=1_000, gt=0)
    price_event_bps: float = Field(default=50, ge=0)
    sniper_window_ms: float = Field(default=200, gt=0)
    demo_listing_s: float | None = Field(default=None, gt=0)

    pool_recovery_half_life_s: float = Field(default=30.0, ge=0)
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

    log_format: Literal["json", "console"] = "console"
    log_level: Literal["debug", "info", "warning", "error"] = "info"

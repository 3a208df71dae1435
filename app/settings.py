"""Settings: one object, read from the environment and an optional `.env`."""

from __future__ import annotations

from functools import cached_property
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIN_RETAIN_MONTHS = 14  # SPEC section 9: the API's horizon (400 days) fits in any 14 months


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    database_url: str = Field(
        "sqlite+aiosqlite:///./var/chiso.db",
        description="SQLAlchemy URL; sqlite+aiosqlite (embedded default) or postgresql+asyncpg.",
    )
    timezone: str = Field("Asia/Ho_Chi_Minh", description="Local time zone of days, weeks, months.")
    public_read: bool = Field(False, description="Serve read endpoints without a key.")
    node_id: str = Field("local", description="This node's id in the central assessment network.")
    skew_seconds: int = Field(300, description="How far in the future occurred_at may lie.")
    horizon_days: int = Field(400, description="How far in the past occurred_at may lie.")
    max_batch_events: int = Field(5000, description="Most events in one ingest request.")
    max_body_bytes: int = Field(5 * 1024 * 1024, description="Largest ingest request body.")
    ingest_group_events: int = Field(
        5000,
        ge=0,
        description="Most events of the ingest requests one worker stores together in one write pass when they arrive "
        "while its passes are busy (group commit); 0: each request alone.",
    )
    key_cache_seconds: float = Field(
        10.0,
        ge=0,
        description="How long a worker trusts an API key it found valid without looking it up again: a key revoked "
        "from the CLI is refused everywhere within this; 0: every request looks its key up.",
    )
    ingest_rate_per_minute: int = Field(600, description="Ingest requests per minute allowed per key (per worker); 0 disables.")
    retry_after_seconds: int = Field(5, description="Retry-After sent with 429 and 503.")
    seed_registry: bool = Field(True, description="Seed the unit registry on start when empty.")
    migrate_on_start: bool = Field(True, description="Run migrations to head when the service starts.")
    metrics_communes: bool = Field(False, description="Export KPI gauges per commune too.")
    export_interval: float = Field(60.0, description="Seconds between export pushes.")
    central_url: str | None = Field(None, description="Where this node pushes its snapshots.")
    export_secret: SecretStr | None = Field(None, description="HMAC secret for pushed snapshots.")
    export_produce_share: float = Field(
        0.25, description="Share of each export interval the exporter may spend recomputing records (min 1 s)."
    )
    export_enabled: bool = Field(True, description="Run the exporter loop (records for pull and push).")
    export_batch_records: int = Field(500, description="Most records in one pushed snapshot.")
    export_backoff_max: float = Field(300.0, description="Cap of the push retry backoff, seconds.")
    subordinates: dict[str, SecretStr] = Field(
        default_factory=dict,
        description='Central mode: subordinate node_id -> secret, as JSON, e.g. {"hue": "secret1"}.',
    )
    answer_cache_seconds: float = Field(
        0.3,
        description="How long a worker may serve its copy of a shared KPI answer without looking it up; "
        "0: every answer is looked up, and never served across a change (read-your-writes).",
    )
    answer_refresh_seconds: float = Field(
        0.2,
        ge=0,
        description="Seconds between two ticks of the answer refresher (one process per deployment keeps polled KPI "
        "answers fresh); 0: no refresher, answers are then made once on demand.",
    )
    answer_refresh_concurrency: int = Field(
        4,
        ge=1,
        le=16,
        description="Answers the refresher computes at once (on PostgreSQL over this many connections of its own, and two).",
    )
    db_pool_size: int = Field(10, description="PostgreSQL connection pool size per worker.")
    db_upkeep: Literal["auto", "off"] = Field(
        "auto",
        description="auto: where the PostgreSQL server's autovacuum is off, one process of the deployment analyses "
        "(and vacuums) the service's tables as autovacuum would (app.db.upkeep); off: leave it to the operator.",
    )
    download_max_rows: int = Field(
        100_000, ge=1, description="Most rows of a CSV or XLSX download; a request for more is a 422 asking to narrow it."
    )
    silent_after_hours: float = Field(
        48.0,
        gt=0,
        description="A unit whose last accepted event was accepted more than this many hours ago (fractions allowed) "
        "is silent, if its events are dated on at least 3 of the 14 local days up to that acceptance.",
    )
    db_connect_timeout: float = Field(5.0, description="Seconds to open a PostgreSQL connection before answering 503.")
    db_pool_timeout: float = Field(10.0, description="Seconds a request waits for a pooled connection before answering 503.")
    db_statement_timeout: float = Field(
        30.0,
        ge=0,
        description="Seconds one PostgreSQL statement of the service (API reads, ingest, the answers it serves) may run "
        "before the server cancels it (then 503 with Retry-After); 0 disables. The CLI's long jobs (import, "
        "`kpis verify`, retention) and the exporter's process run without one.",
    )
    body_read_timeout: float = Field(30.0, description="Seconds a request may take to send its whole body (then 408); 0 disables.")
    export_push_timeout: float = Field(30.0, description="Seconds a push to the central node may take before it counts as failed.")
    retain_events_months: int | None = Field(
        None,
        description="Months of the raw event log kept besides the current one (local months of occurred_at); older "
        "months are archived to ARCHIVE_DIR and dropped by `chiso retention run`. Unset: keep everything. "
        f"Less than {MIN_RETAIN_MONTHS} (the API's horizon) is refused.",
    )
    archive_dir: str = Field("./var/archive", description="Where `chiso retention run` writes one gzip NDJSON file per month.")

    @model_validator(mode="after")
    def _retention_covers_the_horizon(self) -> Settings:
        """An archived month must be out of the API's reach: no event posted later may belong to it."""
        n = self.retain_events_months
        if n is not None and (n < MIN_RETAIN_MONTHS or 30 * n - 2 < self.horizon_days):
            raise ValueError(
                f"RETAIN_EVENTS_MONTHS={n} is refused: it must be at least {MIN_RETAIN_MONTHS} and cover "
                f"HORIZON_DAYS={self.horizon_days} (any {n} months last at least {30 * n - 2} days)"
            )
        return self

    @cached_property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

"""Configuration of the finance monitor, read from ``FIN_*`` environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import SettingsConfigDict

from finance_sentiment import netguard
from textcore.settings import ServiceSettings

MAX_RETENTION_DAYS = 36_500  # a century: longer is "forever", which is the default


class FetchSettings(BaseModel):
    """How politely and safely sources are read (``FIN_FETCH__<FIELD>``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    user_agent: str = Field("finance-sentiment/0.1", max_length=200, description="Sent with every request.")
    timeout_s: float = Field(20.0, gt=0, le=600, description="Deadline for one request, body included.")
    deadline_s: float = Field(
        45.0,
        gt=0,
        le=3600,
        description="Deadline for one fetch: all its tries, backoff and Retry-After waits together (not "
        "waits for the host's turn). A try gets at most what is left; a Retry-After ending past it is not "
        "waited for. The default lets a manual run answer within a 60 s proxy timeout.",
    )
    max_response_bytes: int = Field(5_000_000, ge=1024, description="Larger responses are refused.")
    max_redirects: int = Field(5, ge=0, le=20)
    max_retries: int = Field(3, ge=0, le=10, description="Retries on 429, 5xx and transport errors.")
    backoff_base_s: float = Field(0.5, ge=0, le=60, description="First retry delay; doubles each retry.")
    max_retry_after_s: float = Field(
        300.0,
        ge=0,
        le=86_400,
        description="Longest Retry-After (of a 429 or 503) waited for; a longer one fails the fetch, which "
        "is tried again at the source's next run. A wait also ends within deadline_s.",
    )
    min_host_interval_s: float = Field(1.0, ge=0, le=3600, description="Least gap between hits on a host.")
    respect_robots: bool = Field(True, description="Honour robots.txt (turn off only for your own sites).")
    robots_ttl_s: float = Field(
        3600.0,
        ge=1,
        le=86_400,
        description="How long a site's robots.txt is kept before it is read again (RFC 9309 asks for at "
        "most a day); an unreachable robots.txt disallows the site this long.",
    )
    allowed_networks: tuple[str, ...] = Field(
        (),
        description="CIDRs of private, loopback or link-local addresses that sources may resolve to, "
        'e.g. ["127.0.0.0/8"]; every other non-public address is refused (SSRF guard).',
    )

    @field_validator("allowed_networks")
    @classmethod
    def _cidrs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        # Checked here, not first when the fetcher is built, so a typo is one settings error at start.
        netguard.parse_networks(value)
        return value


class FinanceSentimentSettings(ServiceSettings):
    """Settings of the finance monitor.

    Every field can be set from the environment as ``FIN_<FIELD>`` (nested fields with ``__``), for example
    ``FIN_DATABASE_URL=postgresql+psycopg://monitor@db/monitor`` or
    ``FIN_FETCH__ALLOWED_NETWORKS='["127.0.0.0/8"]'``.
    """

    model_config = SettingsConfigDict(env_prefix="FIN_")

    database_url: str = Field(
        "sqlite:///var/finance_sentiment/monitor.db", description="SQLAlchemy URL; SQLite file or PostgreSQL."
    )
    registry: Path = Field(Path("var/registry"), description="Model registry folder (textcore registry).")
    model_name: str = Field("finance-sentiment", description="Registry name of the sentiment model served.")
    model_path: Path | None = Field(
        None, description="A trained model folder to serve instead of the registry's active version."
    )
    backend: str = Field("torch", pattern="^(torch|onnx)$", description="torch, or onnx (ONNX Runtime, CPU).")
    config_file: Path | None = Field(
        None, description="TOML or JSON file of sources, topics, entities and alert rules, applied at start."
    )
    scheduler: bool = Field(True, description="Run the source and alert jobs in this process.")
    external_url: str = Field(
        "http://127.0.0.1:8000", max_length=500, description="Base URL of this API, for links in alerts."
    )
    fetch: FetchSettings = Field(default_factory=FetchSettings)
    alert_interval_s: int = Field(
        30,
        ge=1,
        le=3600,
        description="Rules are evaluated at least this often; an enabled rule's window may not be shorter.",
    )
    delivery_interval_s: int = Field(5, ge=1, le=3600, description="Pending webhooks are retried this often.")
    resolved_expiry_days: int = Field(
        7,
        ge=1,
        le=365,
        description="A resolved notification whose alert's firing reached the webhook is tried this many "
        "days after it was queued (its receiver holds an incident open that only it closes); every other "
        "notification is given up on 24 hours after it was queued.",
    )
    sync_interval_s: int = Field(30, ge=1, le=3600, description="Other replicas' source edits seen.")
    max_pages_per_run: int = Field(20, ge=1, le=500, description="Articles read per list page run.")
    max_concurrent_runs: int = Field(
        12,
        ge=1,
        le=500,
        description="Source runs at once; more wait their turn (at start every source is due). The HTTP "
        "client's pool holds one connection per run plus the webhook posts.",
    )
    retention_days: int | None = Field(
        None,
        description="Delete stories first seen more than this many days ago, hourly (and at the end of "
        "run-once); unset (the default) keeps every story. Never shorter than the history an alert rule "
        "reads (window x (baseline + 1)): a longer rule holds the deletions back, with a warning. A story "
        "a firing alert or a waiting notification cites is kept until it no longer does. Webhook "
        "notifications delivered or expired, and alerts resolved, more than this many days ago go too; "
        "never a notification still to be sent nor a firing alert.",
    )

    @field_validator("retention_days")
    @classmethod
    def _whole_days(cls, value: int | None) -> int | None:
        if value is not None and not 1 <= value <= MAX_RETENTION_DAYS:
            raise ValueError(
                f"expected a retention of 1 to {MAX_RETENTION_DAYS} days (unset keeps every story), "
                f"found {value}"
            )
        return value

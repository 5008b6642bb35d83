"""The monitor's SQL schema (SQLAlchemy 2 declarative); alembic migrations in `migrations/` create it.

    sources ─┬─< documents ─< document_tags        (what was read, classified and tagged)
             │
    alert_rules ─< alerts ─< outbox                (what fired, and every notification, sent or waiting)

    pruned_stories                                 (dedup keys of the stories the retention deleted)

`managed_by` on sources and alert rules says who owns a row: "config" for the ones the config file
declares (`finance_sentiment.config.apply_config`), "api" for the others; `config_file` says which file (its
absolute path; null for the API's rows and for the file's rows stored before it was recorded).

Times are stored as naive UTC and read back timezone-aware (`textcore.sql.UtcDateTime`), identically on
SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from textcore.sql import UtcDateTime, utcnow

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit key.
BigId = BigInteger().with_variant(Integer(), "sqlite")
# For the tables whose ids are named outside the database (API paths, a webhook's generatorURL): SQLite gives
# a deleted newest row's id to the next row unless the table is AUTOINCREMENT. PostgreSQL never reuses ids.
NEVER_REUSED: dict[str, Any] = {"sqlite_autoincrement": True}


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UtcDateTime,
        dict[str, Any]: JSON,
        list[str]: JSON,
    }


# Bounds of the columns that hold what remote sites and callers send: longer values are never stored.
URL_CHARS = 2048
ETAG_CHARS = 500
LAST_MODIFIED_CHARS = 100
TAG_CHARS = 200
MAX_ID = 2**63 - 1  # the largest id a BigId column holds (PostgreSQL bigint, SQLite INTEGER)
MANAGED_BY_CHARS = 10  # "config" | "api"


class Source(Base):
    """A configured feed, page or JSON API, with its fetch state."""

    __tablename__ = "sources"
    __table_args__ = NEVER_REUSED

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    url: Mapped[str] = mapped_column(String(URL_CHARS))
    kind: Mapped[str] = mapped_column(String(16))  # rss | html | json
    interval_seconds: Mapped[int | None] = mapped_column(Integer)
    cron: Mapped[str | None] = mapped_column(String(120))
    topics: Mapped[list[str]] = mapped_column(default=list)
    entities: Mapped[list[str]] = mapped_column(default=list)
    link_pattern: Mapped[str | None] = mapped_column(String(500))
    json_fields: Mapped[dict[str, Any] | None] = mapped_column()
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    managed_by: Mapped[str] = mapped_column(String(MANAGED_BY_CHARS), default="api", server_default="api")
    config_file: Mapped[str | None] = mapped_column(Text)  # the file that provisions it
    etag: Mapped[str | None] = mapped_column(String(ETAG_CHARS))
    last_modified: Mapped[str | None] = mapped_column(String(LAST_MODIFIED_CHARS))
    last_run_at: Mapped[datetime | None] = mapped_column()
    last_status: Mapped[str | None] = mapped_column(String(40))
    last_error: Mapped[str | None] = mapped_column(Text)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Document(Base):
    """One story, stored once however many feeds or runs carried it, with its classification."""

    __tablename__ = "documents"
    # Ids are in API paths, and the retention deletes stories (the newest too, after a long silence).
    __table_args__ = (Index("ix_documents_seen_at", "seen_at"), NEVER_REUSED)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    source_id: Mapped[int | None] = mapped_column(ForeignKey("sources.id", ondelete="SET NULL"), index=True)
    url: Mapped[str] = mapped_column(String(URL_CHARS), unique=True)  # canonical URL
    content_hash: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    published_at: Mapped[datetime | None] = mapped_column()
    # When the monitor first saw the story: trends and spike windows use it, so a feed republishing old
    # stories with their original dates still counts them when they appear.
    seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    label: Mapped[str] = mapped_column(String(40))
    scores: Mapped[dict[str, Any]] = mapped_column()  # label -> probability
    sentiment: Mapped[float] = mapped_column(Float)  # P(positive) - P(negative), in [-1, 1]
    model_version: Mapped[str] = mapped_column(String(200))
    tags: Mapped[list[DocumentTag]] = relationship(
        back_populates="document", cascade="all, delete-orphan", lazy="selectin"
    )


class DocumentTag(Base):
    """A topic or entity a document mentions."""

    __tablename__ = "document_tags"
    __table_args__ = (Index("ix_document_tags_kind_name", "kind", "name"),)

    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(10), primary_key=True)  # topic | entity
    name: Mapped[str] = mapped_column(String(TAG_CHARS), primary_key=True)
    document: Mapped[Document] = relationship(back_populates="tags")


class PrunedStory(Base):
    """The dedup keys of a story the retention deleted (`finance_sentiment.retention`), so that a source
    still listing it does not store it again as new; no title, text or URL, only hashes."""

    __tablename__ = "pruned_stories"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    url_key: Mapped[str] = mapped_column(String(64), index=True)  # `dedup.url_key` of the canonical URL
    content_hash: Mapped[str] = mapped_column(String(64), index=True)
    pruned_at: Mapped[datetime] = mapped_column(index=True)


class AlertRule(Base):
    """When a topic's or entity's negative share spikes against its own baseline, notify a webhook."""

    __tablename__ = "alert_rules"
    __table_args__ = NEVER_REUSED

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    group_by: Mapped[str] = mapped_column(String(10))  # entity | topic | all
    match: Mapped[list[str]] = mapped_column(default=list)  # names to watch; empty watches every one
    window_seconds: Mapped[int] = mapped_column(Integer)
    baseline_windows: Mapped[int] = mapped_column(Integer)
    min_count: Mapped[int] = mapped_column(Integer)
    min_negative_share: Mapped[float] = mapped_column(Float)
    z_threshold: Mapped[float] = mapped_column(Float)
    min_sentiment_drop: Mapped[float | None] = mapped_column(Float)  # None: the mean score is not tested
    # Hysteresis: a firing alert resolves below this fraction of a threshold (min_count, share, z, drop).
    resolve_fraction: Mapped[float] = mapped_column(Float, default=0.5, server_default="0.5")
    method: Mapped[str] = mapped_column(String(20))  # ewma | robust_z
    repeat_interval_seconds: Mapped[int] = mapped_column(Integer)
    webhook_url: Mapped[str] = mapped_column(String(2048))
    receiver: Mapped[str] = mapped_column(String(200))
    secret: Mapped[str | None] = mapped_column(String(500))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_reason: Mapped[str | None] = mapped_column(Text)  # set when the config file dropped the rule
    managed_by: Mapped[str] = mapped_column(String(MANAGED_BY_CHARS), default="api", server_default="api")
    config_file: Mapped[str | None] = mapped_column(Text)  # the file that provisions it
    # Set when the rule was deleted while notifications of it still waited (see `rules.delete_rule`): the
    # row stays, hidden and renamed, only so those are delivered to its webhook, then the outbox removes it.
    deleted_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Alert(Base):
    """One episode of a rule firing for one label set, from start to resolution."""

    __tablename__ = "alerts"
    __table_args__ = (
        Index("ix_alerts_fingerprint_status", "fingerprint", "status"),
        Index("ix_alerts_ends_at", "ends_at"),  # the retention finds the episodes resolved long ago
        NEVER_REUSED,
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    rule_id: Mapped[int] = mapped_column(ForeignKey("alert_rules.id", ondelete="CASCADE"), index=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    labels: Mapped[dict[str, Any]] = mapped_column()
    annotations: Mapped[dict[str, Any]] = mapped_column()
    status: Mapped[str] = mapped_column(String(10))  # firing | resolved
    starts_at: Mapped[datetime] = mapped_column()
    ends_at: Mapped[datetime | None] = mapped_column()
    last_sent_at: Mapped[datetime | None] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class OutboxMessage(Base):
    """A webhook notification stored before delivery, retried until delivered or expired."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_pending", "delivered_at", "next_attempt_at"),
        Index("ix_outbox_expires_at", "expires_at"),  # the retention finds the messages expired long ago
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"), index=True)
    rule_id: Mapped[int] = mapped_column(ForeignKey("alert_rules.id", ondelete="CASCADE"))
    idempotency_key: Mapped[str] = mapped_column(String(64), unique=True)
    # Where it was delivered; until then where it was queued for, which is not where it goes unless
    # `fixed_url` is set: a waiting message goes to its rule's webhook URL as it is when it is sent.
    url: Mapped[str] = mapped_column(String(2048))
    # Sent to `url`, not to the rule's webhook: a "resolved" owed to a former webhook of the rule, which was
    # delivered the alert's "firing" (`alerting`).
    fixed_url: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # The secret that went with `url` when the rule moved to another webhook ("" when unsigned): kept on the
    # messages delivered there, and on a "resolved" owed to it (signed with it, not the rule's new secret).
    # None: the rule's secret as it is when the message is sent.
    secret: Mapped[str | None] = mapped_column(String(500))
    payload: Mapped[dict[str, Any]] = mapped_column()
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    delivered_at: Mapped[datetime | None] = mapped_column()
    expired: Mapped[bool] = mapped_column(Boolean, default=False)
    last_error: Mapped[str | None] = mapped_column(Text)

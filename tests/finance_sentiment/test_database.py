"""The schema: alembic migrations match the models, on SQLite and PostgreSQL; times round-trip as UTC."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import MetaData, Table, insert, select
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import Session

from finance_sentiment.config import MonitorConfig, apply_config
from finance_sentiment.database import Database
from finance_sentiment.rules import list_rules
from finance_sentiment.schemas import AlertRuleIn, SourceIn
from finance_sentiment.sources import list_sources
from finance_sentiment.tables import Alert, AlertRule, Base, Document, DocumentTag, OutboxMessage, Source
from textcore.errors import InvalidInput


def test_migrations_build_exactly_the_models(database: Database) -> None:
    database.migrate()  # a second upgrade is a no-op
    with database.engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []


def _document(url: str, digest: str, source_id: int | None = None) -> Document:
    return Document(
        source_id=source_id,
        url=url,
        content_hash=digest,
        title="t",
        text="t",
        label="neutral",
        scores={"neutral": 1.0},
        sentiment=0.0,
        model_version="m",
    )


def test_times_round_trip_as_utc_and_duplicates_are_refused(database: Database) -> None:
    seen = datetime(2026, 3, 1, 12, 30, tzinfo=timezone(timedelta(hours=2)))
    with database.session() as session:
        source = Source(name="wire", url="http://127.0.0.1/feed", kind="rss", interval_seconds=60)
        session.add(source)
        session.flush()
        document = _document("http://a/1", "h1", source.id)
        document.seen_at = seen
        session.add(document)
    with database.session() as session:
        stored = session.scalars(select(Document)).one()
        assert stored.seen_at == seen
        assert stored.seen_at.tzinfo is UTC
    with pytest.raises(IntegrityError), database.session() as session:
        session.add(_document("http://a/2", "h1"))  # same content hash


def test_naive_times_and_bad_urls_are_refused(sqlite_url: str) -> None:
    database = Database(sqlite_url)
    database.migrate()
    with pytest.raises(StatementError, match="timezone-aware"), database.session() as session:
        session.add(Source(name="s", url="u", kind="rss", created_at=datetime(2026, 1, 1)))
    with pytest.raises(InvalidInput, match="SQLAlchemy database URL"):
        Database("not a url")


def test_deleting_a_source_keeps_its_documents(database: Database) -> None:
    with database.session() as session:
        source = Source(name="wire", url="http://127.0.0.1/feed", kind="rss", interval_seconds=60)
        session.add(source)
        session.flush()
        session.add(_document("http://a/1", "h1", source.id))
    with database.session() as session:
        session.delete(session.scalars(select(Source)).one())
    with database.session() as session:
        assert session.scalars(select(Document)).one().source_id is None


def test_a_session_is_one_transaction_savepoints_included(database: Database) -> None:
    with pytest.raises(RuntimeError), database.session() as session:
        with session.begin_nested():
            session.add(Source(name="a", url="http://127.0.0.1/a", kind="rss"))
        raise RuntimeError("fail after the savepoint was released")
    with database.session() as session:
        assert session.scalars(select(Source)).all() == []


def _rule(name: str) -> AlertRule:
    return AlertRule(**AlertRuleIn(name=name, webhook_url="http://127.0.0.1:9/hook").model_dump())


def _alert(rule_id: int) -> Alert:
    now = datetime(2026, 3, 1, tzinfo=UTC)
    return Alert(rule_id=rule_id, fingerprint="f", labels={}, annotations={}, status="firing", starts_at=now)


def test_an_id_named_outside_the_database_is_never_given_twice(database: Database) -> None:
    # Rule ids are in webhook links (generatorURL) and, like source and alert ids, in API paths: SQLite gave
    # a deleted newest row's id to the next row, so an old link led to another rule.
    with database.session() as session:
        rule = _rule("keep")
        session.add(rule)
        session.flush()
        rows: dict[str, Callable[[int], Any]] = {
            "sources": lambda k: Source(name=f"s{k}", url="http://127.0.0.1/feed", kind="rss"),
            "alert_rules": lambda k: _rule(f"r{k}"),
            "alerts": lambda k: _alert(rule.id),
            # Stories are deleted by the retention, the newest too after a long silence.
            "documents": lambda k: _document(f"http://a/{k}", f"h{k}"),
        }
    for table, make in rows.items():
        ids = []
        for k in range(3):
            with database.session() as session:
                row = make(k)
                session.add(row)
                session.flush()
                ids.append(row.id)
                if k == 1:
                    session.delete(row)  # the newest row goes
        assert ids[2] > ids[1] > ids[0], table


def _old_row(session: Session, table: str, **values: Any) -> None:
    """Insert a row as the schema of an older revision stores it (the models may have columns it lacks)."""
    columns = Table(table, MetaData(), autoload_with=session.connection())
    stamp = datetime(2026, 3, 1)  # stored as naive UTC
    session.execute(insert(columns).values({"created_at": stamp, "updated_at": stamp} | values))


def _old_rule(session: Session, name: str) -> None:
    # resolve_fraction came with revision 0009: the older schemas these rows go into lack it.
    rule = AlertRuleIn(name=name, webhook_url="http://127.0.0.1:9/hook").model_dump(
        exclude={"resolve_fraction"}
    )
    _old_row(session, "alert_rules", **rule)


def _old_source(session: Session, **values: Any) -> None:
    source = {
        "url": "http://127.0.0.1/feed",
        "kind": "rss",
        "interval_seconds": 60,
        "topics": [],
        "entities": [],
    }
    _old_row(session, "sources", **(source | {"enabled": True, "consecutive_failures": 0} | values))


def test_upgrading_keeps_every_row_and_link_and_stops_reusing_ids(sqlite_url: str) -> None:
    # An SQLite table takes AUTOINCREMENT only by being rebuilt: rows, and the rows that refer to them,
    # stay as they were.
    database = Database(sqlite_url)
    config = Config()
    config.set_main_option("script_location", str(database.migrations))
    try:
        with database.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0003")
        with database.session() as session:
            _old_rule(session, "first")
            _old_rule(session, "second")
            _old_source(session, id=4, name="wire")
            session.add(_alert(2))
            session.add(_document("http://a/1", "h1", source_id=4))
        database.migrate()
        with database.session() as session:
            assert session.scalars(select(AlertRule.name).order_by(AlertRule.id)).all() == ["first", "second"]
            assert session.scalars(select(Alert.rule_id)).all() == [2]
            assert session.scalars(select(Document.source_id)).all() == [4]
            session.delete(session.get(AlertRule, 2))  # the newest rule, with its alert (ON DELETE CASCADE)
            session.delete(session.get(Source, 4))  # its documents stay, unlinked (ON DELETE SET NULL)
        with database.session() as session:
            assert session.scalars(select(Alert)).all() == []
            assert session.scalars(select(Document.source_id)).all() == [None]
            rule, source = _rule("third"), Source(name="wire", url="http://127.0.0.1/feed", kind="rss")
            session.add_all([rule, source])
            session.flush()
            assert (rule.id, source.id) == (3, 5)
    finally:
        database.dispose()


def test_upgrading_to_the_retention_keeps_stories_and_tags_and_stops_reusing_their_ids(
    sqlite_url: str,
) -> None:
    database = Database(sqlite_url)
    config = Config()
    config.set_main_option("script_location", str(database.migrations))
    try:
        with database.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0004")
        with database.session() as session:
            for k in (1, 2):
                document = _document(f"http://a/{k}", f"h{k}")
                document.tags = [DocumentTag(kind="entity", name=f"E{k}")]
                session.add(document)
        database.migrate()
        with database.session() as session:
            assert session.scalars(select(DocumentTag.name).order_by(DocumentTag.name)).all() == ["E1", "E2"]
            session.delete(session.get(Document, 2))  # the newest story, with its tag (ON DELETE CASCADE)
        with database.session() as session:
            assert session.scalars(select(DocumentTag.name)).all() == ["E1"]
            document = _document("http://a/3", "h3")
            session.add(document)
            session.flush()
            assert document.id == 3
    finally:
        database.dispose()


def test_rows_stored_before_managed_by_read_as_api_until_the_config_file_claims_them(
    database_url: str,
) -> None:
    # Nothing recorded which rows the config file made: none is taken for the file's, so none is disabled
    # for missing from it; the next start claims the ones the file declares, by name.
    database = Database(database_url)
    config = Config()
    config.set_main_option("script_location", str(database.migrations))
    try:
        with database.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0006")
        with database.session() as session:
            _old_source(session, name="wire")
            _old_source(session, name="desk", url="http://127.0.0.1/desk")
            _old_rule(session, "banks")
        database.migrate()
        with database.session() as session:
            assert [(s.name, s.managed_by) for s in list_sources(session)] == [
                ("wire", "api"),
                ("desk", "api"),
            ]
            (rule,) = list_rules(session)
            assert (rule.managed_by, rule.enabled, rule.disabled_reason) == ("api", True, None)
            assert rule.resolve_fraction == 0.5  # the hysteresis its share and z thresholds had
        declared = MonitorConfig(sources=[SourceIn(name="wire", url="http://127.0.0.1/feed", kind="rss")])
        with database.session() as session:
            apply_config(session, declared, "monitor.toml")
        with database.session() as session:
            rows = [(s.name, s.managed_by, s.enabled) for s in list_sources(session)]
            assert rows == [("wire", "config", True), ("desk", "api", True)]
            assert [(r.name, r.managed_by, r.enabled) for r in list_rules(session)] == [
                ("banks", "api", True)
            ]
        with database.engine.begin() as connection:  # and back down, then up again
            config.attributes["connection"] = connection
            command.downgrade(config, "0006")
        database.migrate()
        with database.session() as session:
            assert {s.managed_by for s in list_sources(session)} == {"api"}
    finally:
        database.dispose()


def test_notifications_stored_before_fixed_url_still_go_to_their_rules_webhook(database_url: str) -> None:
    # Every notification stored before the revision was sent to its rule's webhook as it was then: it
    # reads as not fixed to its own URL, and the revision goes down and up again.
    database = Database(database_url)
    config = Config()
    config.set_main_option("script_location", str(database.migrations))
    stamp = datetime(2026, 3, 1)  # stored as naive UTC
    try:
        with database.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0007")
        with database.session() as session:
            _old_rule(session, "banks")
            rule_id = session.scalars(
                select(Table("alert_rules", MetaData(), autoload_with=session.connection()).c.id)
            ).one()
            alerts = Table("alerts", MetaData(), autoload_with=session.connection())
            session.execute(
                insert(alerts).values(
                    id=1,
                    rule_id=rule_id,
                    fingerprint="f",
                    labels={},
                    annotations={},
                    status="firing",
                    starts_at=stamp,
                    updated_at=stamp,
                )
            )
            outbox = Table("outbox", MetaData(), autoload_with=session.connection())
            session.execute(
                insert(outbox).values(
                    id=1,
                    alert_id=1,
                    rule_id=rule_id,
                    idempotency_key="k",
                    url="http://127.0.0.1:9/hook",
                    payload={},
                    attempts=0,
                    next_attempt_at=stamp,
                    created_at=stamp,
                    expires_at=stamp,
                    expired=False,
                )
            )
        database.migrate()
        with database.session() as session:
            message = session.get_one(OutboxMessage, 1)
            assert (message.url, message.fixed_url) == ("http://127.0.0.1:9/hook", False)
        # Down through the later revisions too, with SQLite's foreign keys off as `Database.migrate` has them:
        # a parent table rebuilt (alert_rules, 0009) would otherwise run its ON DELETE CASCADE.
        with database.engine.connect() as connection:
            raw = connection.connection.dbapi_connection
            assert raw is not None
            sqlite = connection.dialect.name == "sqlite"
            if sqlite:
                raw.execute("PRAGMA foreign_keys=OFF")
            with connection.begin():
                config.attributes["connection"] = connection
                command.downgrade(config, "0007")
            if sqlite:
                raw.execute("PRAGMA foreign_keys=ON")
        database.migrate()
        with database.session() as session:
            assert session.get_one(OutboxMessage, 1).fixed_url is False
    finally:
        database.dispose()

"""The schema: alembic migrations match the models, on SQLite and PostgreSQL; times round-trip as UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, StatementError

from finance_sentiment.database import Database
from finance_sentiment.tables import Base, Document, Source
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

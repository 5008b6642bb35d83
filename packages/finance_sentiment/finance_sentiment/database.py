"""The monitor's database: one engine, sessions as transactions, and alembic migrations to the latest schema.

SQLite (a file, the embedded default) and PostgreSQL (``postgresql+psycopg://...``, the scale-out path where
several API replicas and one worker share state) behave the same through this module.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from textcore.errors import InvalidInput

MIGRATIONS = Path(__file__).parent / "migrations"


class Database:
    """An engine and a session factory for one database URL.

    Args:
        url: A SQLAlchemy URL, e.g. ``sqlite:///var/monitor.db`` or
            ``postgresql+psycopg://postgres@127.0.0.1:5432/test``. A SQLite file's folder is created.
    """

    def __init__(self, url: str) -> None:
        try:
            parsed = make_url(url)
        except Exception as exc:  # sqlalchemy raises ArgumentError and ValueError variants
            raise InvalidInput(f"expected a SQLAlchemy database URL, found {url!r}: {exc}") from exc
        self.url = url
        self.engine: Engine = _create_engine(parsed.drivername, url, parsed.database)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def migrate(self) -> None:
        """Bring the schema to the latest alembic revision (idempotent)."""
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with self.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session inside one transaction: committed on success, rolled back on error."""
        with self._sessions.begin() as session:
            yield session

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


def _create_engine(driver: str, url: str, database: str | None) -> Engine:
    if not driver.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    # Threads (API workers, the scheduler) share the engine; wait for the writer lock instead of failing.
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
    event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: object) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")  # ON DELETE CASCADE / SET NULL need it
    cursor.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()

"""SQL for the services: one engine per database URL, sessions as transactions, alembic migrations, UTC times.

SQLite (a file: the embedded default) and PostgreSQL (``postgresql+psycopg://...``: the scale-out path where
several replicas share state) behave the same through this module. Each service keeps its own schema and
migrations folder and subclasses `Database` with it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command, context
from alembic.config import Config
from sqlalchemy import (
    Connection,
    DateTime,
    Dialect,
    Engine,
    MetaData,
    TypeDecorator,
    create_engine,
    event,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from textcore.errors import InvalidInput, UpstreamError

# The range a time given by a caller (a query bound, a cursor) must fall in: outside it the value is a
# mistake, and near the ends of `datetime`'s range the arithmetic on it overflows.
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
# PostgreSQL advisory lock key held by a migration's transaction ("txt.migr" in ASCII): the replicas of a
# service started together migrate one after the other, the later ones finding the schema at head.
MIGRATION_LOCK = 0x7478742E6D696772
CHECKPOINT_WAIT_MS = 2_000  # how long `Database.checkpoint` waits for readers of an older snapshot to finish

logger = logging.getLogger(__name__)


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def aware_utc(name: str, moment: datetime) -> datetime:
    """A caller's time in UTC, checked to be timezone-aware and within [`EARLIEST`, `LATEST`).

    Args:
        name: What to call the value in the error message (e.g. ``"since"``).
        moment: The time.

    Raises:
        InvalidInput: If ``moment`` is naive or out of range.
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidInput(f"expected a timezone-aware {name}, found naive {moment.isoformat()}")
    try:
        utc: datetime | None = moment.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+05:00 is before year 1 in UTC
        utc = None
    if utc is None or not EARLIEST <= utc < LATEST:
        raise InvalidInput(
            f"expected {name} from {EARLIEST.date()} to before {LATEST.date()}, found {moment.isoformat()}"
        )
    return utc


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp stored as naive UTC and returned timezone-aware; naive inputs are rejected."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Store as naive UTC."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"expected a timezone-aware datetime, found naive {value.isoformat()}")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Read back as aware UTC."""
        return None if value is None else value.replace(tzinfo=UTC)


class Database:
    """An engine and a session factory for one database URL, migrated by one alembic folder.

    Args:
        url: A SQLAlchemy URL, e.g. ``sqlite:///var/app.db`` or
            ``postgresql+psycopg://postgres@127.0.0.1:5432/test``. A SQLite file's folder is created.
        migrations: The service's alembic folder (``env.py`` reads the connection from
            ``config.attributes["connection"]``).
        erasable: The database holds personal data that must leave its files once deleted: on SQLite
            every connection sets ``secure_delete`` (deleted rows are overwritten with zeros rather than left
            in free pages: some SQLite builds default to it, others do not), and `checkpoint` empties the
            write-ahead log, which still holds the pages from before a deletion. (PostgreSQL keeps a deleted
            row in its files until (auto)vacuum reuses the space, and in its WAL and backups as long as those
            are kept.)

    Raises:
        InvalidInput: If ``url`` is not a SQLAlchemy URL.
    """

    def __init__(self, url: str, migrations: Path, *, erasable: bool = False) -> None:
        try:
            parsed = make_url(url)
        except Exception as exc:  # sqlalchemy raises ArgumentError and ValueError variants
            raise InvalidInput(f"expected a SQLAlchemy database URL, found {url!r}: {exc}") from exc
        self.url = url
        self.migrations = migrations
        try:
            self.engine: Engine = _create_engine(parsed.drivername, url, parsed.database)
        except (ArgumentError, ImportError) as exc:  # an unknown dialect, or its driver is not installed
            raise InvalidInput(
                f"expected a database URL of an installed SQLAlchemy dialect, found "
                f"{parsed.render_as_string(hide_password=True)!r}: {exc}"
            ) from exc
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        if erasable and self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _secure_delete)

    def migrate(self) -> None:
        """Bring the schema to the latest alembic revision (idempotent). On PostgreSQL the migration holds an
        advisory lock (`MIGRATION_LOCK`), so processes started together migrate one after the other.

        Raises:
            UpstreamError: The database cannot be reached (refused, unknown host, bad credentials).
        """
        config = Config()
        config.set_main_option("script_location", str(self.migrations))
        try:
            with self.engine.connect() as connection, _foreign_keys_off(connection), connection.begin():
                if connection.dialect.name == "postgresql":  # SQLite serialises writers already
                    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
                _require_foreign_keys_kept(connection)
        except (OperationalError, InterfaceError) as exc:
            where = self.engine.url.render_as_string(hide_password=True)
            raise UpstreamError(f"cannot open the database {where}: {error_summary(exc)}") from exc

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session inside one transaction: committed on success, rolled back on error."""
        with self._sessions.begin() as session:
            yield session

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    def checkpoint(self) -> bool:
        """SQLite: copy the write-ahead log into the database file and truncate the log, so that the pages
        it held from before a deletion leave the disk; waits at most `CHECKPOINT_WAIT_MS` for readers of an
        older snapshot. A no-op on PostgreSQL.

        Returns:
            False when readers kept the log from being emptied (the next checkpoint does it: SQLite runs one
            every 1000 pages written, and at the last connection's close), True otherwise.
        """
        if self.engine.dialect.name != "sqlite":
            return True
        with self.engine.connect() as connection:
            raw = connection.connection.dbapi_connection
            assert raw is not None  # a connection just checked out of the pool
            waited = raw.execute("PRAGMA busy_timeout").fetchone()[0]
            raw.execute(f"PRAGMA busy_timeout={CHECKPOINT_WAIT_MS}")
            try:
                busy, _, _ = raw.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            finally:
                raw.execute(f"PRAGMA busy_timeout={int(waited)}")
        if busy:
            logger.warning("checkpoint: readers kept the write-ahead log from being emptied, for now")
        return not busy

    def check(self) -> None:
        """Migrate, then close the connections: a command's start-up check, so that a database it cannot open
        is one error (`UpstreamError`) before a server starts, not a traceback from inside it."""
        try:
            self.migrate()
        finally:
            self.dispose()


def error_summary(exc: SQLAlchemyError) -> str:
    """The first line of what the database driver said (SQLAlchemy's own message adds the statement and a
    link), or the error's class name when it said nothing."""
    lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


@contextmanager
def _foreign_keys_off(connection: Connection) -> Iterator[None]:
    """SQLite: foreign-key enforcement off on `connection` while it migrates, back on after.

    SQLite alters most of a table by copying it into a new one and dropping the old (alembic's batch mode);
    with enforcement on, dropping a table that others reference runs their ON DELETE CASCADE, so such a
    migration of a parent table would empty its child tables. The pragma is a no-op inside a transaction, so
    it is set before the migration's transaction begins.
    """
    if connection.dialect.name != "sqlite":
        yield
        return
    raw = connection.connection.dbapi_connection
    assert raw is not None  # a connection just checked out of the pool
    raw.execute("PRAGMA foreign_keys=OFF")
    try:
        yield
    finally:
        raw.execute("PRAGMA foreign_keys=ON")


def _require_foreign_keys_kept(connection: Connection) -> None:
    """SQLite: refuse (and so roll back) a migration that left a row pointing at no row.

    Raises:
        RuntimeError: If `PRAGMA foreign_key_check` finds such rows (a defect of the migration).
    """
    if connection.dialect.name != "sqlite":
        return
    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
    if broken:
        tables = sorted({f"{row[0]} -> {row[2]}" for row in broken})
        raise RuntimeError(
            f"expected a migration to keep every reference between rows; found {len(broken)} rows pointing "
            f"at no row ({', '.join(tables)}); the migration was rolled back"
        )


def run_migrations(metadata: MetaData, *, version_table: str = "alembic_version") -> None:
    """The body of a service's alembic ``env.py``: migrate the connection `Database.migrate` hands in.

    Args:
        metadata: The service's tables, for autogenerate.
        version_table: Alembic's bookkeeping table; a name of its own lets services share one database.

    Raises:
        RuntimeError: If alembic was started some other way (no connection was handed in).
    """
    connection: Connection | None = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations through textcore.sql.Database.migrate")
    context.configure(
        connection=connection, target_metadata=metadata, render_as_batch=True, version_table=version_table
    )
    with context.begin_transaction():
        context.run_migrations()


def require_existing_sqlite(url: str, doing: str) -> None:
    """Refuse a SQLite URL naming no file, which opening would create empty: a command that only reads,
    removes or erases what is stored (export, delete, erase) would report on an empty database made of a
    mistyped path. Other URLs, and one that does not parse (opening the database words that), pass.

    Raises:
        InvalidInput: ``expected an existing SQLite database to {doing}; found no file PATH``.
    """
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # ValueError: a port that is no number
        return
    name = parsed.database
    if parsed.get_backend_name() == "sqlite" and name and name != ":memory:" and not Path(name).is_file():
        raise InvalidInput(f"expected an existing SQLite database to {doing}; found no file {name}")


def _create_engine(driver: str, url: str, database: str | None) -> Engine:
    # hide_parameters: an error's message (logged with a 500's traceback) names the statement, not the values
    # it was sent with, which are what the callers sent (a customer's message): personal data.
    if not driver.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True, hide_parameters=True)
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    # Threads (API workers, the scheduler) share the engine; wait for the writer lock instead of failing.
    engine = create_engine(
        url, connect_args={"check_same_thread": False, "timeout": 30}, hide_parameters=True
    )
    event.listen(engine, "connect", _sqlite_pragmas)
    # pysqlite's own transaction handling commits on SAVEPOINT release; SQLAlchemy emits BEGIN itself instead,
    # so that a session is one transaction, savepoints included (the recipe of SQLAlchemy's SQLite docs).
    # IMMEDIATE takes the write lock up front: a transaction that reads, then writes, would otherwise fail
    # with "database is locked" when another writer committed in between; this way it waits its turn.
    event.listen(engine, "begin", lambda connection: connection.exec_driver_sql("BEGIN IMMEDIATE"))
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: object) -> None:
    dbapi_connection.isolation_level = None  # driver autocommit: transactions come from the "begin" hook
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")  # ON DELETE CASCADE / SET NULL need it
    cursor.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _secure_delete(dbapi_connection: Any, _record: object) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA secure_delete=ON")  # deleted rows are overwritten, not left in free pages
    cursor.close()

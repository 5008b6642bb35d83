"""The recommender's database: `textcore.sql.Database` with the recommender's alembic migrations.

Behaviour is personal data, and a user's erased events must not stay readable in the database's files. On
SQLite every connection sets ``secure_delete`` (deleted rows are overwritten with zeros rather than left in
free space: some SQLite builds default to it, others do not), and `checkpoint` empties the write-ahead log,
which still holds the pages as they were before the deletion. PostgreSQL keeps a deleted row in the table's
files until (auto)vacuum reuses its space, and in its WAL and backups for as long as those are kept.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sqlalchemy import event

from textcore.sql import Database as SqlDatabase

MIGRATIONS = Path(__file__).parent / "migrations"
CHECKPOINT_WAIT_MS = 2_000  # how long `checkpoint` waits for readers of an older snapshot to finish

logger = logging.getLogger(__name__)


class Database(SqlDatabase):
    """The recommender's SQLite or PostgreSQL database (see `textcore.sql.Database`)."""

    def __init__(self, url: str) -> None:
        super().__init__(url, MIGRATIONS)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _secure_delete)

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


def _secure_delete(dbapi_connection: Any, _record: object) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA secure_delete=ON")  # deleted rows are overwritten, not left in free pages
    cursor.close()

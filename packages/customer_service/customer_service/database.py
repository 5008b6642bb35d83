"""The customer service's database: `textcore.sql.Database` with its alembic migrations."""

from __future__ import annotations

from pathlib import Path

from textcore.sql import Database as SqlDatabase

MIGRATIONS = Path(__file__).parent / "migrations"


class Database(SqlDatabase):
    """The customer service's SQLite or PostgreSQL database (see `textcore.sql.Database`)."""

    def __init__(self, url: str) -> None:
        super().__init__(url, MIGRATIONS)

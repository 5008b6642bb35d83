"""The recommender's database: `textcore.sql.Database` with the recommender's alembic migrations."""

from __future__ import annotations

from pathlib import Path

from textcore.sql import Database as SqlDatabase

MIGRATIONS = Path(__file__).parent / "migrations"


class Database(SqlDatabase):
    """The recommender's SQLite or PostgreSQL database (see `textcore.sql.Database`)."""

    def __init__(self, url: str) -> None:
        super().__init__(url, MIGRATIONS)

"""The customer service's database: `textcore.sql.Database` with its alembic migrations.

Chat transcripts are personal data: an erased session must not stay readable in the database's files
(`textcore.sql.Database`, ``erasable``: SQLite's ``secure_delete``, and a `checkpoint` after an erasure).
"""

from __future__ import annotations

from pathlib import Path

from textcore.sql import Database as SqlDatabase

MIGRATIONS = Path(__file__).parent / "migrations"


class Database(SqlDatabase):
    """The customer service's SQLite or PostgreSQL database (see `textcore.sql.Database`)."""

    def __init__(self, url: str) -> None:
        super().__init__(url, MIGRATIONS, erasable=True)

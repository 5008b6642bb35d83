"""`textcore.sql.Database.migrate` on a migrations folder of the test's own: rows survive a migration that
rebuilds a table others reference, on SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from textcore.sql import Database

ENV = """
from sqlalchemy import MetaData

from textcore.sql import run_migrations

run_migrations(MetaData())
"""
HEAD = """
import sqlalchemy as sa
from alembic import op

branch_labels = None
depends_on = None
"""
CREATE = """
revision = "0001"
down_revision = None


def upgrade():
    op.create_table(
        "parents", sa.Column("id", sa.Integer, primary_key=True), sa.Column("name", sa.String(10))
    )
    op.create_table(
        "children",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("parent_id", sa.Integer, sa.ForeignKey("parents.id", ondelete="CASCADE"), nullable=False),
    )
"""
WIDEN = """
revision = "0002"
down_revision = "0001"


def upgrade():
    # On SQLite, alembic's batch mode rebuilds the table: copy, drop the old one, rename.
    with op.batch_alter_table("parents") as batch:
        batch.alter_column("name", type_=sa.String(40))
"""
ORPHAN = """
revision = "0002"
down_revision = "0001"


def upgrade():
    op.execute("DELETE FROM parents")
"""


def _migrations(folder: Path, *revisions: str) -> Path:
    (folder / "versions").mkdir(parents=True)
    (folder / "env.py").write_text(ENV)
    for number, body in enumerate(revisions, 1):
        (folder / "versions" / f"{number:04d}.py").write_text(HEAD + body)
    return folder


def _children(database: Database) -> int:
    with database.engine.connect() as connection:
        return int(connection.execute(text("SELECT count(*) FROM children")).scalar_one())


def _database_with_a_child(url: str, folder: Path) -> Database:
    database = Database(url, _migrations(folder, CREATE))
    database.migrate()
    with database.engine.begin() as connection:
        connection.execute(text("INSERT INTO parents (id, name) VALUES (1, 'a')"))
        connection.execute(text("INSERT INTO children (id, parent_id) VALUES (1, 1)"))
    return database


def test_a_migration_that_rebuilds_a_referenced_table_keeps_the_rows_referring_to_it(
    database_url: str, tmp_path: Path
) -> None:
    database = _database_with_a_child(database_url, tmp_path / "migrations")
    try:
        (tmp_path / "migrations" / "versions" / "0002.py").write_text(HEAD + WIDEN)
        database.migrate()
        assert _children(database) == 1
        # enforcement is back on for the connections the application then uses
        with database.session() as session, pytest.raises(IntegrityError, match=r"(?i)foreign key"):
            session.execute(text("INSERT INTO children (id, parent_id) VALUES (2, 99)"))
    finally:
        database.dispose()


def test_a_sqlite_migration_that_leaves_rows_pointing_nowhere_is_rolled_back(
    sqlite_url: str, tmp_path: Path
) -> None:
    database = _database_with_a_child(sqlite_url, tmp_path / "migrations")
    try:
        (tmp_path / "migrations" / "versions" / "0002.py").write_text(HEAD + ORPHAN)
        with pytest.raises(RuntimeError, match="1 rows pointing at no row"):
            database.migrate()
        with database.engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM parents")).scalar_one() == 1
        assert _children(database) == 1
    finally:
        database.dispose()


MIGRATE = (
    "import sys, pathlib\n"
    "from textcore.sql import Database\n"
    "Database(sys.argv[1], pathlib.Path(sys.argv[2])).migrate()\n"
)


def test_processes_started_together_on_a_new_postgresql_database_all_migrate(
    postgres_url: str, tmp_path: Path
) -> None:
    # The API replicas and the worker of a service start at once on a new database (a first deployment, or
    # one bringing a migration). Each created alembic_version and the tables; all but one stopped with
    # DuplicateTable (2 of 4 here), so a fresh deployment needed restarts to come up.
    folder = _migrations(tmp_path / "migrations", CREATE)
    for _ in range(3):
        starts = [
            subprocess.Popen(
                [sys.executable, "-c", MIGRATE, postgres_url, str(folder)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(4)
        ]
        errors = [start.communicate(timeout=120)[1] for start in starts]
        failures = [line for error in errors for line in error.splitlines() if "Error:" in line]
        assert [start.returncode for start in starts] == [0] * 4, failures
        database = Database(postgres_url, folder)
        with database.engine.begin() as connection:  # a new database again for the next round
            versions = connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
            assert versions == ["0001"]
            connection.execute(text("DROP TABLE alembic_version, children, parents"))
        database.dispose()

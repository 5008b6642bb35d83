"""`textcore.sql.Database`: an error of the database never carries the values a statement was sent with, on
SQLite and PostgreSQL.

Those values are what the callers sent (a customer's chat message, a stored feed's URL): an error's message
reaches the log (an unexpected error's 500 logs its traceback), which must not hold them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from textcore.sql import Database

MESSAGE = "my card 4111 1111 1111 1111 is lost"


def test_a_database_error_does_not_carry_the_statements_values(database_url: str, tmp_path: Path) -> None:
    database = Database(database_url, tmp_path / "migrations")
    try:
        with database.session() as session, pytest.raises(DBAPIError) as refused:
            session.execute(
                text("INSERT INTO no_such_table (message) VALUES (:message)"), {"message": MESSAGE}
            )
    finally:
        database.dispose()
    assert "no_such_table" in str(refused.value)  # the statement is still named, for the operator
    assert "4111" not in str(refused.value)

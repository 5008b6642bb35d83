"""Fixtures of the customer-service tests: its database, migrated, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from customer_service.database import Database
from tests.conftest import migrated


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    with migrated(Database(database_url)) as db:
        yield db

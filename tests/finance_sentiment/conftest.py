"""Fixtures of the finance monitor's tests: a migrated database on SQLite and on PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from finance_sentiment.database import Database

POSTGRES_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _postgres_schema_url() -> Iterator[str]:
    """A fresh schema in the `test` database for one test, dropped afterwards; skips without a server."""
    admin = create_engine(POSTGRES_SERVER, isolation_level="AUTOCOMMIT")
    schema = f"fin_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    except OperationalError as exc:
        admin.dispose()
        pytest.skip(f"PostgreSQL is not reachable at 127.0.0.1:5432 ({exc.orig})")
    try:
        yield f"{POSTGRES_SERVER}?options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite file in the test's temporary folder."""
    return f"sqlite:///{tmp_path / 'monitor.db'}"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A PostgreSQL URL whose search path is a schema of its own, dropped after the test."""
    yield from _postgres_schema_url()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The same test on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'monitor.db'}"
    else:
        yield from _postgres_schema_url()


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    """A migrated database on each backend."""
    db = Database(database_url)
    db.migrate()
    try:
        yield db
    finally:
        db.dispose()


EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="session")
def finance_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real MiniLM fine-tuned on the project's own demo finance sentences (about 20 s on 2 cores)."""
    from textcore import TrainConfig, read_labelled  # noqa: PLC0415 - heavy import, only when used
    from textcore.training import train_classifier  # noqa: PLC0415

    output = tmp_path_factory.mktemp("finance-model")
    data = read_labelled(EXAMPLES / "finance_sentiment.csv", "text", "label")
    config = TrainConfig(epochs=10, batch_size=8, learning_rate=4e-4, patience=100, seed=0)
    train_classifier(data, config, output, progress=False)
    return output

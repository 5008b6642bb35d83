"""Fixtures of the finance monitor's tests: a migrated database on SQLite and on PostgreSQL, a trained model.

The database URL fixtures (`sqlite_url`, `postgres_url`, `database_url`) come from tests/conftest.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from finance_sentiment.database import Database
from tests.conftest import migrated


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    """A migrated database on each backend."""
    with migrated(Database(database_url)) as db:
        yield db


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

"""Alembic environment of the finance monitor (run through `finance_sentiment.database.Database.migrate`)."""

from finance_sentiment.tables import Base
from textcore.sql import run_migrations

run_migrations(Base.metadata)

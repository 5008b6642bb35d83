"""Alembic environment: runs against the connection `finance_sentiment.database.Database.migrate` hands in."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from finance_sentiment.tables import Base

connection: Connection | None = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through finance_sentiment.database.Database.migrate")
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()

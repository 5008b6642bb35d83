"""Alembic environment: runs against the connection `recommender.database.Database.migrate` hands in."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from recommender.tables import Base

connection: Connection | None = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through recommender.database.Database.migrate")
# Its own version table, so the recommender can share a PostgreSQL database with the other services.
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=True,
    version_table="recommender_alembic_version",
)
with context.begin_transaction():
    context.run_migrations()

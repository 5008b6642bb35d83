"""Alembic environment of the recommender (run through `recommender.database.Database.migrate`)."""

from recommender.tables import Base
from textcore.sql import run_migrations

# Its own version table, so the recommender can share a PostgreSQL database with the other services.
run_migrations(Base.metadata, version_table="recommender_alembic_version")

"""Alembic environment of the customer service (run through `customer_service.database.Database.migrate`)."""

from customer_service.tables import Base
from textcore.sql import run_migrations

# Its own version table, so the service can share a PostgreSQL database with the other services.
run_migrations(Base.metadata, version_table="customer_service_alembic_version")

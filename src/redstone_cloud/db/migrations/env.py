"""Alembic environment: runs migrations on the engine handed in by ``migrate.py``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine

from redstone_cloud.db.models import Base

engine = context.config.attributes["engine"]
assert isinstance(engine, Engine)
with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    context.run_migrations()

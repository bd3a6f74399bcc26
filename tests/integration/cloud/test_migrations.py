"""Alembic migrations up and down, schema = models, and the append-only audit trail."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from redstone_cloud.db import migrate
from redstone_cloud.db.engine import make_engine, make_sessionmaker, transaction
from redstone_cloud.db.models import Base
from redstone_cloud.services import audit


def test_upgrade_downgrade_upgrade(empty_database_url: str) -> None:
    engine = make_engine(empty_database_url)
    try:
        assert migrate.current_revision(engine) is None
        migrate.upgrade(engine)
        assert migrate.current_revision(engine) == migrate.head_revision()
        assert "vehicles" in sa.inspect(engine).get_table_names()
        migrate.downgrade(engine, "base")
        assert migrate.current_revision(engine) is None
        assert set(sa.inspect(engine).get_table_names()) <= {"alembic_version"}
        migrate.upgrade(engine)
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == [], "models and migrations disagree: add a migration"
    finally:
        engine.dispose()


def test_audit_records_cannot_be_changed_or_deleted(database_url: str) -> None:
    engine = make_engine(database_url)
    sessions = make_sessionmaker(engine)
    try:
        with transaction(sessions) as session:
            audit.record(session, "alice", "model.create", "vehicle_model", 1, name="x")
        for statement in (
            "UPDATE audit_records SET actor = 'mallory'",
            "DELETE FROM audit_records",
        ):
            with (
                pytest.raises(sa.exc.DatabaseError, match="append-only"),
                engine.begin() as conn,
            ):
                conn.execute(sa.text(statement))
        with sessions() as session:
            rows = audit.search(session, audit.AuditQuery())
            assert [(r.actor, r.detail) for r in rows] == [("alice", {"name": "x"})]
    finally:
        engine.dispose()

"""Fixtures for the cloud backend: every DB test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from redstone_cloud.api.app import create_app
from redstone_cloud.backend import Backend, open_backend
from redstone_cloud.db import migrate
from redstone_cloud.db.engine import make_engine
from redstone_cloud.settings import Admin, Settings, token_digest
from tests.integration.cloud.fleet import ADMIN_TOKEN, CERT_HEADER, Fleet
from tests.integration.cloud.pgserver import PostgresUnavailable, private_server

_counter = itertools.count()


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    """An admin URL of a PostgreSQL server: $REDSTONE_TEST_POSTGRES or a private one."""
    configured = os.environ.get("REDSTONE_TEST_POSTGRES")
    if configured:
        yield configured
        return
    try:
        with private_server() as url:
            yield url
    except PostgresUnavailable as exc:
        pytest.skip(str(exc))


def _pg_url(admin_url: str, database: str) -> str:
    return str(sa.make_url(admin_url).set(database=database).render_as_string(False))


def _pg_execute(admin_url: str, statement: str) -> None:
    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(statement))
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def pg_template(pg_admin_url: str) -> Iterator[str]:
    """A migrated database that per-test databases are copied from."""
    name = f"rs_template_{os.getpid()}"
    _pg_execute(pg_admin_url, f"CREATE DATABASE {name}")
    engine = make_engine(_pg_url(pg_admin_url, name))
    migrate.upgrade(engine)
    engine.dispose()
    yield name
    _pg_execute(pg_admin_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate.upgrade(engine)
    engine.dispose()
    return path


DATABASES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=DATABASES)
def database_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(
    database_kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[str]:
    """A migrated, empty database of the parametrised kind, private to this test."""
    if database_kind == "sqlite":
        template = request.getfixturevalue("sqlite_template")
        shutil.copy(template, tmp_path / "cloud.db")
        yield f"sqlite:///{tmp_path / 'cloud.db'}"
        return
    admin = request.getfixturevalue("pg_admin_url")
    template = request.getfixturevalue("pg_template")
    name = f"rs_test_{os.getpid()}_{next(_counter)}"
    _pg_execute(admin, f"CREATE DATABASE {name} TEMPLATE {template}")
    yield _pg_url(admin, name)
    _pg_execute(admin, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def empty_database_url(
    database_kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[str]:
    """An empty (unmigrated) database of the parametrised kind."""
    if database_kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    admin = request.getfixturevalue("pg_admin_url")
    name = f"rs_empty_{os.getpid()}_{next(_counter)}"
    _pg_execute(admin, f"CREATE DATABASE {name}")
    yield _pg_url(admin, name)
    _pg_execute(admin, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def make_settings(database_url: str, data_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": database_url,
        "data_dir": data_dir,
        "admins": [Admin("alice", token_digest(ADMIN_TOKEN))],
        "client_cert_header": CERT_HEADER,
        "max_upload_bytes": 1024 * 1024,
        "max_log_bytes": 4096,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def backend(database_url: str, tmp_path: Path) -> Iterator[Backend]:
    backend = open_backend(make_settings(database_url, tmp_path / "data"))
    yield backend
    backend.close()


@pytest.fixture
def client(backend: Backend) -> Iterator[TestClient]:
    with TestClient(create_app(backend)) as test_client:
        yield test_client


@pytest.fixture
def fleet(client: TestClient) -> Fleet:
    return Fleet(client)

"""Console users, sessions and throttling on SQLite and PostgreSQL, and the ``user`` CLI."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from redstone_cloud.backend import Backend, open_backend
from redstone_cloud.console import accounts
from redstone_cloud.console.accounts import SignedIn
from redstone_cloud.console.errors import Throttled
from redstone_cloud.db.engine import transaction
from redstone_cloud.db.models import AuditRecord, ConsoleSession
from redstone_cloud.errors import Conflict, InvalidInput
from redstone_cloud.settings import ConsoleSettings
from tests.integration.cloud.conftest import make_settings
from tests.integration.cloud.server import write_config

RULES = ConsoleSettings(login_max_failures=3, login_max_failures_per_client=5)
T0 = dt.datetime(2027, 1, 1, 12, 0, tzinfo=dt.UTC)
PASSWORD = "a good password"


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def sign_in(
    backend: Backend, name: str, password: str, when: dt.datetime, client: str = "10.0.0.1"
) -> SignedIn | None:
    with transaction(backend.sessions) as session:
        return accounts.sign_in(
            session, name=name, password=password, client=client, rules=RULES, now=when
        )


@pytest.fixture
def with_user(backend: Backend) -> Backend:
    with transaction(backend.sessions) as session:
        accounts.add_user(session, "test", "ada", "admin", PASSWORD)
    return backend


def test_sign_in_resume_and_expiry(with_user: Backend) -> None:
    backend = with_user
    assert sign_in(backend, "ada", "wrong", at(0)) is None
    assert sign_in(backend, "nobody", PASSWORD, at(0)) is None
    signed = sign_in(backend, "ada", PASSWORD, at(1))
    assert signed is not None and signed.role == "admin" and signed.actor == "console:ada"
    with transaction(backend.sessions) as session:
        stored = session.scalars(select(ConsoleSession.id_sha256)).all()
        assert signed.session_id not in stored  # only the digest is kept
        alive = accounts.resume(session, signed.session_id, RULES, at(RULES.session_idle_s))
        assert alive is not None and alive.name == "ada"
        assert accounts.resume(session, "forged", RULES, at(2)) is None
    with transaction(backend.sessions) as session:  # idle since the touch above
        late = at(2 * RULES.session_idle_s + 1)
        assert accounts.resume(session, signed.session_id, RULES, late) is None
    with transaction(backend.sessions) as session:  # an ended session is gone for good
        assert accounts.resume(session, signed.session_id, RULES, at(3)) is None
        actions = session.scalars(select(AuditRecord.action)).all()
        assert "console.sign-in" in actions


def test_disabling_ends_sessions(with_user: Backend) -> None:
    signed = sign_in(with_user, "ada", PASSWORD, at(0))
    assert signed is not None
    with transaction(with_user.sessions) as session:
        accounts.disable_user(session, "test", "ada")
    with transaction(with_user.sessions) as session:
        assert accounts.resume(session, signed.session_id, RULES, at(1)) is None
    assert sign_in(with_user, "ada", PASSWORD, at(2)) is None


def test_throttle_is_shared_by_every_process(
    with_user: Backend, database_url: str, tmp_path: Path
) -> None:
    other = open_backend(make_settings(database_url, tmp_path / "other"))  # a second server
    try:
        for n, backend in enumerate((with_user, other, with_user)):
            assert sign_in(backend, "ada", "wrong", at(n)) is None
        with pytest.raises(Throttled, match="try again in 15 minutes") as refused:
            sign_in(other, "ada", PASSWORD, at(10))
        assert refused.value.retry_after == RULES.login_lockout_s - 8 + 1
        later = at(2 + RULES.login_lockout_s + 1)
        assert sign_in(other, "ada", PASSWORD, later) is not None
    finally:
        other.close()


def test_throttle_per_client_address(with_user: Backend) -> None:
    for n in range(RULES.login_max_failures_per_client):
        assert sign_in(with_user, f"guess{n}", "wrong", at(n), client="10.9.9.9") is None
    with pytest.raises(Throttled):
        sign_in(with_user, "ada", PASSWORD, at(10), client="10.9.9.9")
    assert sign_in(with_user, "ada", PASSWORD, at(10), client="10.0.0.2") is not None


def test_user_management_errors(with_user: Backend) -> None:
    with transaction(with_user.sessions) as session:
        with pytest.raises(Conflict, match="console user 'ada' exists already"):
            accounts.add_user(session, "test", "ada", "viewer", PASSWORD)
        with pytest.raises(InvalidInput, match="unknown role 'boss'"):
            accounts.set_role(session, "test", "ada", "boss")
        assert accounts.set_role(session, "test", "ada", "viewer").role == "viewer"


def cli(config: Path, *argv: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "redstone_cloud", "--config", str(config), *argv],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_user_cli(database_url: str, tmp_path: Path) -> None:
    config = write_config(tmp_path / "cloud.toml", database_url, tmp_path / "data")
    added = cli(config, "user", "add", "bob", "--role", "viewer", stdin=PASSWORD + "\n")
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["role"] == "viewer"
    listed = json.loads(cli(config, "user", "list", "--json").stdout)
    assert [(u["name"], u["role"], u["disabled"]) for u in listed] == [("bob", "viewer", False)]
    assert cli(config, "user", "set-role", "bob", "admin").returncode == 0
    assert cli(config, "user", "disable", "bob").returncode == 0
    listed = json.loads(cli(config, "--json", "user", "list").stdout)
    assert [(u["role"], u["disabled"]) for u in listed] == [("admin", True)]
    for argv, stdin, message in [
        (("user", "add", "bob", "--role", "viewer"), PASSWORD, "console user 'bob' exists"),
        (("user", "add", "carl", "--role", "viewer"), "", "no password on standard input"),
        (("user", "add", "carl", "--role", "viewer"), "short\n", "8 to 1024 characters"),
        (("user", "add", "Carl", "--role", "viewer"), PASSWORD, "user name 'Carl'"),
        (("user", "disable", "nobody"), "", "no console user 'nobody'"),
    ]:
        failed = cli(config, *argv, stdin=stdin)
        assert failed.returncode != 0
        assert message in failed.stderr and len(failed.stderr.strip().splitlines()) == 1, (
            failed.stderr
        )
    bad_role = cli(config, "user", "add", "carl", "--role", "boss", stdin=PASSWORD)
    assert bad_role.returncode == 2 and "invalid choice: 'boss'" in bad_role.stderr
    helped = cli(config, "user", "--help")
    assert "examples:" in helped.stdout and "release-manager" in helped.stdout

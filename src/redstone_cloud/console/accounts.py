"""Console users, sessions and failed sign-ins in the database.

The rules live in :mod:`redstone_cloud.console.auth`; this module reads and writes
rows in the caller's transaction and audits every change.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session

from redstone_cloud.console import auth
from redstone_cloud.console.errors import Throttled
from redstone_cloud.db.models import ConsoleLoginFailure, ConsoleSession, ConsoleUser
from redstone_cloud.errors import Conflict, NotFound
from redstone_cloud.services import audit
from redstone_cloud.settings import ConsoleSettings

REFUSED = "Wrong user name or password."
"""The one message for an unknown user, a wrong password and a disabled user."""

TOUCH_EVERY = dt.timedelta(seconds=30)
"""A session's ``last_seen_at`` is written at most this often (one write per page is waste)."""


@dataclass(frozen=True)
class SignedIn:
    """A live session as the pages see it."""

    user_id: int
    name: str
    role: str
    session_id: str
    """The cookie's value (never stored); the CSRF token derives from it."""

    @property
    def actor(self) -> str:
        return f"console:{self.name}"

    @property
    def csrf(self) -> str:
        return auth.csrf_token(self.session_id)

    def may(self, role: str) -> bool:
        return auth.allows(self.role, role)


# --- users -----------------------------------------------------------------------------------


def get_user(session: Session, name: str) -> ConsoleUser:
    user = session.scalar(select(ConsoleUser).where(ConsoleUser.name == name))
    if user is None:
        raise NotFound(f"no console user {name!r}")
    return user


def list_users(session: Session) -> list[ConsoleUser]:
    return list(session.scalars(select(ConsoleUser).order_by(ConsoleUser.name)))


def add_user(session: Session, actor: str, name: str, role: str, password: str) -> ConsoleUser:
    auth.check_name(name)
    auth.check_role(role)
    auth.check_password(password)
    if session.scalar(select(ConsoleUser.id).where(ConsoleUser.name == name)) is not None:
        raise Conflict(f"console user {name!r} exists already")
    user = ConsoleUser(name=name, role=role, password_hash=auth.hash_password(password))
    session.add(user)
    session.flush()
    audit.record(session, actor, "console.user-add", "console_user", name, role=role)
    return user


def set_role(session: Session, actor: str, name: str, role: str) -> ConsoleUser:
    user = get_user(session, name)
    old = user.role
    user.role = auth.check_role(role)
    audit.record(session, actor, "console.user-role", "console_user", name, old=old, new=role)
    return user


def disable_user(session: Session, actor: str, name: str) -> ConsoleUser:
    """Disable ``name`` and end its sessions at once."""
    user = get_user(session, name)
    user.disabled = True
    session.execute(delete(ConsoleSession).where(ConsoleSession.user_id == user.id))
    audit.record(session, actor, "console.user-disable", "console_user", name)
    return user


def user_dict(user: ConsoleUser) -> dict[str, object]:
    return {
        "name": user.name,
        "role": user.role,
        "disabled": user.disabled,
        "created_at": user.created_at.isoformat(),
    }


# --- sign-in and throttling ------------------------------------------------------------------


def _horizon(rules: ConsoleSettings) -> dt.timedelta:
    """How far back a failed sign-in still matters."""
    return dt.timedelta(seconds=rules.login_window_s + rules.login_lockout_s)


def _locked(
    session: Session,
    *,
    column: InstrumentedAttribute[str],
    value: str,
    limit: int,
    rules: ConsoleSettings,
    now: dt.datetime,
) -> dt.datetime | None:
    times = session.scalars(
        select(ConsoleLoginFailure.at).where(
            column == value, ConsoleLoginFailure.at >= now - _horizon(rules)
        )
    ).all()
    return auth.locked_until(times, limit, rules.login_window_s, rules.login_lockout_s)


def check_throttle(
    session: Session, name: str, client: str, rules: ConsoleSettings, now: dt.datetime
) -> None:
    """Refuse a sign-in while the user name or the client address is locked."""
    for column, value, limit in (
        (ConsoleLoginFailure.username, name, rules.login_max_failures),
        (ConsoleLoginFailure.client, client, rules.login_max_failures_per_client),
    ):
        until = _locked(session, column=column, value=value, limit=limit, rules=rules, now=now)
        if until is not None and until > now:
            wait = int((until - now).total_seconds()) + 1
            minutes = max(1, -(-wait // 60))
            raise Throttled(
                f"Too many failed sign-ins: try again in {minutes} minute"
                + ("s" if minutes > 1 else "")
                + ".",
                wait,
            )


def record_failure(
    session: Session, name: str, client: str, rules: ConsoleSettings, now: dt.datetime
) -> None:
    """Count a failed sign-in, and forget those too old to matter any more."""
    session.execute(
        delete(ConsoleLoginFailure).where(ConsoleLoginFailure.at < now - _horizon(rules))
    )
    session.add(ConsoleLoginFailure(username=name[:64], client=client[:64], at=now))


def authenticate(session: Session, name: str, password: str) -> ConsoleUser | None:
    """The enabled user ``name`` if ``password`` is theirs; the same work either way."""
    user = session.scalar(select(ConsoleUser).where(ConsoleUser.name == name))
    stored = user.password_hash if user is not None else auth.DUMMY_HASH
    good = auth.verify_password(password, stored)
    if user is None or not good or user.disabled:
        return None
    return user


def open_session(
    session: Session, user: ConsoleUser, client: str, rules: ConsoleSettings, now: dt.datetime
) -> SignedIn:
    """A new session for ``user`` (its failed sign-ins forgiven), audited."""
    session_id = auth.new_session_id()
    session.add(
        ConsoleSession(
            user_id=user.id,
            id_sha256=auth.session_digest(session_id),
            created_at=now,
            last_seen_at=now,
            expires_at=now + dt.timedelta(seconds=rules.session_absolute_s),
        )
    )
    session.execute(delete(ConsoleLoginFailure).where(ConsoleLoginFailure.username == user.name))
    audit.record(
        session, f"console:{user.name}", "console.sign-in", "console_user", user.name, client=client
    )
    return SignedIn(user.id, user.name, user.role, session_id)


def sign_in(
    session: Session,
    *,
    name: str,
    password: str,
    client: str,
    rules: ConsoleSettings,
    now: dt.datetime,
) -> SignedIn | None:
    """Check the throttle (:class:`Throttled`), then the password: a session, or None
    with the failure counted (the caller commits it and says :data:`REFUSED`)."""
    check_throttle(session, name, client, rules, now)
    user = authenticate(session, name, password)
    if user is None:
        record_failure(session, name, client, rules, now)
        return None
    return open_session(session, user, client, rules, now)


def resume(
    session: Session, session_id: str, rules: ConsoleSettings, now: dt.datetime
) -> SignedIn | None:
    """The live session behind a cookie, touched; None if absent, expired or disabled."""
    row = session.scalar(
        select(ConsoleSession).where(ConsoleSession.id_sha256 == auth.session_digest(session_id))
    )
    if row is None:
        return None
    alive = auth.session_alive(now, row.last_seen_at, row.expires_at, rules.session_idle_s)
    if not alive or row.user.disabled:
        session.delete(row)
        return None
    if now - row.last_seen_at >= TOUCH_EVERY:
        session.execute(
            update(ConsoleSession).where(ConsoleSession.id == row.id).values(last_seen_at=now)
        )
    return SignedIn(row.user.id, row.user.name, row.user.role, session_id)


def close_session(session: Session, signed_in: SignedIn) -> None:
    session.execute(
        delete(ConsoleSession).where(
            ConsoleSession.id_sha256 == auth.session_digest(signed_in.session_id)
        )
    )
    audit.record(session, signed_in.actor, "console.sign-out", "console_user", signed_in.name)

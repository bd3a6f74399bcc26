"""Sign-in rules without I/O: password hashes, roles, session and CSRF tokens,
throttling windows and the ``next`` URL after sign-in.

Everything here is a pure function of its arguments (the clock comes in as a value),
so ``tests/unit/cloud/test_console_auth.py`` tables it without a database.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import secrets
from collections.abc import Sequence
from urllib.parse import urlsplit

from redstone_cloud.errors import InvalidInput

ROLES = ("viewer", "release-manager", "admin")
"""Ordered: each role may do everything the ones before it may."""

PREFIX = "/console"

_SCRYPT_LOG2_N = 15
_SCRYPT_R = 8
_SCRYPT_P = 1
_SCRYPT_MAXMEM = 64 * 1024 * 1024
MIN_PASSWORD = 8
MAX_PASSWORD = 1024
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789._-@")


def check_role(role: str) -> str:
    if role not in ROLES:
        raise InvalidInput(f"unknown role {role!r}: choose one of {', '.join(ROLES)}")
    return role


def allows(role: str, needed: str) -> bool:
    """Whether ``role`` may do what ``needed`` may (an unknown role may do nothing)."""
    return role in ROLES and ROLES.index(role) >= ROLES.index(needed)


def check_name(name: str) -> str:
    if not 1 <= len(name) <= 64 or not set(name) <= _NAME_CHARS:
        raise InvalidInput(f"user name {name!r}: 1 to 64 of lower-case letters, digits and . _ - @")
    return name


def check_password(password: str) -> str:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise InvalidInput(f"a password has {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    return password


def _scrypt(password: str, salt: bytes, log2_n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode(), salt=salt, n=2**log2_n, r=r, p=p, maxmem=_SCRYPT_MAXMEM, dklen=32
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def hash_password(password: str, salt: bytes | None = None) -> str:
    """``scrypt$<log2 N>$<r>$<p>$<salt>$<hash>`` with a fresh 16-byte salt."""
    salt = secrets.token_bytes(16) if salt is None else salt
    digest = _scrypt(password, salt, _SCRYPT_LOG2_N, _SCRYPT_R, _SCRYPT_P)
    return f"scrypt${_SCRYPT_LOG2_N}${_SCRYPT_R}${_SCRYPT_P}${_b64(salt)}${_b64(digest)}"


DUMMY_HASH = hash_password("not anyone's password", b"redstone-dummy16")
"""Checked against when the user does not exist, so that an unknown name costs as long."""


def verify_password(password: str, stored: str) -> bool:
    """Constant-time check of ``password`` against :func:`hash_password`'s output."""
    try:
        scheme, log2_n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        computed = _scrypt(password, base64.b64decode(salt), int(log2_n), int(r), int(p))
        return hmac.compare_digest(computed, base64.b64decode(digest))
    except (ValueError, TypeError):
        return False


def new_session_id() -> str:
    return secrets.token_urlsafe(32)


def session_digest(session_id: str) -> str:
    """What the database keeps of a session id (a stolen table holds no live cookie)."""
    return hashlib.sha256(session_id.encode()).hexdigest()


def csrf_token(secret: str) -> str:
    """The form token bound to ``secret`` (the session id, or the sign-in page's seed)."""
    return hmac.new(secret.encode(), b"redstone-console-csrf", hashlib.sha256).hexdigest()


def csrf_ok(secret: str | None, presented: str | None) -> bool:
    if not secret or not presented:
        return False
    return hmac.compare_digest(csrf_token(secret).encode(), presented.encode())


def session_alive(
    now: dt.datetime, last_seen: dt.datetime, expires: dt.datetime, idle_s: int
) -> bool:
    return now < expires and now < last_seen + dt.timedelta(seconds=idle_s)


def locked_until(
    failures: Sequence[dt.datetime], limit: int, window_s: int, lockout_s: int
) -> dt.datetime | None:
    """When a user name or address with these failed sign-ins may try again; None: now.

    Locked when ``limit`` failures fall within ``window_s`` of each other, until
    ``lockout_s`` after the last of them. A ``limit`` below 1 turns throttling off.
    """
    if limit < 1:
        return None
    times = sorted(failures)
    window = dt.timedelta(seconds=window_s)
    for first, last in zip(times, times[limit - 1 :], strict=False):
        if last - first <= window:
            return times[-1] + dt.timedelta(seconds=lockout_s)
    return None


def safe_next(target: str | None) -> str:
    """``target`` if it is a path inside the console on this site, else the fleet page."""
    default = f"{PREFIX}/"
    if not target or "\\" in target or any(ord(c) < 0x20 for c in target):
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return default
    path = parts.path
    if path != PREFIX and not path.startswith(f"{PREFIX}/"):
        return default
    if any(segment in (".", "..") for segment in path.split("/")):
        return default
    if path.rstrip("/") in (f"{PREFIX}/login", f"{PREFIX}/logout"):
        return default
    return target

"""The console's sign-in rules without a database: hashes, roles, tokens, throttling, next."""

from __future__ import annotations

import datetime as dt

import pytest

from redstone_cloud.console import auth
from redstone_cloud.errors import InvalidInput

T0 = dt.datetime(2027, 1, 1, 12, 0, tzinfo=dt.UTC)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def test_password_hash_round_trip_with_per_user_salt() -> None:
    first = auth.hash_password("correct horse")
    second = auth.hash_password("correct horse")
    assert first != second  # a fresh salt each time
    assert first.startswith("scrypt$15$8$1$")
    assert auth.verify_password("correct horse", first)
    assert auth.verify_password("correct horse", second)
    assert not auth.verify_password("correct horsE", first)
    assert not auth.verify_password("", first)


@pytest.mark.parametrize(
    "stored", ["", "plain", "bcrypt$1$2$3$a$b", "scrypt$15$8$1$not base64!$x", "scrypt$x$8$1$a$b"]
)
def test_malformed_hashes_never_verify(stored: str) -> None:
    assert not auth.verify_password("anything", stored)


def test_dummy_hash_is_a_real_hash_nobody_knows() -> None:
    assert auth.DUMMY_HASH.startswith("scrypt$")
    assert not auth.verify_password("", auth.DUMMY_HASH)


def test_roles_are_ordered() -> None:
    assert auth.allows("admin", "release-manager")
    assert auth.allows("admin", "viewer")
    assert auth.allows("release-manager", "viewer")
    assert auth.allows("viewer", "viewer")
    assert not auth.allows("viewer", "release-manager")
    assert not auth.allows("release-manager", "admin")
    assert not auth.allows("root", "viewer")
    with pytest.raises(InvalidInput, match="unknown role 'root': choose one of viewer"):
        auth.check_role("root")


@pytest.mark.parametrize("name", ["", "Alice", "a b", "x" * 65, "<script>", "ümlaut"])
def test_bad_user_names(name: str) -> None:
    with pytest.raises(InvalidInput, match="user name"):
        auth.check_name(name)


def test_password_length() -> None:
    auth.check_password("12345678")
    with pytest.raises(InvalidInput, match="8 to 1024"):
        auth.check_password("1234567")


def test_session_digest_and_csrf_are_bound_to_the_session() -> None:
    one, two = auth.new_session_id(), auth.new_session_id()
    assert one != two and len(one) >= 40
    assert auth.session_digest(one) != one and len(auth.session_digest(one)) == 64
    token = auth.csrf_token(one)
    assert token not in (one, auth.session_digest(one))
    assert auth.csrf_ok(one, token)
    assert not auth.csrf_ok(two, token)
    assert not auth.csrf_ok(one, token[:-1] + ("0" if token[-1] != "0" else "1"))
    assert not auth.csrf_ok(one, None)
    assert not auth.csrf_ok(one, "")
    assert not auth.csrf_ok(None, token)
    assert not auth.csrf_ok(one, "é")  # non-ASCII compares without raising


def test_session_alive_until_idle_or_absolute_expiry() -> None:
    expires = at(3600)
    assert auth.session_alive(at(10), at(0), expires, idle_s=60)
    assert not auth.session_alive(at(60), at(0), expires, idle_s=60)
    assert auth.session_alive(at(3599), at(3590), expires, idle_s=60)
    assert not auth.session_alive(at(3600), at(3599), expires, idle_s=60)


LIMIT, WINDOW, LOCKOUT = 3, 60, 300


@pytest.mark.parametrize(
    ("failures", "until"),
    [
        ([], None),
        ([0, 10], None),  # under the limit
        ([0, 10, 20], 20 + LOCKOUT),  # three within a minute
        ([0, 30, 60], 60 + LOCKOUT),  # exactly the window
        ([0, 40, 80], None),  # spread wider than the window
        ([0, 40, 80, 90], 90 + LOCKOUT),  # the last three are close
        ([20, 0, 10], 20 + LOCKOUT),  # order does not matter
    ],
)
def test_throttle_windows(failures: list[int], until: int | None) -> None:
    got = auth.locked_until([at(s) for s in failures], LIMIT, WINDOW, LOCKOUT)
    assert got == (None if until is None else at(until))


def test_throttle_off_with_limit_zero() -> None:
    assert auth.locked_until([at(0)] * 10, 0, WINDOW, LOCKOUT) is None


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/console/vehicles/ABC?x=1", "/console/vehicles/ABC?x=1"),
        ("/console/fleet", "/console/fleet"),
        ("/console", "/console"),
        ("", "/console/"),
        (None, "/console/"),
        ("https://evil.example/console/", "/console/"),
        ("//evil.example/console/", "/console/"),
        ("/\\evil.example", "/console/"),
        ("/console\\..\\api", "/console/"),
        ("/api/v1/vehicles", "/console/"),
        ("/consoleevil", "/console/"),
        ("/console/../api/v1", "/console/"),
        ("/console/login?next=/x", "/console/"),
        ("/console/logout", "/console/"),
        ("javascript:alert(1)", "/console/"),
        ("/console/fleet\r\nSet-Cookie: x=1", "/console/"),
    ],
)
def test_next_url_stays_inside_the_console(target: str | None, expected: str) -> None:
    assert auth.safe_next(target) == expected

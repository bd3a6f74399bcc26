"""Untrusted input rules shared by the API and the services, pure.

Every value that reaches the database or the audit trail passes one of these
checks first, so a hostile request gets a one-line 422 instead of an error
from deep inside Python or the database:

* JSON nests at most :data:`MAX_JSON_DEPTH` levels (``json`` recurses; PostgreSQL
  and the audit export must be able to write it back), numbers are finite
  (``1e400``, ``NaN`` and ``Infinity`` would become invalid JSON Lines in
  ``/audit/export``), strings hold no NUL and no lone UTF-16 surrogate
  (PostgreSQL text refuses both; UTF-8 cannot encode the latter);
* integers fit the database's 32-bit ``INTEGER`` (:data:`DB_INT_MAX`);
* decimal numbers in headers and times are ASCII digits only (``str.isdigit``
  accepts ``'²'`` and ``'٣'``, which ``int`` then refuses or misreads);
* names that become paths (package targets, storage keys) are one relative
  component without ``..``.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from redstone_cloud.errors import InvalidInput

MAX_JSON_DEPTH = 32
"""Deepest nesting of arrays and objects accepted in any JSON body."""

DB_INT_MAX = 2**31 - 1
"""Largest value of an ``INTEGER`` column on PostgreSQL (ids, counters, positions)."""

ASCII_DIGITS = re.compile(r"[0-9]+")

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,511}$")


def check_depth(data: bytes, limit: int = MAX_JSON_DEPTH) -> None:
    """Refuse JSON nested deeper than ``limit`` without parsing it (strings are skipped)."""
    depth = 0
    in_string = escaped = False
    for byte in data:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > limit:
                raise InvalidInput(f"JSON nests deeper than {limit} levels")
        elif byte in (0x5D, 0x7D):
            depth -= 1


def _no_constant(name: str) -> Any:
    raise InvalidInput(f"JSON number {name} is not allowed (numbers must be finite)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise InvalidInput(f"JSON number {text[:40]} is out of range (numbers must be finite)")
    return value


def check_text(value: str, what: str) -> str:
    """Refuse NUL characters and lone surrogates (not storable, not UTF-8)."""
    if "\x00" in value:
        raise InvalidInput(f"{what} contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInput(f"{what} is not valid Unicode text") from exc
    return value


def check_tree(value: Any, what: str = "JSON") -> None:
    """Apply :func:`check_text` and the finiteness rule to every string and number."""
    if isinstance(value, str):
        check_text(value, f"{what} string")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInput(f"{what}: numbers must be finite")
    elif isinstance(value, dict):
        for key, item in value.items():
            check_text(str(key), f"{what} key")
            check_tree(item, what)
    elif isinstance(value, list):
        for item in value:
            check_tree(item, what)


def parse_json(data: bytes, what: str = "body") -> Any:
    """Parse an untrusted JSON body under the rules above, or raise :class:`InvalidInput`."""
    check_depth(data)
    try:
        value = json.loads(data, parse_constant=_no_constant, parse_float=_finite_float)
    except InvalidInput as exc:
        raise InvalidInput(f"{what}: {exc}") from exc
    except (ValueError, RecursionError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InvalidInput(f"{what} is not valid JSON: {message}") from exc
    check_tree(value, what)
    return value


def ascii_int(text: str) -> int | None:
    """A non-negative decimal of ASCII digits, or None; absurdly long ones saturate
    just above any real length (so they compare as 'too large', never crash ``int``)."""
    if not ASCII_DIGITS.fullmatch(text):
        return None
    digits = text.lstrip("0") or "0"
    if len(digits) > 19:
        return 10**19
    return int(digits)


def check_target_name(name: str, what: str = "target name") -> str:
    """A target or file name is one path component: no separators, no ``..``,
    not absolute, from ``[A-Za-z0-9._+-]`` and at most 512 characters."""
    if "/" in name or "\\" in name:
        raise InvalidInput(f"{what} {name[:80]!r} must not contain path separators")
    if ".." in name:
        raise InvalidInput(f"{what} {name[:80]!r} must not contain '..'")
    if not _SAFE_NAME.match(name):
        raise InvalidInput(f"{what} {name[:80]!r}: use letters, digits, '.', '_', '+', '-'")
    return name

"""When a campaign may offer updates: start time and maintenance window, pure.

A window is ``{"days": [0..6], "start": "HH:MM", "end": "HH:MM"}`` in UTC
(Monday = 0). ``start > end`` spans midnight: 22:00-04:00 on Monday runs until
Tuesday 04:00. No window means any time.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from redstone_cloud.errors import InvalidInput

_HH_MM = re.compile(r"([0-9]{1,2}):([0-9]{2})")
"""ASCII digits only: ``str.isdigit`` also takes '²' (which ``int`` refuses) and '٢'."""


def _minutes(text: object, field: str) -> int:
    match = _HH_MM.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        shown = text[:40] if isinstance(text, str) else type(text).__name__
        raise InvalidInput(f"window {field}: expected 'HH:MM', got {shown!r}")
    h, m = int(match[1]), int(match[2])
    if not (0 <= h < 24 and 0 <= m < 60):
        raise InvalidInput(f"window {field}: {text!r} is not a time of day")
    return h * 60 + m


def validate_window(window: dict[str, Any] | None) -> None:
    """Reject a malformed window when the campaign is created, not at poll time."""
    if window is None:
        return
    if not isinstance(window, dict):
        raise InvalidInput("window: expected an object with days, start and end")
    days = window.get("days", list(range(7)))
    if (
        not isinstance(days, list)
        or not days
        or any(type(d) is not int or d not in range(7) for d in days)
    ):
        raise InvalidInput("window days: expected a non-empty list of 0..6 (Monday = 0)")
    if _minutes(window.get("start"), "start") == _minutes(window.get("end"), "end"):
        raise InvalidInput("window start and end are equal: the window would be empty")
    extra = set(window) - {"days", "start", "end"}
    if extra:
        raise InvalidInput(f"window: unknown keys {sorted(extra)}")


def window_open(window: dict[str, Any] | None, now: dt.datetime) -> bool:
    """Whether ``now`` (aware) lies in the maintenance window."""
    if window is None:
        return True
    now = now.astimezone(dt.UTC)
    days = window.get("days", list(range(7)))
    start, end = _minutes(window["start"], "start"), _minutes(window["end"], "end")
    minute = now.hour * 60 + now.minute
    if start < end:
        return now.weekday() in days and start <= minute < end
    if minute >= start:
        return now.weekday() in days
    return minute < end and (now.weekday() - 1) % 7 in days


def may_offer(
    start_at: dt.datetime | None, window: dict[str, Any] | None, now: dt.datetime
) -> bool:
    """Whether a running campaign may offer its update right now."""
    return (start_at is None or now >= start_at) and window_open(window, now)

"""Jinja filters of the console's templates: times, sizes, maintenance windows."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from redstone_cloud.console.campaign_form import DAYS


def when(value: dt.datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else "never"


def start_text(value: dt.datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "when started"


def size(n: int) -> str:
    """Bytes for people: "1.2 KiB", "3.0 MiB", "512 B"."""
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def window_text(window: dict[str, Any] | None) -> str:
    """A maintenance window in words, e.g. "Mon, Fri 01:00–05:00 UTC"."""
    if not window:
        return "any time"
    names = ", ".join(DAYS[d] for d in window.get("days", list(range(7))))
    return f"{names} {window.get('start')}–{window.get('end')} UTC"


FILTERS: dict[str, Callable[..., str]] = {
    "when": when,
    "start_text": start_text,
    "size": size,
    "window_text": window_text,
}

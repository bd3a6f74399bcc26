"""Start time and maintenance windows."""

from __future__ import annotations

import datetime as dt

import pytest

from redstone_cloud.errors import InvalidInput
from redstone_cloud.schedule import may_offer, validate_window, window_open

MONDAY = dt.datetime(2026, 11, 23, tzinfo=dt.UTC)


def at(day: int, hour: int, minute: int = 0) -> dt.datetime:
    return MONDAY + dt.timedelta(days=day, hours=hour, minutes=minute)


@pytest.mark.parametrize(
    ("window", "moment", "expected"),
    [
        (None, at(0, 12), True),
        ({"start": "09:00", "end": "17:00"}, at(0, 9), True),
        ({"start": "09:00", "end": "17:00"}, at(0, 16, 59), True),
        ({"start": "09:00", "end": "17:00"}, at(0, 17), False),
        ({"days": [5, 6], "start": "09:00", "end": "17:00"}, at(0, 12), False),
        ({"days": [5, 6], "start": "09:00", "end": "17:00"}, at(5, 12), True),
        ({"days": [0], "start": "22:00", "end": "04:00"}, at(0, 23), True),
        ({"days": [0], "start": "22:00", "end": "04:00"}, at(1, 3, 59), True),
        ({"days": [0], "start": "22:00", "end": "04:00"}, at(1, 4), False),
        ({"days": [0], "start": "22:00", "end": "04:00"}, at(0, 3), False),
        ({"days": [6], "start": "22:00", "end": "04:00"}, at(0, 1), True),
    ],
)
def test_window_open(window: dict[str, object] | None, moment: dt.datetime, expected: bool) -> None:
    assert window_open(window, moment) is expected


@pytest.mark.parametrize(
    "window",
    [
        {"start": "9", "end": "10:00"},
        {"start": "24:00", "end": "10:00"},
        {"start": "10:00", "end": "10:00"},
        {"days": [], "start": "01:00", "end": "02:00"},
        {"days": [7], "start": "01:00", "end": "02:00"},
        {"start": "01:00", "end": "02:00", "tz": "CET"},
        {"start": 1, "end": "02:00"},
    ],
)
def test_validate_window_rejects(window: dict[str, object]) -> None:
    with pytest.raises(InvalidInput):
        validate_window(window)


def test_may_offer_waits_for_start() -> None:
    assert not may_offer(at(1, 0), None, at(0, 23))
    assert may_offer(at(1, 0), None, at(1, 0))
    assert not may_offer(None, {"start": "01:00", "end": "02:00"}, at(0, 3))


@pytest.mark.parametrize(
    "window",
    [
        {"start": "\u00b2\u00b2:00", "end": "04:00"},  # superscript digits: int() refuses
        {"start": "\u0662\u0662:00", "end": "04:00"},  # Arabic-Indic digits
        {"start": "22:00", "end": "\uff10\uff14:\uff10\uff10"},  # fullwidth
        {"start": "22:00", "end": "4:0"},
        {"days": [True], "start": "22:00", "end": "04:00"},
        {"days": [5.0], "start": "22:00", "end": "04:00"},
        ["not", "an", "object"],
    ],
)
def test_window_with_non_ascii_digits_is_refused(window: object) -> None:
    with pytest.raises(InvalidInput):
        validate_window(window)  # type: ignore[arg-type]

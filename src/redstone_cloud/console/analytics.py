"""The numbers behind the console's charts, computed from plain rows (no I/O): success
over time, time-to-install buckets, and version adoption curves.

Each chart is a :class:`Table`: a header row and data rows, which the page draws, shows
as an accessible table and offers as CSV — the same numbers three ways.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

POINTS = 24
"""Samples on a time axis."""
INSTALL_BUCKETS: tuple[tuple[str, float], ...] = (
    ("< 1 min", 60),
    ("1–5 min", 300),
    ("5–15 min", 900),
    ("15–60 min", 3600),
    ("1–4 h", 4 * 3600),
    ("4–24 h", 24 * 3600),
    ("> 1 day", float("inf")),
)
"""Time-to-install histogram bins: (label, upper bound in seconds, exclusive)."""


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: list[tuple[str | int, ...]]

    @property
    def empty(self) -> bool:
        return not self.rows


def _axis(start: dt.datetime, end: dt.datetime, points: int = POINTS) -> list[dt.datetime]:
    """``points`` instants from ``start`` to ``end`` inclusive (one if they are equal)."""
    if end <= start:
        return [end]
    step = (end - start) / (points - 1)  # rounded to microseconds: the last is ``end`` itself
    return [start + step * i for i in range(points - 1)] + [end]


def _label(at: dt.datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M")


def success_over_time(finished: Iterable[tuple[dt.datetime, str]]) -> Table:
    """Cumulative succeeded and failed vehicles over the campaign's finished assignments
    (``(when it finished, its state)``), sampled at :data:`POINTS` instants."""
    events = sorted((at, state) for at, state in finished if state in ("succeeded", "failed"))
    if not events:
        return Table(("time", "succeeded", "failed"), [])
    rows: list[tuple[str | int, ...]] = []
    counts: Counter[str] = Counter()
    i = 0
    for at in _axis(events[0][0], events[-1][0]):
        while i < len(events) and events[i][0] <= at:
            counts[events[i][1]] += 1
            i += 1
        rows.append((_label(at), counts["succeeded"], counts["failed"]))
    return Table(("time", "succeeded", "failed"), rows)


def install_times(seconds: Iterable[float]) -> Table:
    """How many vehicles took how long, in :data:`INSTALL_BUCKETS`."""
    counts = Counter[str]()
    for value in seconds:
        label = next(name for name, bound in INSTALL_BUCKETS if value < bound)
        counts[label] += 1
    if not counts:
        return Table(("time to install", "vehicles"), [])
    return Table(("time to install", "vehicles"), [(n, counts[n]) for n, _ in INSTALL_BUCKETS])


def adoption(
    changes: Sequence[tuple[int, str, dt.datetime]], now: dt.datetime, top: int = 5
) -> Table:
    """ECUs running each version over time, from version history rows ``(ecu id, version,
    reported at)``: at each instant an ECU counts for the last version it reported. The
    ``top`` versions most run now get a column each; the rest add up under "other"."""
    ordered = sorted(changes, key=lambda c: c[2])
    if not ordered:
        return Table(("time",), [])
    final: dict[int, str] = {}
    for ecu, version, _at in ordered:
        final[ecu] = version
    leaders = [v for v, _n in Counter(final.values()).most_common(top)]
    others = len(set(final.values())) > len(leaders)
    header = ("time", *leaders, *(("other",) if others else ()))
    running: dict[int, str] = {}
    rows: list[tuple[str | int, ...]] = []
    i = 0
    for at in _axis(ordered[0][2], max(now, ordered[-1][2])):
        while i < len(ordered) and ordered[i][2] <= at:
            ecu, version, _ = ordered[i]
            running[ecu] = version
            i += 1
        per = Counter(running.values())
        row: list[str | int] = [_label(at), *(per[v] for v in leaders)]
        if others:
            row.append(sum(n for v, n in per.items() if v not in leaders))
        rows.append(tuple(row))
    return Table(header, rows)

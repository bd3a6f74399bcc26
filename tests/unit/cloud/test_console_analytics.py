"""The numbers behind the console's charts (redstone_cloud/console/analytics.py)."""

from __future__ import annotations

import datetime as dt

from redstone_cloud.console import analytics
from redstone_cloud.console.csvout import safe_cell
from redstone_cloud.console.filters import size, window_text

T0 = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)


def at(minutes: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def test_success_over_time_is_cumulative_and_ends_with_every_vehicle() -> None:
    table = analytics.success_over_time(
        [(at(0), "succeeded"), (at(10), "failed"), (at(23), "succeeded"), (at(5), "cancelled")]
    )
    assert table.header == ("time", "succeeded", "failed")
    assert len(table.rows) == analytics.POINTS
    assert table.rows[0] == ("2026-11-30 12:00", 1, 0)
    assert table.rows[-1] == ("2026-11-30 12:23", 2, 1)  # cancelled is neither
    succeeded = [int(r[1]) for r in table.rows]
    assert succeeded == sorted(succeeded)


def test_the_last_point_counts_the_last_vehicle_whatever_the_rounding() -> None:
    """The axis step is rounded to microseconds; 7 µs over 23 steps would end short."""
    last = T0 + dt.timedelta(microseconds=7)
    table = analytics.success_over_time([(T0, "succeeded"), (last, "failed")])
    assert table.rows[-1][1:] == (1, 1)


def test_one_finished_vehicle_is_one_point_and_none_is_empty() -> None:
    assert analytics.success_over_time([(at(3), "failed")]).rows == [("2026-11-30 12:03", 0, 1)]
    assert analytics.success_over_time([]).empty


def test_install_times_fall_in_their_buckets_edges_included_above() -> None:
    table = analytics.install_times([59.9, 60, 299, 300, 3 * 86400])
    counts = {str(r[0]): int(r[1]) for r in table.rows}
    assert counts["< 1 min"] == 1
    assert counts["1–5 min"] == 2
    assert counts["5–15 min"] == 1
    assert counts["> 1 day"] == 1
    assert sum(counts.values()) == 5
    assert analytics.install_times([]).empty


def test_adoption_counts_each_ecu_once_for_its_latest_version() -> None:
    changes = [
        (1, "tbox-1.0", at(0)),
        (2, "tbox-1.0", at(0)),
        (1, "tbox-2.0", at(60)),
        (3, "tbox-2.0", at(90)),
    ]
    table = analytics.adoption(changes, now=at(120))
    assert table.header == ("time", "tbox-2.0", "tbox-1.0")
    first, last = table.rows[0], table.rows[-1]
    assert first[1:] == (0, 2)
    assert last[1:] == (2, 1)
    assert all(sum(int(v) for v in row[1:]) <= 3 for row in table.rows)


def test_adoption_beyond_the_top_versions_adds_up_as_other() -> None:
    changes = [(i, f"v{i % 4}", at(i)) for i in range(8)]
    table = analytics.adoption(changes, now=at(10), top=2)
    assert table.header[-1] == "other"
    assert sum(int(v) for v in table.rows[-1][1:]) == 8


def test_csv_cells_that_a_spreadsheet_would_run_are_text() -> None:
    assert safe_cell("=1+1") == "'=1+1"
    assert safe_cell("@SUM(A1)") == "'@SUM(A1)"
    assert safe_cell("tbox-2.0") == "tbox-2.0"
    assert safe_cell(-3) == -3  # numbers stay numbers


def test_sizes_and_windows_read_as_people_write_them() -> None:
    assert [size(n) for n in (512, 1536, 3 << 20)] == ["512 B", "1.5 KiB", "3.0 MiB"]
    window = {"days": [0, 6], "start": "22:00", "end": "04:30"}
    assert window_text(window) == "Mon, Sun 22:00–04:30 UTC"
    assert window_text(None) == "any time"

"""Rollout decisions, table-driven."""

from __future__ import annotations

import pytest

from redstone_cloud.rollout import Decision, GroupCounts, Thresholds, judge, split_into_groups

T = Thresholds(success=90, error=20)


@pytest.mark.parametrize(
    ("counts", "last", "expected"),
    [
        (GroupCounts(10, 0, 0, 0), False, Decision.CONTINUE),
        (GroupCounts(10, 8, 0, 8), False, Decision.CONTINUE),
        (GroupCounts(10, 9, 0, 9), False, Decision.ADVANCE),
        (GroupCounts(10, 9, 0, 9), True, Decision.CONTINUE),
        (GroupCounts(10, 9, 1, 10), True, Decision.COMPLETE),
        (GroupCounts(10, 5, 1, 10), False, Decision.PAUSE),
        (GroupCounts(10, 0, 2, 2), False, Decision.ABORT),
        (GroupCounts(10, 9, 2, 10), False, Decision.ABORT),
        (GroupCounts(10, 0, 1, 1), False, Decision.CONTINUE),
        (GroupCounts(0, 0, 0, 0), False, Decision.ADVANCE),
        (GroupCounts(0, 0, 0, 0), True, Decision.COMPLETE),
    ],
)
def test_judge(counts: GroupCounts, last: bool, expected: Decision) -> None:
    assert judge(counts, T, last_group=last) is expected


def test_zero_error_threshold_aborts_on_first_failure_only() -> None:
    strict = Thresholds(success=100, error=0)
    assert judge(GroupCounts(5, 0, 0, 0), strict, last_group=False) is Decision.CONTINUE
    assert judge(GroupCounts(5, 0, 1, 1), strict, last_group=False) is Decision.ABORT


def test_split_is_cumulative_complete_and_salted() -> None:
    keys = [f"V{n}" for n in range(100)]
    groups = split_into_groups(keys, [1, 10, 50, 100], "campaign-a")
    assert [len(g) for g in groups] == [1, 9, 40, 50]
    assert sorted(k for g in groups for k in g) == sorted(keys)
    assert groups == split_into_groups(keys, [1, 10, 50, 100], "campaign-a")
    assert groups[2] != split_into_groups(keys, [1, 10, 50, 100], "campaign-b")[2]
    assert [len(g) for g in split_into_groups(keys[:3], [10, 100], "x")] == [1, 2]


@pytest.mark.parametrize("percents", [[], [50], [50, 40, 100], [0, 100], [100, 100]])
def test_split_rejects_bad_percentages(percents: list[int]) -> None:
    with pytest.raises(ValueError, match="percentages"):
        split_into_groups(["a"], percents, "s")

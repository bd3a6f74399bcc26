"""Phased rollout decisions, as pure functions of counts (no I/O, table-tested).

A campaign's targets are split into groups by cumulative percentage. The
running group is judged on its own vehicles:

* failed share >= ``error_threshold``      -> ABORT the campaign;
* succeeded share >= ``success_threshold`` -> ADVANCE to the next group
  (the last group instead COMPLETEs once all its vehicles finished);
* every vehicle finished, neither reached  -> PAUSE for a human decision;
* otherwise                                -> CONTINUE.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

TERMINAL_STATES = frozenset({"succeeded", "failed", "cancelled"})


class Decision(enum.Enum):
    """What the rollout engine does with a campaign after judging its running group."""

    CONTINUE = "continue"
    ADVANCE = "advance"
    COMPLETE = "complete"
    PAUSE = "pause"
    ABORT = "abort"


@dataclass(frozen=True)
class GroupCounts:
    """Vehicles of one group by outcome."""

    total: int
    succeeded: int
    failed: int
    finished: int
    """Vehicles in a terminal state (succeeded, failed or cancelled)."""


@dataclass(frozen=True)
class Thresholds:
    """Percentages (0..100) that move a group on or stop the campaign."""

    success: int
    error: int


def judge(counts: GroupCounts, thresholds: Thresholds, *, last_group: bool) -> Decision:
    """Decide the campaign's next step from its running group's counts."""
    if counts.total == 0:
        return Decision.COMPLETE if last_group else Decision.ADVANCE
    if counts.failed * 100 >= thresholds.error * counts.total and counts.failed > 0:
        return Decision.ABORT
    all_done = counts.finished >= counts.total
    if counts.succeeded * 100 >= thresholds.success * counts.total:
        if not last_group:
            return Decision.ADVANCE
        return Decision.COMPLETE if all_done else Decision.CONTINUE
    return Decision.PAUSE if all_done else Decision.CONTINUE


def split_into_groups(keys: Sequence[str], percents: Sequence[int], salt: str) -> list[list[str]]:
    """Split targets into groups by cumulative percentages (each 1..100, rising, last 100).

    The order is a salted hash of each key, so every campaign samples the fleet
    differently but reproducibly (the first group is not always the oldest cars).
    """
    if not percents or percents[-1] != 100 or list(percents) != sorted(set(percents)):
        raise ValueError("group percentages must rise strictly and end at 100")
    if percents[0] < 1:
        raise ValueError("group percentages must be at least 1")
    ordered = sorted(keys, key=lambda k: hashlib.sha256(f"{salt}/{k}".encode()).digest())
    groups: list[list[str]] = []
    start = 0
    for percent in percents:
        end = max(start, -(-len(ordered) * percent // 100))  # ceiling, never shrinking
        groups.append(ordered[start:end])
        start = end
    return groups

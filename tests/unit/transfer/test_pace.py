"""The minimum-rate rule (redstone_agent.pace), driven by a hand-moved clock."""

from __future__ import annotations

import pytest

from redstone_agent.pace import Pace


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("reads", "slow_at"),
    [
        ([(10.0, 1)] * 12, 5),  # a byte every 10 s: judged when the first window closes
        ([(1.0, 2048)] * 200, None),  # 2 KiB/s: a slow link, not a trickle
        ([(59.0, 61440), (59.0, 61440)], None),  # windows not yet closed are not judged
        ([(61.0, 61440)], 0),  # 61440 bytes in 61 s is just under 1 KiB/s
        ([(30.0, 70000), (31.0, 10)], None),  # the average over the window counts, not each read
        ([(60.0, 70000), (60.0, 10)], 1),  # ...but every window must meet it on its own
    ],
)
def test_minimum_rate_per_window(reads: list[tuple[float, int]], slow_at: int | None) -> None:
    clock = Clock()
    watch = Pace(min_rate=1024, window=60).watch(clock)
    verdicts = []
    for seconds, count in reads:
        clock.now += seconds
        verdicts.append(watch.update(count))
    first = next((i for i, v in enumerate(verdicts) if v is not None), None)
    assert first == slow_at
    if first is not None:
        assert str(verdicts[first]).startswith("too slow: ")


def test_a_new_connection_starts_a_new_window() -> None:
    clock = Clock()
    watch = Pace(min_rate=1024, window=60).watch(clock)
    clock.now = 1000.0  # reconnecting took long: not the connection's fault
    watch.restart()
    clock.now += 30
    assert watch.update(40000) is None
    clock.now += 30
    assert watch.update(30000) is None
    assert watch.windows_passed == 1


def test_zero_rate_turns_the_rule_off() -> None:
    clock = Clock()
    watch = Pace(min_rate=0).watch(clock)
    clock.now = 1e6
    assert watch.update(1) is None


def test_deadline_counts_from_the_start_across_connections() -> None:
    clock = Clock()
    watch = Pace(deadline=100).watch(clock)
    clock.now = 99
    watch.restart()
    assert watch.overdue() is None
    clock.now = 101
    assert watch.overdue() == "not complete within 100 s"
    assert Pace().watch(clock).overdue() is None


@pytest.mark.parametrize("kwargs", [{"min_rate": -1}, {"window": 0}, {"deadline": 0}])
def test_nonsense_is_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Pace(**kwargs)

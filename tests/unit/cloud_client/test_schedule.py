"""PollSchedule: the server's pace after success, full-jitter backoff after errors."""

from __future__ import annotations

import random

import pytest

from redstone_agent.cloud.schedule import PollSchedule


class Highest(random.Random):
    """Always the top of the range: makes the backoff ceiling visible."""

    def uniform(self, a: float, b: float) -> float:
        return b


def test_default_interval_until_the_server_names_one() -> None:
    schedule = PollSchedule(interval_s=120)
    assert schedule.after_success(None) == 120
    assert schedule.after_success(60) == 60
    assert schedule.after_success(None) == 60, "the server's interval is remembered"


@pytest.mark.parametrize(
    ("server", "used"), [(0.001, 1.0), (1.0, 1.0), (300.0, 300.0), (1e9, 86400.0), (86400, 86400)]
)
def test_server_interval_is_bounded(server: float, used: float) -> None:
    assert PollSchedule().after_success(server) == used


def test_non_finite_server_interval_is_ignored() -> None:
    schedule = PollSchedule(interval_s=300)
    assert schedule.after_success(float("nan")) == 300
    assert schedule.after_success(float("inf")) == 300


def test_backoff_doubles_up_to_the_cap() -> None:
    schedule = PollSchedule(base_s=5, cap_s=600, rng=Highest())
    delays = [schedule.after_error() for _ in range(10)]
    assert delays == [5, 10, 20, 40, 80, 160, 320, 600, 600, 600]


def test_jitter_stays_within_bounds_and_varies() -> None:
    rng = random.Random(7)
    for n in range(12):
        samples = []
        for _ in range(200):
            schedule = PollSchedule(base_s=2, cap_s=100, rng=rng)
            for _ in range(n):
                schedule.after_error()
            samples.append(schedule.after_error())
        bound = min(100, 2 * 2**n)
        assert all(0 <= s <= bound for s in samples)
        assert len(set(samples)) > 150, "full jitter spreads a fleet out"
        assert max(samples) > 0.8 * bound and min(samples) < 0.2 * bound


def test_success_resets_the_backoff() -> None:
    schedule = PollSchedule(base_s=5, cap_s=600, interval_s=300, rng=Highest())
    for _ in range(6):
        schedule.after_error()
    assert schedule.errors == 6
    assert schedule.after_success(None) == 300
    assert schedule.errors == 0
    assert schedule.after_error() == 5


def test_endless_outage_neither_overflows_nor_exceeds_the_cap() -> None:
    schedule = PollSchedule(base_s=0.5, cap_s=30, rng=Highest())
    for _ in range(5000):
        assert schedule.after_error() <= 30
    assert schedule.ceiling() == 30


def test_seeded_randomness_is_reproducible() -> None:
    first = PollSchedule(rng=random.Random(42))
    second = PollSchedule(rng=random.Random(42))
    assert [first.after_error() for _ in range(8)] == [second.after_error() for _ in range(8)]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"base_s": 0},
        {"cap_s": -1},
        {"interval_s": float("nan")},
        {"base_s": 10, "cap_s": 5},
        {"min_interval_s": 10, "max_interval_s": 5},
    ],
)
def test_nonsense_settings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        PollSchedule(**kwargs)
